"""Reading weights that other libraries pickled, without torch and without running their code.

Two packaged ImageNet weight files are pickles: ndf's SqueezeNet weights (a dict of NumPy arrays)
and a PyTorch state dict (EfficientNet-Lite0). ``pickle.load`` would import and call whatever
the file names, so both readers here use an :class:`pickle.Unpickler` whose ``find_class``
allows only the few globals such files need and refuses anything else with :class:`PickleError`:
a tampered or unexpected file fails, it does not run.

PyTorch's *legacy* serialization (``torch.save`` before 1.6, or with
``_use_new_zipfile_serialization=False``), which the EfficientNet-Lite0 package ships, is a
sequence of pickles in one file: a magic number, the protocol version (1001), system info
(endianness, type sizes), the state dict itself, in which each tensor is a call to
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` whose storage is a
persistent id ``("storage", torch.FloatStorage, key, location, numel, view)``, then the list of
storage keys, then each storage's raw bytes preceded by its element count (int64). Tensors may
be strided views of their storage (the EfficientNet file's convolution kernels are laid out
height, width, in, out in memory); :func:`load_torch_state` honours the strides. The newer zip
format (``archive/data.pkl`` + ``archive/data/<key>``) is recognised and refused with a message:
no packaged file here uses it.
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

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

NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}
"""What a pickle of plain NumPy arrays refers to (numpy 1 and 2 module names)."""


class PickleError(ValueError):
    """A pickled weights file that is not what it should be; the message says how."""


class _NumpyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in NUMPY_GLOBALS:
            return super().find_class(module.replace("numpy.core", "numpy._core"), name)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise PickleError(f"refusing to load {module}.{name}: only NumPy arrays are expected")


def load_numpy_pickle(path: str | Path) -> Any:
    """Unpickle ``path``, a pickle of containers of NumPy arrays, refusing any other class."""
    with open(path, "rb") as stream:
        try:
            return _NumpyUnpickler(stream).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as error:
            raise PickleError(
                f"{path} is not a readable pickle of NumPy arrays: {error}"
            ) from error


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

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise PickleError("a tensor's storage is missing from the file")
        if self.size:
            last = self.offset + sum(
                (n - 1) * s for n, s in zip(self.size, self.stride, strict=True)
            )
            if min(self.size) > 0 and last >= len(data):
                raise PickleError(f"a tensor of size {self.size} runs past its storage")
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(s * data.itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view, dtype=data.dtype.newbyteorder("="), order="C")


@dataclass(frozen=True, slots=True)
class _StorageType:
    name: str


def _rebuild_tensor_v2(
    storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _TorchUnpickler(pickle.Unpickler):
    def __init__(self, stream: BinaryIO) -> None:
        super().__init__(stream)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        allowed: dict[tuple[str, str], Callable[..., Any] | type] = {
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            ("collections", "OrderedDict"): collections.OrderedDict,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        if module == "torch" and name in TORCH_STORAGE_DTYPES:
            return _StorageType(name)
        raise PickleError(f"refusing to load {module}.{name}: only a state dict of tensors is read")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise PickleError(f"unexpected persistent id {pid!r}")
        storage_type, key, count = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise PickleError(f"unexpected storage type {storage_type!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise PickleError("storage views (pre-0.4 PyTorch files) are not supported")
        found = self.storages.setdefault(
            key, _Storage(TORCH_STORAGE_DTYPES[storage_type.name], count)
        )
        return found


def load_torch_state(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state dict saved in the legacy format, as NumPy arrays by name."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        raise PickleError(
            f"{path} uses PyTorch's zip serialization; only the legacy format is read here"
        )
    with path.open("rb") as stream:
        try:
            magic = pickle.load(stream)
            protocol = pickle.load(stream)
            system = pickle.load(stream)
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise PickleError(f"{path} is not a PyTorch file: {error}") from error
        if magic != TORCH_LEGACY_MAGIC or protocol != TORCH_LEGACY_PROTOCOL:
            raise PickleError(f"{path} is not a legacy PyTorch file (magic {magic!r})")
        if not (isinstance(system, dict) and system.get("little_endian")):
            raise PickleError(f"{path} was written on a big-endian machine: {system!r}")
        unpickler = _TorchUnpickler(stream)
        state = unpickler.load()
        keys = pickle.load(stream)
        for key in keys:
            storage = unpickler.storages.get(str(key))
            if storage is None:
                raise PickleError(f"{path}: storage {key!r} is listed but no tensor uses it")
            storage.data = _read_storage(stream, storage, path)
    if not isinstance(state, dict):
        raise PickleError(f"{path} holds a {type(state).__name__}, not a state dict")
    others = [str(name) for name, value in state.items() if not isinstance(value, _TensorRef)]
    if others:
        raise PickleError(f"{path}: entries {others[:5]} are not tensors")
    return {str(name): value.array() for name, value in state.items()}


def _read_storage(stream: BinaryIO, storage: _Storage, path: Path) -> np.ndarray:
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
