"""Users' own Keras models as CNNs of the roster (``vista_sql.register_cnn``).

``register(name, model_or_path, layers, ...)`` turns a Keras model (an object, or a ``.keras`` /
``.h5`` file) into a catalog entry (:class:`~vista_sql.catalog.CnnInfo`) that statements use like
any roster CNN:

- **Layers** are Keras layer names of the model, bottom to top (checked against the model's
  topological order). A layer's kind follows its output's rank: (height, width, channels) is
  ``conv`` (pooled per ``conv_pooling``), a vector is ``fc``; other ranks are refused.
- **Resume**: each layer resumes from its own output, when every transfer layer above it can be
  computed from that output alone (a skip connection that jumps over it makes it not resumable:
  staged plans then keep it in one stage with the layer above).
- **Input**: the model's input height and width (``input_size=`` when the model leaves them open),
  three channels. **Preprocessing**: ``preprocess=``, default ``raw``: RGB values 0..255 as
  float32, which is what ``keras.utils.load_img`` + ``img_to_array`` and
  ``keras.utils.image_dataset_from_directory`` give a Keras model, so a model trained on those
  (with its scaling, e.g. a ``Rescaling`` layer, inside) sees what it was trained on. ``unit``
  (0..1), ``caffe``, ``tf``, ``torch`` and ``efficientnet_lite`` are the others.
- **Weights**: ``WEIGHTS IMAGENET`` (the default of a statement) means the model's own weights;
  ``WEIGHTS RANDOM SEED n`` draws its architecture's variables as for any CNN; ``WEIGHTS '<file>'``
  loads a Keras weights file into its architecture.
- **Statistics** (FLOPs, parameter and activation bytes per segment, as ``layer_stats`` measures
  the roster) are computed on first registration and stored beside the model in the cache
  directory (``<cache_dir>/models/<name>-<digest>.json``), so registering the same model again,
  in any process, reads them. Peak RSS is not measured (it takes a subprocess per layer); the
  cost model then sizes a worker from its parts (runtime, parameters, activations).

The model is saved once as ``<cache_dir>/models/<name>-<digest>.keras`` (the digest is SHA-256 of
its architecture and weights). **In Spark workers**: the catalog of a worker process knows only
the shipped roster, so every :class:`~vista_sql.udfs.inference.InferenceSpec` of a registered CNN
carries its :class:`RegisteredCnn` (catalog entry and architecture); the worker installs it before
building the model, and the model file reaches it as the weights file (``SparkContext.addFile``,
like any weights file). Custom layer classes must be Keras-serializable and importable in workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vista_sql import catalog
from vista_sql.catalog import CnnInfo, LayerInfo
from vista_sql.errors import SemanticError, VistaError, did_you_mean
from vista_sql.udfs.decode import PREPROCESS_MODES
from vista_sql.udfs.layer_stats import (
    layer_flops,
    layer_outputs,
    peak_activation_bytes,
    segment_layers,
    variable_bytes,
)
from vista_sql.udfs.registered import RegisteredCnn, install, registered
from vista_sql.udfs.weights import weights_digest

if TYPE_CHECKING:
    import keras

PREPROCESS_DEFAULT = "raw"
STATS_VERSION = 1
"""Version of the statistics file's content (a new one is computed when it differs)."""
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class RegistrationError(VistaError):
    """A model that cannot become a CNN of the roster; the message says why."""


