"""Untrusted files stay data: pickles run no code and address no memory outside their buffers,
Keras files that would run code are refused, EXPLAIN imports and writes nothing.

See docs/security.md. The PyTorch files are written as ``test_real_weights`` writes them (stand-in
``torch`` modules while pickling, no real torch).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import textwrap
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_real_weights import _StorageRef, _Tensor, write_legacy_torch

from vista_sql.errors import WeightsError
from vista_sql.udfs.pickled import (
    load_numpy_pickle,
    load_torch_state,
)
from vista_sql.udfs.weights import check_container, code_in_config

REPO_ROOT = Path(__file__).resolve().parents[1]
ROSTER = ("alexnet", "vgg16", "resnet50", "squeezenet", "efficientnet_lite0")


class _Canary:
    """Unpickled, it creates its file: proof that a pickle ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def canary_pickle(path: Path) -> bytes:
    return pickle.dumps(_Canary(path), protocol=2)


def test_the_canary_fires_under_plain_pickle(tmp_path: Path) -> None:
    """What the tests below prove did not happen does happen to ``pickle.loads``."""
    canary = tmp_path / "fired"
    pickle.loads(canary_pickle(canary)).close()
    assert canary.exists()


# ------------------------------------------------------------------------------------------------
# Restricted unpickling and bounds
# ------------------------------------------------------------------------------------------------


def torch_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    rng = np.random.default_rng(0)
    storage = _StorageRef("0", rng.standard_normal(24).astype(np.float32))
    tensors = {
        "conv.weight": _Tensor(storage, 0, (2, 3, 2, 2), (12, 1, 6, 3)),
        "bias": _Tensor(_StorageRef("1", np.arange(5, dtype=np.float32)), 1, (3,), (1,)),
    }
    write_legacy_torch(path, tensors, monkeypatch)
    return path.read_bytes()


@pytest.mark.parametrize("which", [0, 1, 2, 3, 4])
def test_a_header_or_key_list_pickle_that_runs_code_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: int
) -> None:
    """Each of the five pickles of a legacy file (magic, protocol, system, state, keys) is read
    with the restricted unpickler; a canary in any of the other four never fires."""
    canary = tmp_path / "fired"
    path = tmp_path / "state.pth"
    torch_file(path, monkeypatch)
    stream = io.BytesIO(path.read_bytes())
    pickles = []
    for _ in range(5):
        start = stream.tell()
        for _op in pickletools.genops(stream):  # reads up to the pickle's STOP, running nothing
            pass
        pickles.append(stream.getvalue()[start : stream.tell()])
    pickles[which] = canary_pickle(canary)
    path.write_bytes(b"".join(pickles) + stream.read())
    with pytest.raises(WeightsError, match=r"refusing to load (builtins|io)\.open") as raised:
        load_torch_state(path)
    assert str(path) in str(raised.value)
    assert not canary.exists()


@pytest.mark.parametrize(
    ("offset", "size", "stride", "message"),
    [
        (0, (4, 4), (4, 1), "runs past its storage"),
        (2**62, (1,), (1,), "runs past its storage"),
        (0, (2, 2), (1 << 61, 1), "runs past its storage"),
        (-1, (2,), (1,), "offset is -1, not a non-negative integer"),
        (0, (2,), (-1,), "stride is -1, not a non-negative integer"),
        (0, (2.0,), (1,), "size is 2.0, not a non-negative integer"),
        (0, (2, 2), (1,), "but strides"),
        (0, (1000, 1000), (0, 0), "more elements than its storage"),
    ],
)
def test_offsets_sizes_and_strides_are_checked_against_the_storage(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    offset: Any,
    size: Any,
    stride: Any,
    message: str,
) -> None:
    path = tmp_path / "state.pth"
    storage = _StorageRef("0", np.arange(6, dtype=np.float32))
    write_legacy_torch(path, {"w": _Tensor(storage, offset, size, stride)}, monkeypatch)
    with pytest.raises(WeightsError, match=message) as raised:
        load_torch_state(path)
    assert str(path) in str(raised.value)


def test_a_storage_longer_than_the_file_is_refused_without_allocating_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.pth"
    torch_file(path, monkeypatch)
    data = bytearray(path.read_bytes())
    count_at = data.rindex(struct.pack("<q", 5))  # the second storage's element count
    data[count_at : count_at + 8] = struct.pack("<q", 2**60)
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="a storage holds"):
        load_torch_state(path)


