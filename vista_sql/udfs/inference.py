"""Partial CNN inference: from the image or a stored layer to any set of higher layers, in one pass.

An :class:`InferenceSpec` says what to compute; an :class:`InferenceRunner` is the one Keras model
that computes it: its input is the image (``start`` None) or the ``resume`` tensor the catalog
stores for ``start``; its outputs are every requested layer in its requested form, with pooling
done inside the TensorFlow graph so a large activation never leaves it. Runners (and the weighted
CNNs they share) are kept per process, so a reused Spark Python worker builds each once.

Forms (``LayerOut.form``): ``features`` is the layer's feature vector: for a conv layer pooled per
``pooling`` (``max2x2``: adaptive max-pool to a 2x2 grid, 4*C values, bins as PyTorch's
AdaptiveMaxPool2d; ``avg`` / ``max``: global pooling, C values; ``none``: the activation
flattened row-major over H, W, C as Keras's Flatten), for an fc layer its activation. ``activation``
is the full activation, flattened. ``resume`` is the catalog's resume tensor of the layer,
flattened. Every output is float32, one row per image.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vista_sql.catalog import POOLINGS, CnnInfo, LayerInfo, current
from vista_sql.errors import SemanticError, did_you_mean
from vista_sql.logical.plan import LayerOut, WeightsSpec
from vista_sql.udfs.columns import ERROR_COLUMN, output_column
from vista_sql.udfs.registered import RegisteredCnn, install, registered

if TYPE_CHECKING:
    import keras

    from vista_sql.udfs.models import WeightedModel


@dataclass(frozen=True, slots=True)
class InferenceSpec:
    """What one inference pass computes. Hashable: it keys the per-process runner cache.

    ``start`` None reads images; a transfer layer reads that layer's stored ``resume`` tensor.
    Every output must be computable from the start: a layer above it, or the start's own resume
    tensor (in any form that tensor allows).
    """

    cnn: str
    weights: WeightsSpec
    start: str | None
    outputs: tuple[LayerOut, ...]
    pooling: str = "max2x2"
    registered: RegisteredCnn | None = None
    """A CNN registered with ``vista_sql.register_cnn``: its entry and architecture travel with
    the spec, since a Spark worker's catalog knows only the roster. Filled in from this
    process's registry when not given."""

    def __post_init__(self) -> None:
        if self.registered is None:
            object.__setattr__(self, "registered", registered(self.cnn))
        info = self.info
        if self.pooling not in POOLINGS:
            raise SemanticError(
                f"unknown conv_pooling {self.pooling!r}; {did_you_mean(self.pooling, POOLINGS)}"
            )
        if not self.outputs:
            raise SemanticError("an inference needs at least one output")
        if len(set(self.outputs)) != len(self.outputs):
            raise SemanticError(f"duplicate outputs in {self.outputs}")
        start = None if self.start is None else _layer(info, self.start)
        if start is not None and start.resume_keras is None:
            raise SemanticError(
                f"{info.name} {start.name} is the top layer: nothing resumes from it"
            )
        for out in self.outputs:
            layer = _layer(info, out.layer)
            if out.form == "resume" and layer.resume_keras is None:
                raise SemanticError(f"{info.name} {layer.name} is the top layer: it has no resume")
            if start is not None and not self._reachable(info, start, layer, out):
                raise SemanticError(
                    f"{out.describe()} cannot be computed from {start.name}'s stored tensor"
                    f" ({start.resume_keras}); it needs a layer above {start.name}"
                )

    @staticmethod
    def _reachable(info: CnnInfo, start: LayerInfo, layer: LayerInfo, out: LayerOut) -> bool:
        if info.index(layer.name) > info.index(start.name):
            return True
        tensor = layer.resume_keras if out.form == "resume" else layer.keras
        return tensor == start.resume_keras

    @property
    def info(self) -> CnnInfo:
        if self.registered is not None:
            return self.registered.info
        info = current().cnn(self.cnn)
        if info is None:
            raise SemanticError(
                f"unknown CNN {self.cnn!r}; {did_you_mean(self.cnn, current().names)}"
            )
        return info

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input: (height, width, 3) for images, else the start's resume tensor."""
        info = self.info
        if self.start is None:
            return (info.input_size[0], info.input_size[1], 3)
        resume = _layer(info, self.start).resume_shape
        assert resume is not None  # checked in __post_init__
        return resume

    @property
    def columns(self) -> tuple[str, ...]:
        """The output column names, in ``outputs`` order (see ``output_column``)."""
        return tuple(output_column(out) for out in self.outputs)

    def output_size(self, out: LayerOut) -> int:
        """Floats per row of ``out``."""
        layer = _layer(self.info, out.layer)
        if out.form == "resume":
            return layer.resume_size
        if out.form == "activation":
            return layer.activation_size
        return layer.feature_size(self.pooling)


