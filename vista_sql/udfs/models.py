"""Building roster CNNs with their weights, materialising only the variables a partial model uses.

A model is built inside ``keras.StatelessScope(initialize_variables=False)``: its layers create
their variables without values, so building VGG16 neither runs TensorFlow's initialisers (2.4 s)
nor holds 2 GB transiently. Values are set afterwards, from the chosen weights, for the variables
a sub-model needs: a partial model from the image to VGG16's conv3_3 holds 1.7M parameters, not
138M. Keras keeps a process-wide list of variables awaiting deferred initialisation; the
variables of models built here are taken off it, because they are given their values here.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np

from vista_sql.catalog import current
from vista_sql.errors import SemanticError, did_you_mean
from vista_sql.logical.plan import WeightsSpec
from vista_sql.udfs.registered import definition
from vista_sql.udfs.weights import (
    ALIGNMENT,
    DEFAULT_SEED,
    VariableInit,
    WeightsError,
    random_init,
    seeded_values,
    weights_file,
)


def build_model(cnn: str, weights: WeightsSpec | None = None) -> keras.Model:
    """The whole of ``cnn`` (input to classifier) as a Keras model.

    With ``weights`` None the variables hold Keras's default initialisation (for inspecting the
    architecture); otherwise every variable holds the chosen weights (an ImageNet or user file is
    looked up on this machine, see :func:`vista_sql.udfs.weights.weights_file`).
    """
    if weights is None:
        return definition(cnn).build()
    weighted = WeightedModel(cnn, weights, weights_file(cnn, weights))
    weighted.materialize(weighted.model.weights)
    return weighted.model


class WeightedModel:
    """One CNN whose variables get their values on demand, from one source of weights.

    Sub-models built on ``model``'s tensors share its layers and variables, so several partial
    models of the same CNN and weights in one worker hold each parameter once.
    """

    def __init__(self, cnn: str, weights: WeightsSpec, path: str | None) -> None:
        info = current().cnn(cnn)
        if info is None:
            raise SemanticError(f"unknown CNN {cnn!r}; {did_you_mean(cnn, current().names)}")
        if weights.kind != "random" and path is None:
            raise WeightsError(f"{weights.describe()} weights need a file; see weights_file()")
        self.cnn = info.name
        self.weights = weights
        self.path = path
        self.model = build_deferred(info.name)
        self._lock = threading.Lock()
        self._plan: dict[str, VariableInit] | None = None
        if weights.kind == "random":
            self._plan = random_init(self.model, info.preprocess)

    def materialize(self, variables: Iterable[Any]) -> None:
        """Give each of ``variables`` (of ``model``) its value, if it has none yet."""
        with self._lock:
            pending = [v for v in variables if not is_materialized(v)]
            if not pending:
                return
            if self._plan is None:
                self._load_file()
                return
            seed = self.weights.seed if self.weights.seed is not None else DEFAULT_SEED
            for variable in pending:
                init = self._plan[variable.path]
                set_value(variable, seeded_values(seed, variable.path, variable.shape, init))

    def _load_file(self) -> None:
        """Load the whole file: every variable is set to NaN first, so one the file lacks shows."""
        for variable in self.model.weights:
            if not is_materialized(variable):
                set_value(variable, np.full(variable.shape, np.nan, dtype=variable.dtype))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self.model.load_weights(self.path)
            except Exception as error:  # h5py, Keras and OS errors alike mean an unusable file
                raise WeightsError(
                    f"cannot load weights file '{self.path}' into {self.cnn}: {error}"
                ) from error
        missing = [v.path for v in self.model.weights if np.isnan(v.numpy()).any()]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            said = f"; Keras said: {caught[0].message}" if caught else ""
            raise WeightsError(
                f"weights file '{self.path}' does not fit {self.cnn}: it leaves {len(missing)}"
                f" of {len(self.model.weights)} variables unset or NaN ({shown}){said}"
            )
        for warning in caught:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


def build_deferred(cnn: str) -> keras.Model:
    """``cnn``'s whole model with variables that have shapes but no values yet."""
    with keras.StatelessScope(initialize_variables=False):
        model = definition(cnn).build()
    _forget_deferred(model.weights)
    return model


def is_materialized(variable: Any) -> bool:
    """Whether a variable has a value (built outside a stateless scope, or given one since)."""
    return getattr(variable, "_value", None) is not None


def set_value(variable: Any, value: np.ndarray) -> None:
    """Give a value to a variable, adopting an aligned array's memory when it had none."""
    if is_materialized(variable):
        variable.assign(value)
        return
    import tensorflow as tf

    aligned = value.flags.c_contiguous and value.ctypes.data % ALIGNMENT == 0
    tensor = tf.experimental.dlpack.from_dlpack(value.__dlpack__()) if aligned else value
    variable._initialize(tensor)


def _forget_deferred(variables: Iterable[Any]) -> None:
    """Take ``variables`` off Keras's list of variables to initialise when a scope exits."""
    from keras.src.backend.common import global_state

    ours = {id(v) for v in variables}
    waiting = global_state.get_global_attribute("uninitialized_variables") or []
    global_state.set_global_attribute(
        "uninitialized_variables", [v for v in waiting if id(v) not in ours]
    )