def test_numpy_pickles_hold_numbers_only(tmp_path: Path) -> None:
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps({"conv1": [np.array([1, "x"], dtype=object)]}))
    with pytest.raises(WeightsError, match="dtype object") as raised:
        load_numpy_pickle(path)
    assert str(path) in str(raised.value)
    canary = tmp_path / "fired"
    path.write_bytes(pickle.dumps({"conv1": [_Canary(canary)]}))
    with pytest.raises(WeightsError, match=r"refusing to load (builtins|io)\.open"):
        load_numpy_pickle(path)
    assert not canary.exists()


# ------------------------------------------------------------------------------------------------
# Fuzzing: mutated files are WeightsErrors, and never run code
# ------------------------------------------------------------------------------------------------


def mutations(seed_file: bytes, canary: bytes) -> st.SearchStrategy[bytes]:
    """Byte flips, overwrites, truncations, duplications and a canary pickle spliced in."""
    size = len(seed_file)
    position = st.integers(0, size - 1)

    def flip(data: bytes, at: int, value: int) -> bytes:
        return data[:at] + bytes([value]) + data[at + 1 :]

    def splice(data: bytes, at: int) -> bytes:
        return data[:at] + canary + data[at:]

    def overwrite(data: bytes, at: int, chunk: bytes) -> bytes:
        return data[:at] + chunk + data[at + len(chunk) :]

    def duplicate(data: bytes, start: int, end: int) -> bytes:
        low, high = sorted((start, end))
        return data[:high] + data[low:high] + data[high:]

    one = st.one_of(
        st.builds(
            lambda at, value: lambda d: flip(d, min(at, len(d) - 1), value),
            position,
            st.integers(0, 255),
        ),
        st.builds(lambda at: lambda d: splice(d, min(at, len(d))), position),
        st.builds(
            lambda at, chunk: lambda d: overwrite(d, min(at, len(d)), chunk),
            position,
            st.binary(min_size=1, max_size=16),
        ),
        st.builds(lambda at: lambda d: d[: max(1, min(at, len(d)))], position),
        st.builds(
            lambda a, b: lambda d: duplicate(d, min(a, len(d)), min(b, len(d))), position, position
        ),
    )

    def apply(steps: list[Any]) -> bytes:
        data = seed_file
        for step in steps:
            data = step(data) or data[:1]
        return data

    return st.lists(one, min_size=1, max_size=4).map(apply)


FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def torch_seed(fuzz_dir: Path) -> bytes:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return torch_file(fuzz_dir / "seed.pth", monkeypatch)


def _fuzz_torch(data: bytes, fuzz_dir: Path) -> None:
    canary = fuzz_dir / "fired"
    path = fuzz_dir / "mutated.pth"
    path.write_bytes(data)
    try:
        state = load_torch_state(path)
    except WeightsError as error:
        assert str(path) in str(error)
    else:  # a mutation that kept the file valid: still numbers, in bounds
        assert all(isinstance(value, np.ndarray) for value in state.values())
    assert not canary.exists(), "a mutated checkpoint ran code"


def test_mutated_pytorch_checkpoints_are_weights_errors_and_run_nothing(
    torch_seed: bytes, fuzz_dir: Path
) -> None:
    canary = canary_pickle(fuzz_dir / "fired")

    @FUZZ
    @given(mutations(torch_seed, canary))
    def check(data: bytes) -> None:
        _fuzz_torch(data, fuzz_dir)

    check()


def test_mutated_numpy_pickles_are_weights_errors_and_run_nothing(fuzz_dir: Path) -> None:
    canary_path = fuzz_dir / "fired_numpy"
    seed = pickle.dumps(
        OrderedDict(conv1=[np.ones((3, 2), np.float32), np.zeros(2, np.float32)]), protocol=2
    )

    @FUZZ
    @given(mutations(seed, canary_pickle(canary_path)))
    def check(data: bytes) -> None:
        path = fuzz_dir / "mutated.pkl"
        path.write_bytes(data)
        try:
            load_numpy_pickle(path)
        except WeightsError as error:
            assert str(path) in str(error)
        assert not canary_path.exists(), "a mutated pickle ran code"

    check()