def _layer(info: CnnInfo, name: str) -> LayerInfo:
    layer = info.layer(name)
    if layer is None:
        raise SemanticError(
            f"{info.name} has no transfer layer {name!r}; {did_you_mean(name, info.layer_names)}"
        )
    return layer


class InferenceRunner:
    """The Keras model computing one spec, compiled once; call :meth:`run` per batch."""

    def __init__(self, spec: InferenceSpec, weighted: WeightedModel) -> None:
        import tensorflow as tf

        self.spec = spec
        self.model = partial_model(spec, weighted.model)
        weighted.materialize(self.model.weights)
        signature = tf.TensorSpec((None, *spec.input_shape), tf.float32)
        self._compiled = tf.function(self._forward, input_signature=[signature])

    def _forward(self, batch: Any) -> list[Any]:
        outputs = self.model(batch, training=False)
        return list(outputs) if isinstance(outputs, list | tuple) else [outputs]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for a batch of preprocessed images or resume tensors (any leading count)."""
        expected = self.spec.input_shape
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim == 2 and batch.shape[1] == int(np.prod(expected)):
            batch = batch.reshape((-1, *expected))
        if tuple(batch.shape[1:]) != expected:
            raise ValueError(f"expected inputs of shape (n, {expected}), got {batch.shape}")
        if batch.shape[0] == 0:
            return {
                column: np.zeros((0, self.spec.output_size(out)), np.float32)
                for column, out in zip(self.spec.columns, self.spec.outputs, strict=True)
            }
        results = self._compiled(batch)
        return {
            column: result.numpy()
            for column, result in zip(self.spec.columns, results, strict=True)
        }


def partial_model(spec: InferenceSpec, whole: keras.Model) -> keras.Model:
    """A Keras model over ``whole``'s layers from ``spec``'s start to its outputs (pooled)."""
    import keras

    from vista_sql.udfs.layers import AdaptiveMaxPool2x2

    info = spec.info
    if spec.start is None:
        inputs = whole.input
    else:
        resume = _layer(info, spec.start).resume_keras
        inputs = whole.get_layer(resume).output
    outputs = []
    for column, out in zip(spec.columns, spec.outputs, strict=True):
        layer = _layer(info, out.layer)
        name = layer.resume_keras if out.form == "resume" else layer.keras
        assert name is not None  # checked by InferenceSpec
        tensor = whole.get_layer(name).output
        if out.form == "features" and layer.kind == "conv":
            head: keras.layers.Layer = {
                "max2x2": AdaptiveMaxPool2x2,
                "avg": keras.layers.GlobalAveragePooling2D,
                "max": keras.layers.GlobalMaxPooling2D,
                "none": keras.layers.Flatten,
            }[spec.pooling](name=f"vista_{column}")
        else:
            head = keras.layers.Flatten(name=f"vista_{column}")
        outputs.append(head(tensor))
    return keras.Model(inputs, outputs, name=f"{info.name}_partial")


_weighted: dict[tuple[str, WeightsSpec, str | None], WeightedModel] = {}
_runners: dict[tuple[InferenceSpec, str | None], InferenceRunner] = {}
_lock = threading.Lock()


def runner_for(spec: InferenceSpec, weights_path: str | None) -> InferenceRunner:
    """This process's runner for ``spec`` (built on first use, then kept).

    ``weights_path`` is the local copy of the weights file (None for random weights). Runners of
    the same CNN and weights share one :class:`WeightedModel`, so each parameter is held once.
    """
    key = (spec, weights_path)
    with _lock:
        runner = _runners.get(key)
        if runner is None:
            from vista_sql.udfs.models import WeightedModel

            if spec.registered is not None:  # a worker learns the CNN from the spec
                install(spec.registered)

            model_key = (spec.info.name, spec.weights, weights_path)
            weighted = _weighted.get(model_key)
            if weighted is None:
                weighted = WeightedModel(spec.cnn, spec.weights, weights_path)
                _weighted[model_key] = weighted
            runner = InferenceRunner(spec, weighted)
            _runners[key] = runner
        return runner


def clear_cache() -> None:
    """Forget this process's runners and models (tests; freeing memory between workloads)."""
    with _lock:
        _runners.clear()
        _weighted.clear()


