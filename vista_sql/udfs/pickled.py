"""Reading weights that other libraries pickled, without torch and without running their code.

Two packaged ImageNet weight files are pickles: ndf's SqueezeNet weights (a dict of NumPy arrays)
and a PyTorch state dict (EfficientNet-Lite0). ``pickle.load`` would import and call whatever
the file names, so every pickle here, down to a file's header, goes through one
:class:`RestrictedUnpickler` whose ``find_class`` resolves only an allow-list of globals (each
mapped to a known Python object, never looked up by name) and refuses anything else. A file is
treated as data from someone else: whatever is wrong with it (a global outside the list, a
truncated stream, an offset past its buffer, a type where a number belongs) is a
:class:`PickleError`, a :class:`~vista_sql.errors.WeightsError` that names the file; nothing in
it runs, and nothing it says is used to address memory before it is checked.

PyTorch's *legacy* serialization (``torch.save`` before 1.6, or with
``_use_new_zipfile_serialization=False``), which the EfficientNet-Lite0 package ships, is a
sequence of pickles in one file: a magic number, the protocol version (1001), system info
(endianness, type sizes), the state dict itself, in which each tensor is a call to
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` whose storage is a
persistent id ``("storage", torch.FloatStorage, key, location, numel, view)``, then the list of
storage keys, then each storage's raw bytes preceded by its element count (int64). Tensors may
be strided views of their storage (the EfficientNet file's convolution kernels are laid out
height, width, in, out in memory); :func:`load_torch_state` honours the strides, gathering the
elements by index (NumPy checks every index) after checking offset, sizes and strides against
the storage. The newer zip format (``archive/data.pkl`` + ``archive/data/<key>``) is recognised
and refused with a message: no packaged file here uses it.
"""

from __future__ import annotations