@pytest.mark.tf
@pytest.mark.slow
def test_mutated_hdf5_weights_files_are_weights_errors(fuzz_dir: Path) -> None:
    """A tiny CNN's ``.weights.h5``, mutated, checked on the driver and loaded as a worker does:
    a WeightsError naming the file, or (when the mutation missed everything read) the weights."""
    from tiny_cnn import build_tiny_cnn

    from vista_sql.udfs.models import load_weights_file

    model = build_tiny_cnn()
    seed_path = fuzz_dir / "seed.weights.h5"
    model.save_weights(seed_path)
    seed = seed_path.read_bytes()

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(mutations(seed, canary_pickle(fuzz_dir / "fired_h5")))
    def check(data: bytes) -> None:
        path = fuzz_dir / "mutated.weights.h5"
        path.write_bytes(data)
        try:
            check_container(path, str(path))
            load_weights_file(build_tiny_cnn(), str(path), "tiny")
        except WeightsError as error:
            assert str(path) in str(error)

    check()


# ------------------------------------------------------------------------------------------------
# Keras files that would run code
# ------------------------------------------------------------------------------------------------


def keras_archive(path: Path, config: dict[str, Any]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", b"")
    return path


def _layer(class_name: str, module: str | None = "keras.layers", **extra: Any) -> dict[str, Any]:
    return {"module": module, "class_name": class_name, "config": {"name": "x"}, **extra}


def _functional(*layers: dict[str, Any]) -> dict[str, Any]:
    return {
        "module": "keras",
        "class_name": "Functional",
        "registered_name": "Functional",
        "config": {"layers": list(layers)},
    }


@pytest.mark.parametrize(
    ("layer", "said"),
    [
        (_layer("Lambda"), "a Lambda layer"),
        (_layer("Dense", module="evil.layers", registered_name="Custom>Dense"), "custom object"),
        (_layer("Mine", module=None, registered_name="my_package>Mine"), "custom object"),
    ],
)
def test_a_keras_file_with_code_is_refused_saying_why(
    tmp_path: Path, layer: dict[str, Any], said: str
) -> None:
    path = keras_archive(tmp_path / "model.keras", _functional(_layer("Dense"), layer))
    with pytest.raises(WeightsError, match=said) as raised:
        check_container(path, "model.keras")
    assert "safe_mode" in str(raised.value) and "model.keras" in str(raised.value)


def test_built_in_layers_pass() -> None:
    assert code_in_config(_functional(_layer("Dense", registered_name="Dense"))) is None


@pytest.mark.tf
def test_a_real_keras_model_with_a_lambda_layer_is_refused(tmp_path: Path) -> None:
    import keras

    import vista_sql
    from vista_sql.udfs.registry import RegistrationError

    image = keras.Input(shape=(8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(image)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    path = tmp_path / "lambda.keras"
    keras.Model(image, x).save(path)
    with pytest.raises(WeightsError, match=r"a Lambda layer \(double\)"):
        check_container(path, str(path))
    with pytest.raises(RegistrationError, match="Lambda layer"):
        vista_sql.register_cnn("with_lambda", str(path), ["gap"], cache_dir=str(tmp_path))


# ------------------------------------------------------------------------------------------------
# EXPLAIN imports neither TensorFlow/Keras nor Spark, and writes nothing
# ------------------------------------------------------------------------------------------------

BLOCKED_EXPLAIN = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "pyspark", "tf_keras"):
                raise ImportError(f"EXPLAIN imported {name}")
            return None

    sys.meta_path.insert(0, Blocker())
    import vista_sql

    data, cnns = sys.argv[1], sys.argv[2:]
    choices = ("IMAGENET", "RANDOM SEED 3", f"'{data}/own.weights.h5'")
    texts = {}
    for cnn in cnns:
        for weights in choices:
            texts[f"{cnn} {weights}"] = vista_sql.explain(
                f"TRANSFER FEATURES OF '{data}/images' FROM CNN {cnn} WEIGHTS {weights}"
                f" LAYERS TOP 2 JOIN '{data}/table.csv' USING (id) TRAIN LOGREG LABEL y"
                " WITH (cache = true)"
            )
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "pyspark"})
    print(json.dumps({"texts": texts, "heavy": heavy}))
    """
)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_explain_of_every_roster_cnn_and_weights_choice_imports_and_writes_nothing(
    tmp_path: Path,
) -> None:
    import h5py
    from PIL import Image

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    for index in range(4):
        Image.new("RGB", (6, 6), (index * 40, 0, 0)).save(data / "images" / f"{index}.png")
    (data / "table.csv").write_text("id,x,y\n0,1.0,0\n1,2.0,1\n2,3.0,0\n3,4.0,1\n")
    with h5py.File(data / "own.weights.h5", "w") as weights:  # a container, checked by EXPLAIN
        weights.create_dataset("vars/0", data=np.zeros(3, np.float32))
    keras_home, cache, home = tmp_path / "keras", tmp_path / "cache", tmp_path / "home"
    for directory in (keras_home, cache, home):
        directory.mkdir()
    before = _tree(tmp_path)
    environment = {
        **os.environ,
        "KERAS_HOME": str(keras_home),
        "VISTA_SQL_CACHE_DIR": str(cache),
        "VISTA_SQL_CACHE": "1",
        "HOME": str(home),
        "PYTHONPATH": str(REPO_ROOT),
        "TMPDIR": str(home),
    }
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_EXPLAIN, str(data), *ROSTER],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["heavy"] == []
    assert len(found["texts"]) == 3 * len(ROSTER)
    assert all("Physical Plan" in text for text in found["texts"].values())
    assert _tree(tmp_path) == before, "EXPLAIN wrote files"


# ------------------------------------------------------------------------------------------------
# INTO ... WITH (overwrite = true) replaces only vista_sql's own output
# ------------------------------------------------------------------------------------------------


def into_query(target: Path) -> Any:
    from vista_sql.catalog import current
    from vista_sql.grammar.dialect import parse
    from vista_sql.logical.builder import build

    sql = (
        "TRANSFER FEATURES OF 'images' FROM CNN alexnet LAYERS (fc8) JOIN 't.csv' USING (id)\n"
        f"TRAIN LOGREG LABEL y WITH (overwrite = true) INTO '{target}'"
    )
    return build(parse(sql)[0], sql, current())


def vista_output(directory: Path) -> Path:
    """A directory as INTO leaves it: a layer, the report, the marker written last."""
    from vista_sql.physical.result import write_marker

    (directory / "fc8").mkdir(parents=True)
    (directory / "report.json").write_text("{}\n")
    write_marker(str(directory))
    return directory


def test_overwrite_replaces_an_earlier_into_output(tmp_path: Path) -> None:
    from vista_sql.physical.result import publish, staging_directory

    target = vista_output(tmp_path / "out")
    staging = staging_directory(str(target), True, into_query(target))
    (Path(staging) / "new").write_text("new\n")
    publish(staging, str(target))
    assert sorted(os.listdir(target)) == ["new"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: (d / "data.csv").write_text("precious\n"), id="a user's directory"),
        pytest.param(lambda d: (d / "report.json").write_text("{}\n"), id="report, no marker"),
        pytest.param(
            lambda d: (d / ".vista_sql_output.json").write_text('{"written_by": "someone"}'),
            id="a marker vista_sql did not write",
        ),
    ],
)
def test_overwrite_refuses_a_directory_vista_sql_did_not_write(tmp_path: Path, make: Any) -> None:
    from vista_sql.errors import VistaError
    from vista_sql.physical.result import staging_directory

    target = tmp_path / "out"
    target.mkdir()
    make(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    query = into_query(target)
    with pytest.raises(VistaError, match="not a directory vista_sql wrote") as raised:
        staging_directory(str(target), True, query)
    assert raised.value.highlight == f"'{target}'"  # the error points at INTO's path
    assert raised.value.line == 2
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_overwrite_follows_no_symbolic_link(tmp_path: Path) -> None:
    from vista_sql.errors import VistaError
    from vista_sql.physical.result import OUTPUT_MARKER, publish, staging_directory

    elsewhere = vista_output(tmp_path / "elsewhere")
    link = tmp_path / "out"
    link.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(VistaError, match="is a symbolic link"):
        staging_directory(str(link), True, into_query(link))
    assert (elsewhere / "fc8").is_dir()

    # A marker that is a link to a real marker does not make a directory vista_sql's.
    faked = tmp_path / "faked"
    faked.mkdir()
    (faked / "report.json").write_text("{}\n")
    (faked / OUTPUT_MARKER).symlink_to(elsewhere / OUTPUT_MARKER)
    with pytest.raises(VistaError, match="not a directory vista_sql wrote"):
        staging_directory(str(faked), True, into_query(faked))

    # Replacing an output that holds a link removes the link, not what it points at.
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep\n")
    target = vista_output(tmp_path / "target")
    (target / "fc7").symlink_to(precious, target_is_directory=True)
    staging = staging_directory(str(target), True, into_query(target))
    publish(staging, str(target))
    assert (precious / "keep.txt").read_text() == "keep\n"
    assert os.listdir(target) == []


# ------------------------------------------------------------------------------------------------
# The feature store: private, checked on read, owned by the user
# ------------------------------------------------------------------------------------------------


def test_store_directories_are_private_and_entries_record_their_digest(tmp_path: Path) -> None:
    from test_store_index import keys_of, write_entry

    from vista_sql.physical.store import FeatureStore

    pictures = tmp_path / "images"
    pictures.mkdir()
    (pictures / "0.jpg").write_bytes(b"0" * 100)
    old_umask = os.umask(0o022)
    try:
        store = FeatureStore(tmp_path / "cache")
        entry = write_entry(store, keys_of(pictures), "fc6")
    finally:
        os.umask(old_umask)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    FeatureStore(shared).begin()
    assert shared.stat().st_mode & 0o777 == 0o755, "a directory the user named keeps its mode"
    assert (shared / "store").stat().st_mode & 0o777 == 0o700
    for directory in (
        tmp_path / "cache",
        tmp_path / "cache" / "store",
        store.root,
        store.entries_dir,
        store.tmp_dir,
        entry.location,
    ):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    assert len(entry.meta["data_sha256"]) == 64
    assert store.verify(entry) is None


def _stored(entry: Any) -> Any:
    from vista_sql.logical.plan import WeightsSpec

    return entry.stored_layer(WeightsSpec(kind="random", seed=7), "max2x2")


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        pytest.param(
            lambda data: (data / "part-0.parquet").write_bytes(
                (data / "part-0.parquet").read_bytes()[:-9] + b"X" * 9
            ),
            "not the",
            id="changed bytes",
        ),
        pytest.param(
            lambda data: (data / "part-1.parquet").write_bytes(b"PAR1"), "not the", id="added file"
        ),
        pytest.param(
            lambda data: (
                (data / "part-0.parquet").unlink()
                or (data / "part-0.parquet").symlink_to("/etc/hostname")
            ),
            "not a regular file",
            id="a symbolic link",
        ),
    ],
)
def test_an_entry_whose_data_changed_is_dropped_not_used(
    tmp_path: Path, tamper: Any, reason: str
) -> None:
    from test_store_index import keys_of, write_entry

    from vista_sql.physical.store import FeatureStore

    pictures = tmp_path / "images"
    pictures.mkdir()
    (pictures / "0.jpg").write_bytes(b"0" * 100)
    store = FeatureStore(tmp_path / "cache")
    keys = keys_of(pictures)
    good, bad = write_entry(store, keys, "fc6"), write_entry(store, keys, "fc7")
    tamper(bad.data)
    kept, dropped = store.checked((_stored(good), _stored(bad)))
    assert [layer.layer for layer in kept] == ["fc6"]
    assert len(dropped) == 1 and "vgg16.fc7" in dropped[0] and reason in dropped[0]
    assert not bad.location.exists() and good.location.exists()


def test_a_store_owned_by_another_user_is_refused_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vista_sql.physical.store import SHARED_ENV, FeatureStore, StoreError

    if os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chown(cache, 4242, 4242)
    monkeypatch.delenv(SHARED_ENV, raising=False)
    with pytest.raises(StoreError, match="belongs to user id 4242") as raised:
        FeatureStore(cache)
    assert SHARED_ENV in str(raised.value)
    with pytest.raises(StoreError, match="belongs to user id 4242"):
        vista_sql_explain_with_cache(tmp_path, cache)
    monkeypatch.setenv(SHARED_ENV, "1")
    FeatureStore(cache)  # trusted when configured


def vista_sql_explain_with_cache(tmp_path: Path, cache: Path) -> str:
    import vista_sql

    pictures = tmp_path / "pictures"
    pictures.mkdir(exist_ok=True)
    (pictures / "0.jpg").write_bytes(b"0" * 100)
    return vista_sql.explain(
        f"TRANSFER FEATURES OF '{pictures}' FROM CNN vgg16 WEIGHTS RANDOM LAYERS (fc7)"
        f" JOIN 't.parquet' USING (id) TRAIN LOGREG LABEL y"
        f" WITH (cache = true, cache_dir = '{cache}')"
    )


# ------------------------------------------------------------------------------------------------
# Resources on a system without /proc or cgroups
# ------------------------------------------------------------------------------------------------


def test_resources_without_proc_or_cgroups_fall_back_to_sysconf(tmp_path: Path) -> None:
    from vista_sql.cost_model.resources import detect_resources

    found = detect_resources(root=tmp_path, cpus=3)  # an empty root: no /proc, no /sys
    assert found.memory_bytes == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert found.cores == 3
    assert dict(found.origin)["memory"] == "sysconf SC_PHYS_PAGES (no /proc/meminfo)"
    # Unreadable /proc files are the same as none.
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "meminfo").write_bytes(b"\xff\xfe garbage")
    (tmp_path / "proc" / "self" / "cgroup").write_bytes(b"\xff\xfe")
    (tmp_path / "proc" / "self" / "mountinfo").mkdir()
    assert detect_resources(root=tmp_path, cpus=3).memory_bytes == found.memory_bytes


def test_resources_without_any_memory_figure_ask_for_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vista_sql.cost_model.resources import detect_resources
    from vista_sql.errors import ResourceError
    from vista_sql.logical.query import Options

    def no_sysconf(name: str) -> int:
        raise ValueError(f"unrecognized configuration name {name}")

    monkeypatch.setattr(os, "sysconf", no_sysconf)
    with pytest.raises(ResourceError, match=r"WITH \(memory = '8g'\)"):
        detect_resources(root=tmp_path, cpus=2)
    given = detect_resources(Options(memory=2**30), root=tmp_path, cpus=2)
    assert given.memory_bytes == 2**30


@pytest.mark.spark
@pytest.mark.tf
@pytest.mark.slow
def test_a_poisoned_store_entry_is_recomputed_with_a_warning_never_read(
    spark: Any, tiny: str, tmp_path: Path
) -> None:
    """An entry's Parquet replaced by a valid one with other values (what an attacker who could
    write the store would do) is dropped: the statement's result is a fresh run's."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_store_spark import cached, features, outcome, statement

    import vista_sql
    from vista_sql.datasets.foods import make_foods
    from vista_sql.physical.store import FeatureStore
    from vista_sql.physical.store.spark_io import StoreWarning

    foods = make_foods(tmp_path / "foods", rows=24, seed=4, image_size=32)
    images = foods.images_dir
    cache = tmp_path / "cache"
    fresh = vista_sql.execute(
        statement(images, foods, tiny, "fc1, fc2", "cache = false", tmp_path / "fresh"),
        spark=spark,
        progress=False,
    )
    first = vista_sql.execute(
        statement(images, foods, tiny, "fc1, fc2", cached(cache)), spark=spark, progress=False
    )
    assert len(first.store["written"]) == 2
    store = FeatureStore(cache)
    poisoned = next(e for e in store.entries() if e.meta["layer"] == "fc1")
    for part in sorted(poisoned.data.glob("*.parquet")):
        table = pq.read_table(part)
        values = pa.array(
            [[1.0] * len(row) for row in table.column("values").to_pylist()],
            pa.list_(pa.float32()),
        )
        pq.write_table(table.set_column(1, "values", values), part)

    second_sql = statement(images, foods, tiny, "fc1, fc2", cached(cache), tmp_path / "second")
    with pytest.warns(StoreWarning, match=r"dropped and recomputed: tiny\.fc1 .*not the"):
        second = vista_sql.execute(second_sql, spark=spark, progress=False)
    assert [entry.split(":")[0] for entry in second.store["read"]] == ["tiny.fc2"]
    assert [entry.split()[0] for entry in second.store["written"]] == ["tiny.fc1"]
    assert outcome(second) == outcome(fresh)
    np.testing.assert_array_equal(
        features(tmp_path / "second", "fc1"), features(tmp_path / "fresh", "fc1")
    )
    assert all(store.verify(entry) is None for entry in store.entries())
