"""The CNNs registered in this process (``vista_sql.register_cnn``), as workers and the driver
look them up; registering one (loading, describing, measuring) is ``udfs.registry``'s.

A worker knows no registry: it installs the :class:`RegisteredCnn` its inference spec carries
(:func:`install`) before building the model. :func:`definition` is the one look-up of a CNN's Keras
definition, registered or of the roster.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vista_sql import catalog
from vista_sql.catalog import CnnInfo
from vista_sql.udfs.cnns import CnnDefinition
from vista_sql.udfs.cnns import definition as roster_definition

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True, slots=True)
class RegisteredCnn:
    """A registered CNN: what a worker needs to build it without the driver's registry."""

    info: CnnInfo
    config: str
    """The Keras model's architecture, as ``model.to_json()``."""
    digest: str
    """SHA-256 of the architecture and the weights."""
    model_file: str
    """The saved model (architecture and its own weights) on the driver."""


_registered: dict[str, RegisteredCnn] = {}
_lock = threading.Lock()


def registered(name: str) -> RegisteredCnn | None:
    """The registered CNN called ``name`` in this process, if any."""
    return _registered.get(name.lower())


def install(cnn: RegisteredCnn) -> None:
    """Make ``cnn`` known to this process: its catalog entry and its Keras definition (a worker
    calls this with the spec's copy before building the model)."""
    with _lock:
        if _registered.get(cnn.info.name) != cnn:
            _registered[cnn.info.name] = cnn
            catalog.register(cnn.info)


def definition(cnn: str) -> CnnDefinition:
    """The definition of ``cnn``: a CNN registered in this process, else a roster CNN's (importing
    its module)."""
    found = registered(cnn)
    if found is None:
        return roster_definition(cnn)
    return CnnDefinition(
        name=found.info.name,
        build=lambda: _from_config(found.config),
        imagenet=None,
        imagenet_help=f"{found.info.name} is a registered model: WEIGHTS IMAGENET is its own",
    )


def _from_config(config: str) -> keras.Model:
    import keras

    model: keras.Model = keras.models.model_from_json(config)
    return model