def register(
    name: str,
    model_or_path: Any,
    layers: Sequence[str],
    *,
    directory: str | os.PathLike[str],
    preprocess: str = PREPROCESS_DEFAULT,
    input_size: tuple[int, int] | None = None,
) -> CnnInfo:
    """Register a Keras model (object or file) as CNN ``name``; returns its catalog entry.

    ``directory`` is the cache directory (the model and its statistics go to its ``models/``).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegistrationError(f"a CNN name must be an identifier, got {name!r}")
    cnn = name.lower()
    if catalog.roster().cnn(cnn) is not None:
        raise RegistrationError(f"{cnn} is a CNN of the roster; register under another name")
    if preprocess not in PREPROCESS_MODES:
        raise RegistrationError(
            f"unknown preprocess {preprocess!r}; {did_you_mean(preprocess, PREPROCESS_MODES)}"
        )
    if not layers:
        raise RegistrationError("layers=[...] must name at least one Keras layer")
    model = _load(model_or_path)
    size = _input_size(model, input_size)
    model = _at_size(model, size)
    config = model.to_json()
    digest = _digest(config, model)
    models = Path(directory).expanduser() / "models"
    stem = f"{cnn}-{digest[:16]}"
    model_file = models / f"{stem}.keras"
    stats_file = models / f"{stem}.json"
    info = _cached_info(stats_file, cnn, digest, tuple(layers), size, preprocess)
    if info is None:
        info = describe(model, cnn, layers, size, preprocess)
        _write_atomically(stats_file, _info_json(info, digest, tuple(layers)))
    if not model_file.is_file():
        _save_atomically(model, model_file)
    found = RegisteredCnn(info=info, config=config, digest=digest, model_file=str(model_file))
    install(found)
    return info


def _load(model_or_path: Any) -> keras.Model:
    import keras

    if isinstance(model_or_path, keras.Model):
        return model_or_path
    if isinstance(model_or_path, str | os.PathLike):
        path = Path(model_or_path).expanduser()
        if not path.is_file():
            raise RegistrationError(f"no Keras model file at '{model_or_path}'")
        try:
            loaded: keras.Model = keras.saving.load_model(path, compile=False)
        except Exception as error:  # Keras, h5py and zip errors alike mean an unusable file
            raise RegistrationError(f"cannot load a Keras model from '{path}': {error}") from error
        return loaded
    raise RegistrationError(
        f"expected a keras.Model or the path of a .keras or .h5 file, got {type(model_or_path)}"
    )


def _digest(config: str, model: keras.Model) -> str:
    return hashlib.sha256(f"{config}\n{weights_digest(model.weights)}".encode()).hexdigest()


def _input_size(model: keras.Model, given: tuple[int, int] | None) -> tuple[int, int]:
    inputs = model.inputs
    if len(inputs) != 1:
        raise RegistrationError(f"the model must have one input (an image), it has {len(inputs)}")
    shape = tuple(inputs[0].shape[1:])
    if len(shape) != 3 or shape[-1] != 3:
        raise RegistrationError(f"the model's input must be (height, width, 3), it is {shape}")
    height, width = shape[0], shape[1]
    if given is not None:
        given = (int(given[0]), int(given[1]))
        if (height is not None and height != given[0]) or (width is not None and width != given[1]):
            raise RegistrationError(
                f"input_size={given} disagrees with the model's input {height}x{width}"
            )
        return given
    if height is None or width is None:
        raise RegistrationError(
            "the model's input size is not fixed: give input_size=(height, width)"
        )
    return int(height), int(width)


def _at_size(model: keras.Model, size: tuple[int, int]) -> keras.Model:
    """``model`` with its input fixed at ``size`` (a copy with the same layers and weights when
    the model leaves its input size open), so every tensor has a known shape."""
    import keras

    if tuple(model.inputs[0].shape[1:3]) == size:
        return model
    image = keras.Input(shape=(*size, 3), name=model.inputs[0].name)
    fixed: keras.Model = keras.models.clone_model(model, input_tensors=image)
    fixed.set_weights(model.get_weights())
    return fixed


def describe(
    model: keras.Model,
    name: str,
    layers: Sequence[str],
    input_size: tuple[int, int],
    preprocess: str,
) -> CnnInfo:
    """The catalog entry of ``model`` with ``layers`` as transfer layers, statistics measured."""
    known = [layer.name for layer in model.layers]
    position = {layer_name: index for index, layer_name in enumerate(known)}
    for layer_name in layers:
        if layer_name not in position:
            raise RegistrationError(
                f"the model has no layer {layer_name!r}; {did_you_mean(layer_name, known)}"
            )
    if len(set(layers)) != len(layers):
        raise RegistrationError(f"layers lists a layer twice: {list(layers)}")
    ordered = sorted(layers, key=position.__getitem__)
    if list(layers) != ordered:
        raise RegistrationError(
            f"layers must be listed bottom to top, as the model computes them: {ordered}"
        )
    producer = {id(t): layer for layer in model.layers for t in layer_outputs(layer)}
    tensors = [model.get_layer(layer_name).output for layer_name in layers]
    start = model.inputs[0]
    infos = []
    for index, (layer_name, end) in enumerate(zip(layers, tensors, strict=True)):
        shape = tuple(int(d) for d in end.shape[1:])
        kind = {3: "conv", 1: "fc"}.get(len(shape))
        if kind is None:
            raise RegistrationError(
                f"layer {layer_name} outputs {shape}: a transfer layer must output"
                " (height, width, channels) or a vector"
            )
        segment = segment_layers(model, start, end, producer)
        above = tensors[index + 1 :]
        resumable = bool(above) and _computable(end, above)
        infos.append(
            LayerInfo(
                name=layer_name,
                keras=layer_name,
                kind=kind,
                shape=shape,
                resume_keras=layer_name if resumable else None,
                resume_shape=shape if resumable else None,
                flops=float(sum(layer_flops(layer) for layer in segment)),
                param_bytes=sum(variable_bytes(layer) for layer in segment),
                activation_bytes=peak_activation_bytes(segment, end),
                peak_rss_bytes=None,
            )
        )
        if resumable:
            start = end
    return CnnInfo(
        name=name,
        display=f"{model.name} (registered)",
        source="vista_sql.register_cnn",
        input_size=input_size,
        preprocess=preprocess,
        layers=tuple(infos),
        param_bytes=sum(variable_bytes(layer) for layer in model.layers),
    )


def _computable(start: Any, ends: Sequence[Any]) -> bool:
    """Whether ``ends`` depend on the model's input only through ``start``."""
    import keras

    try:
        keras.Model(start, list(ends))
    except ValueError:
        return False
    return True