def configure_devices() -> None:
    """Let TensorFlow use the GPUs it sees, growing its memory on demand.

    By default TensorFlow reserves nearly all of a GPU's memory in the first process that touches
    it, so a second concurrent Spark task on the same GPU would fail; with memory growth each
    worker holds what its model and batch need, which is what the cost model plans for
    (``cost_model.memory.gpu_bytes`` x concurrent tasks). When Spark assigns GPUs to tasks
    (``spark.task.resource.gpu.amount``), the worker uses only those. Acts only before TensorFlow
    initialises its devices (a fresh worker); does nothing without a GPU.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return
    try:
        assigned = _assigned_gpus()
        if assigned:
            gpus = [gpu for index, gpu in enumerate(gpus) if str(index) in assigned] or gpus
            tf.config.set_visible_devices(gpus, "GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # devices already initialised in this process: the first setting stays
        pass


def _assigned_gpus() -> set[str]:
    """The GPU addresses Spark's resource scheduling gave this task (empty when none)."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return set()
    context = TaskContext.get()
    if context is None:
        return set()
    gpu = context.resources().get("gpu")
    return set(gpu.addresses) if gpu is not None else set()


def limit_threads(threads: int | None) -> None:
    """Configure the devices (:func:`configure_devices`), then cap TensorFlow's thread pools at
    ``threads`` (intra-op) and 1 (inter-op).

    TensorFlow fixes its pools when it first runs an op, so this acts only in a fresh process (a
    new Spark Python worker); later calls with a different value keep the first one.
    """
    configure_devices()
    if threads is None:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this process: the first setting stays
        pass


def infer_local(
    inputs: Sequence[bytes | None] | np.ndarray,
    spec: InferenceSpec,
    batch_size: int = 32,
    *,
    weights_path: str | None = None,
) -> dict[str, np.ndarray]:
    """Inference in this process, without Spark: the reference the Spark path must equal.

    ``inputs`` are encoded images when ``spec.start`` is None, else resume tensors (an (n, size)
    array or a sequence of flat arrays). Returns one (n, size) float32 array per output column,
    NaN on rows whose input failed, and ``ERROR_COLUMN``: an object array of None or the reason.
    ``weights_path`` defaults to :func:`vista_sql.udfs.weights.weights_file` on this machine.
    """
    from vista_sql.udfs.weights import weights_file

    path = weights_path if weights_path is not None else weights_file(spec.cnn, spec.weights)
    runner = runner_for(spec, path)
    count = len(inputs)
    results: dict[str, np.ndarray] = {
        column: np.full((count, spec.output_size(out)), np.nan, dtype=np.float32)
        for column, out in zip(spec.columns, spec.outputs, strict=True)
    }
    errors = np.full(count, None, dtype=object)
    for begin in range(0, count, batch_size):
        rows, batch, batch_errors = prepare_batch(spec, inputs[begin : begin + batch_size])
        errors[begin : begin + len(batch_errors)] = batch_errors
        for column, values in runner.run(batch).items():
            results[column][begin + rows] = values
    results[ERROR_COLUMN] = errors
    return results


def prepare_batch(
    spec: InferenceSpec, inputs: Sequence[Any] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """(positions of the usable rows, their model inputs, an error or None per row)."""
    if spec.start is None:
        from vista_sql.udfs.decode import decode_batch

        info = spec.info
        decoded = decode_batch(list(inputs), info.input_size, info.preprocess)
        return decoded.rows, decoded.pixels, decoded.errors
    size = int(np.prod(spec.input_shape))
    errors: list[str | None] = []
    kept: list[np.ndarray] = []
    for value in inputs:
        if value is None:
            errors.append(f"no stored {spec.start} tensor to resume from")
            continue
        flat = np.asarray(value, dtype=np.float32).reshape(-1)
        if flat.size != size:
            errors.append(f"stored {spec.start} tensor has {flat.size} values, expected {size}")
            continue
        errors.append(None)
        kept.append(flat)
    rows = np.flatnonzero([error is None for error in errors])
    batch = np.stack(kept) if kept else np.zeros((0, size), np.float32)
    return rows, batch, errors
