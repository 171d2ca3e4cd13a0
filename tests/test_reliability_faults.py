"""Faults: a Python worker killed in the middle of inference (the task is retried, the results do
not change), Ctrl-C on ``vista-sql run`` (nothing left running, no INTO directory that looks
complete), weights files that are corrupt or of another architecture (a WeightsError pointing at
WEIGHTS)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from reliability_support import alive, descendants, inferring_workers, statement, tiny_foods

import vista_sql
from vista_sql.datasets.foods import FoodsDataset
from vista_sql.udfs.weights import WeightsError

pytestmark = [pytest.mark.spark, pytest.mark.tf, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return tiny_foods(tmp_path_factory.mktemp("faults") / "foods")


def vista_sql_run(sql: str, into: Path, logs: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """``vista-sql run -e SQL --into DIR`` in a new process (its own Spark session), logs to
    files (a full pipe would stall it)."""
    paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, "-m", "vista_sql.cli", "run", "--no-progress", "-e", sql]
    return subprocess.Popen(
        [*command, "--into", str(into)],
        stdout=(logs / "stdout").open("wb"),
        stderr=(logs / "stderr").open("wb"),
        env=env,
        cwd=logs,
        **popen,
    )


def wait_for(
    find: Callable[[], T | None], process: subprocess.Popen[bytes], timeout: float = 300.0
) -> T:
    """Poll ``find`` until it gives something; fail if ``process`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found is not None:
            return found
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before the moment to interrupt")
        time.sleep(0.05)
    pytest.fail(f"nothing found in {timeout} s")


@pytest.fixture
def reaper() -> Iterator[set[int]]:
    """Pids this test started (directly or not): any still running at the end are killed."""
    started: set[int] = set()
    yield started
    for pid in started:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def layer_features(directory: Path, layer: str) -> dict[int, tuple[Any, np.ndarray]]:
    import pyarrow.parquet as pq

    table = pq.read_table(directory / layer / "features.parquet").to_pylist()
    return {row["id"]: (row["label"], np.asarray(row["features"]["values"])) for row in table}


def test_a_worker_killed_mid_inference_is_retried_and_changes_nothing(
    spark: Any, foods: FoodsDataset, tmp_path: Path, reaper: set[int]
) -> None:
    sql = statement(foods.images_dir, foods.table_path)
    killed = tmp_path / "killed"
    process = vista_sql_run(sql, killed, tmp_path)
    reaper.add(process.pid)

    def inferring() -> int | None:
        reaper.update(p.pid for p in descendants(process.pid))
        workers = inferring_workers(process.pid)
        return workers[0] if workers else None

    victim = wait_for(inferring, process)
    os.kill(victim, signal.SIGKILL)
    assert process.wait(timeout=600) == 0, (tmp_path / "stderr").read_text()[-3000:]
    assert "Python worker exited unexpectedly" in (tmp_path / "stderr").read_text(), (
        "the kill failed a task, which Spark retried"
    )

    reference = tmp_path / "reference"
    vista_sql.execute(f"{sql} INTO '{reference}'", spark=spark, progress=False)
    for layer in ("fc8",):
        ours, theirs = layer_features(killed, layer), layer_features(reference, layer)
        assert sorted(ours) == sorted(theirs) == list(range(12))
        for key, (label, values) in ours.items():
            assert label == theirs[key][0]
            np.testing.assert_allclose(values, theirs[key][1], rtol=1e-5, atol=1e-5)
    metrics = [json.loads((d / "report.json").read_text())["layers"] for d in (killed, reference)]
    for ours_row, theirs_row in zip(*metrics, strict=True):
        for name in ("layer", "n_features", "train_rows", "validation_rows"):
            assert ours_row[name] == theirs_row[name]
        for name in ("accuracy", "f1", "auc"):
            assert ours_row[name] == pytest.approx(theirs_row[name], abs=1e-6, nan_ok=True)


def test_ctrl_c_stops_everything_and_leaves_no_into_directory(
    foods: FoodsDataset, tmp_path: Path, reaper: set[int]
) -> None:
    target = tmp_path / "out"
    process = vista_sql_run(
        statement(foods.images_dir, foods.table_path, layers="(fc7, fc8)"),
        target,
        tmp_path,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    reaper.add(process.pid)
    staging = tmp_path / f".out.partial-{process.pid}"

    def mid_run() -> bool | None:
        reaper.update(p.pid for p in descendants(process.pid))
        return True if staging.is_dir() and inferring_workers(process.pid) else None

    wait_for(mid_run, process)
    tree = {p.pid: p.command for p in descendants(process.pid)}
    assert any("java" in command for command in tree.values()), tree
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does

    assert process.wait(timeout=120) == 130, (tmp_path / "stderr").read_text()[-3000:]
    assert "interrupted" in (tmp_path / "stderr").read_text()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(pid) for pid in tree):
        time.sleep(0.2)
    assert [(pid, tree[pid]) for pid in tree if alive(pid)] == []
    assert not target.exists()
    assert not staging.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stderr", "stdout"]


def test_a_corrupt_weights_file_is_refused_before_any_data_is_read(
    spark: Any, foods: FoodsDataset, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    sql = statement(foods.images_dir, foods.table_path, weights=f"'{broken}'")
    with pytest.raises(WeightsError) as raised:
        vista_sql.execute(sql, spark=spark, progress=False)
    assert raised.value.highlight == f"WEIGHTS '{broken}'"
    assert f"weights file '{broken}': it is not a Keras weights file" in str(raised.value)


def test_weights_of_another_architecture_are_a_weights_error_naming_the_file(
    spark: Any, foods: FoodsDataset, tmp_path: Path
) -> None:
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc6")])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    sql = statement(foods.images_dir, foods.table_path, weights=f"'{path}'")
    with pytest.raises(WeightsError) as raised:
        vista_sql.execute(sql, spark=spark, progress=False)
    description = raised.value.description or ""
    assert description.startswith(f"cannot load weights file '{path}' into alexnet")
    assert "objects could not be loaded" in description
    assert raised.value.highlight == f"WEIGHTS '{path}'"