def _cached_info(
    path: Path,
    name: str,
    digest: str,
    layers: tuple[str, ...],
    input_size: tuple[int, int],
    preprocess: str,
) -> CnnInfo | None:
    """The entry stored by an earlier registration of the same model and arguments, if any."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (
        document.get("version") != STATS_VERSION
        or document.get("digest") != digest
        or tuple(document.get("layers", ())) != layers
    ):
        return None
    raw = document["info"]
    info = CnnInfo(
        name=name,
        display=raw["display"],
        source=raw["source"],
        input_size=input_size,
        preprocess=preprocess,
        layers=tuple(
            LayerInfo(
                **{
                    **layer,
                    "shape": tuple(layer["shape"]),
                    "resume_shape": (
                        tuple(layer["resume_shape"]) if layer["resume_shape"] else None
                    ),
                }
            )
            for layer in raw["layers"]
        ),
        param_bytes=raw["param_bytes"],
    )
    if tuple(raw["input_size"]) != input_size:
        return None
    return info


def _info_json(info: CnnInfo, digest: str, layers: tuple[str, ...]) -> str:
    document = {"version": STATS_VERSION, "digest": digest, "layers": layers, "info": asdict(info)}
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def _write_atomically(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(content)
    os.replace(partial, path)


def _save_atomically(model: keras.Model, path: Path) -> None:
    """Save ``model`` at ``path`` (a concurrent registration writes an equivalent file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.keras")
    try:
        model.save(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def model_from_registered(cnn: str) -> keras.Model:
    """The registered model with its own weights (for tests and inspection)."""
    import keras

    found = registered(cnn)
    if found is None:
        raise SemanticError(f"{cnn} is not a registered CNN")
    loaded: keras.Model = keras.saving.load_model(found.model_file, compile=False)
    return loaded