import collections
import importlib
import io
import math
import pickle
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vista_sql.errors import WeightsError

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""The first pickle of a legacy ``torch.save`` file."""
TORCH_LEGACY_PROTOCOL = 1001

TORCH_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}

MAX_TENSOR_DIMENSIONS = 32
"""More dimensions than any weight tensor has (PyTorch itself allows 64)."""

MAX_FILE_BYTES = 2 * 2**30
"""Pickled weight files are read whole into memory; the packaged ones are a few MB."""


class PickleError(WeightsError):
    """A pickled weights file that is not what it should be; the message names it and says how."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """What a pickle of plain NumPy arrays refers to, under NumPy 1's and 2's module names."""
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # NumPy 1
        multiarray = importlib.import_module("numpy.core.multiarray")
    found: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[(module, "_reconstruct")] = multiarray._reconstruct
        found[(module, "scalar")] = multiarray.scalar
    return found


CONTAINER_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``allowed`` and has no persistent ids
    unless a subclass defines them. ``what`` says, in refusals, what the file should hold."""

    def __init__(
        self, stream: io.BytesIO, allowed: Mapping[tuple[str, str], Any], what: str
    ) -> None:
        super().__init__(stream)
        self.allowed = allowed
        self.what = what

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise PickleError(f"refusing to load {module}.{name}: {self.what}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise PickleError(f"unexpected persistent id {_short(pid)}: {self.what}")


def _short(value: Any) -> str:
    """``repr`` of a value from a file, cut short (a hostile file can make it huge)."""
    try:
        text = repr(value)
    except Exception:  # a value from the file whose repr fails says nothing useful
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _read_whole(path: Path) -> io.BytesIO:
    """The file's bytes as a stream: a length read from the file can never ask for more memory
    than the file has."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PickleError(f"{path} is {size} bytes, more than a pickled weights file can be")
        return io.BytesIO(path.read_bytes())
    except OSError as error:
        raise PickleError(f"cannot read {path}: {error}") from error


def _unpickle(unpickler: pickle.Unpickler, path: Path, what: str) -> Any:
    """One pickle from ``unpickler``; any failure of a malformed stream is a PickleError."""
    try:
        return unpickler.load()
    except PickleError as error:
        raise PickleError(f"{path}: {error}") from error
    except Exception as error:  # malformed data fails in many ways; each means "not a weights file"
        raise PickleError(
            f"{path} is not a readable {what}: {type(error).__name__}: {_short(str(error))}"
        ) from error


# ------------------------------------------------------------------------------------------------
# A pickle of NumPy arrays (ndf's SqueezeNet weights)
# ------------------------------------------------------------------------------------------------


def load_numpy_pickle(path: str | Path) -> Any:
    """Unpickle ``path``, a pickle of containers of NumPy arrays, refusing any other class.

    Every array must have a numeric dtype (an object array would hold whatever the pickle put
    in it).
    """
    path = Path(path)
    what = "only NumPy arrays are expected"
    allowed = {**_numpy_globals(), **CONTAINER_GLOBALS}
    found = _unpickle(
        RestrictedUnpickler(_read_whole(path), allowed, what), path, "pickle of NumPy arrays"
    )
    _check_numeric(found, path)
    return found


def _check_numeric(value: Any, path: Path) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, np.ndarray | np.generic):
            if item.dtype.kind not in "biuf":
                raise PickleError(f"{path} holds an array of dtype {item.dtype}, not numbers")
        elif not isinstance(item, str | bytes | int | float | bool | type(None)):
            raise PickleError(f"{path} holds a {type(item).__name__}, not NumPy arrays")


# ------------------------------------------------------------------------------------------------
# A legacy PyTorch state dict (EfficientNet-Lite0)
# ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Storage:
    dtype: np.dtype[Any]
    count: int
    data: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self, path: Path, name: str) -> np.ndarray:
        """The tensor's values, C-contiguous, in native byte order.

        Offset, sizes and strides were checked to be non-negative integers when the tensor was
        read; here they are checked against the storage, and the elements are gathered by index
        (which NumPy bounds-checks again), never through a view built from the file's numbers.
        """
        data = self.storage.data
        if data is None:
            raise PickleError(f"{path}: the storage of tensor {name!r} is missing from the file")
        count = math.prod(self.size)
        if count == 0:
            return np.zeros(self.size, dtype=data.dtype.newbyteorder("="))
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if last >= len(data):
            raise PickleError(
                f"{path}: tensor {name!r} of size {self.size} at offset {self.offset} with"
                f" strides {self.stride} runs past its storage of {len(data)} elements"
            )
        if count > len(data):
            raise PickleError(
                f"{path}: tensor {name!r} of size {self.size} has more elements than its"
                f" storage ({len(data)}): overlapping views are not weights"
            )
        index = np.full(self.size, self.offset, dtype=np.int64)
        for axis, (n, s) in enumerate(zip(self.size, self.stride, strict=True)):
            shape = [1] * len(self.size)
            shape[axis] = n
            index += (np.arange(n, dtype=np.int64) * s).reshape(shape)
        return np.array(data[index], dtype=data.dtype.newbyteorder("="), order="C")


@dataclass(frozen=True, slots=True)
class _StorageType:
    name: str


def _natural(value: Any, what: str) -> int:
    """``value`` if it is a non-negative int (not a bool, not anything else that converts)."""
    if type(value) is not int or value < 0:
        raise PickleError(f"{what} is {_short(value)}, not a non-negative integer")
    return value


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise PickleError(f"a tensor's storage is {_short(storage)}, not a storage")
    if not (isinstance(size, tuple) and isinstance(stride, tuple)):
        raise PickleError(f"a tensor's size and stride are {_short((size, stride))}, not tuples")
    if len(size) != len(stride) or len(size) > MAX_TENSOR_DIMENSIONS:
        raise PickleError(f"a tensor has size {_short(size)} but strides {_short(stride)}")
    return _TensorRef(
        storage,
        _natural(offset, "a tensor's offset"),
        tuple(_natural(n, "a tensor's size") for n in size),
        tuple(_natural(s, "a tensor's stride") for s in stride),
    )


TORCH_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **CONTAINER_GLOBALS,
    **{("torch", name): _StorageType(name) for name in TORCH_STORAGE_DTYPES},
}
"""What a legacy state dict refers to, each mapped to the stand-in that reads it here."""


class _TorchUnpickler(RestrictedUnpickler):
    def __init__(self, stream: io.BytesIO) -> None:
        super().__init__(stream, TORCH_GLOBALS, "only a state dict of tensors is read")
        self.storages: dict[str, _Storage] = {}

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise PickleError(f"unexpected persistent id {_short(pid)}")
        storage_type, key = pid[1], pid[2]
        if not isinstance(storage_type, _StorageType):
            raise PickleError(f"unexpected storage type {_short(storage_type)}")
        if not isinstance(key, str):
            raise PickleError(f"a storage key is {_short(key)}, not a string")
        count = _natural(pid[4], f"the element count of storage {key!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise PickleError("storage views (pre-0.4 PyTorch files) are not supported")
        dtype = TORCH_STORAGE_DTYPES[storage_type.name]
        found = self.storages.setdefault(key, _Storage(dtype, count))
        if found.dtype != dtype or found.count != count:
            raise PickleError(f"storage {key!r} is described twice, differently")
        return found


def load_torch_state(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state dict saved in the legacy format, as NumPy arrays by name."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        raise PickleError(
            f"{path} uses PyTorch's zip serialization; only the legacy format is read here"
        )
    stream = _read_whole(path)
    header = "only the header of a PyTorch file (numbers and a dict) is expected"
    try:
        magic, protocol, system = (RestrictedUnpickler(stream, {}, header).load() for _ in range(3))
    except PickleError as error:
        raise PickleError(f"{path} is not a PyTorch file: {error}") from error
    except Exception as error:  # malformed data fails in many ways; each means "not a weights file"
        raise PickleError(f"{path} is not a PyTorch file: {_short(str(error))}") from error
    if magic != TORCH_LEGACY_MAGIC or protocol != TORCH_LEGACY_PROTOCOL:
        raise PickleError(f"{path} is not a legacy PyTorch file (magic {_short(magic)})")
    if not (isinstance(system, dict) and system.get("little_endian") is True):
        raise PickleError(f"{path} was not written on a little-endian machine: {_short(system)}")
    unpickler = _TorchUnpickler(stream)
    state = _unpickle(unpickler, path, "PyTorch state dict")
    keys = _unpickle(
        RestrictedUnpickler(stream, {}, "only the list of storage keys is expected"),
        path,
        "PyTorch storage key list",
    )
    if not (isinstance(keys, list) and all(isinstance(key, str) for key in keys)):
        raise PickleError(f"{path}: the storage keys are {_short(keys)}, not a list of strings")
    for key in keys:
        storage = unpickler.storages.get(key)
        if storage is None:
            raise PickleError(f"{path}: storage {key!r} is listed but no tensor uses it")
        if storage.data is not None:
            raise PickleError(f"{path}: storage {key!r} is listed twice")
        storage.data = _read_storage(stream, storage, path)
    if not isinstance(state, dict):
        raise PickleError(f"{path} holds a {type(state).__name__}, not a state dict")
    others = [
        _short(name)
        for name, value in state.items()
        if not (isinstance(name, str) and isinstance(value, _TensorRef))
    ]
    if others:
        raise PickleError(f"{path}: entries {others[:5]} are not tensors named by strings")
    return {name: value.array(path, name) for name, value in state.items()}


def _read_storage(stream: io.BytesIO, storage: _Storage, path: Path) -> np.ndarray:
    header = stream.read(8)
    if len(header) != 8:
        raise PickleError(f"{path} ends inside a storage header")
    (count,) = struct.unpack("<q", header)
    if count != storage.count:
        raise PickleError(
            f"{path}: a storage holds {count} elements, its tensors say {storage.count}"
        )
    size = count * storage.dtype.itemsize
    raw = stream.read(size)
    if len(raw) != size:
        raise PickleError(f"{path} ends inside a storage ({len(raw)} of {size} bytes)")
    return np.frombuffer(raw, dtype=storage.dtype)
