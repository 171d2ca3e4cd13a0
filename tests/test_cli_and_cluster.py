"""The command line (run, explain, dataset) and a run on a Spark standalone cluster.

The cluster is a real standalone master and worker, started on 127.0.0.1 with Spark's own
``spark-class`` launcher from pip's pyspark, and stopped by process id. Where network namespaces
can be made, ``test_cluster_netns.py`` runs statements on a two-host cluster instead (the CLI's
``--master`` is ``execute(master=...)``), and this one-host cluster is not started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from vista_sql.cli import main
from vista_sql.datasets.foods import FoodsDataset, make_foods

sys.path.insert(0, os.path.dirname(__file__))
from netns_cluster import unavailable_reason

CLI = [sys.executable, "-m", "vista_sql.cli"]


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return make_foods(tmp_path_factory.mktemp("cli") / "foods", rows=12, seed=2, image_size=64)


def statement(data: FoodsDataset, layers: str = "(fc7, fc8)") -> str:
    return (
        f"TRANSFER FEATURES OF '{data.images_dir}' AS i FROM CNN alexnet WEIGHTS RANDOM SEED 1"
        f" LAYERS {layers} JOIN '{data.table_path}' AS f ON i.id = f.id"
        " TRAIN LOGREG (max_iter = 3) LABEL healthy VALIDATE 0.25"
    )


def test_dataset_command_writes_a_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "made"
    assert main(["dataset", "foods", "--rows", "5", "--out", str(out), "--image-size", "32"]) == 0
    assert sorted(os.listdir(out / "images")) == [f"{i}.jpg" for i in range(5)]
    assert (out / "foods.parquet").is_file()
    assert "wrote 5 rows" in capsys.readouterr().out
    assert main(["dataset", "foods", "--rows", "5", "--out", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_explain_command_prints_the_plan_without_spark(foods: FoodsDataset) -> None:
    done = subprocess.run(
        [*CLI, "explain", "-e", statement(foods)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "== Physical Plan:" in done.stdout
    assert "== Alternatives" in done.stdout


def test_errors_exit_2_and_point_at_the_text(tmp_path: Path) -> None:
    script = tmp_path / "bad.sql"
    script.write_text(
        "TRANSFER FEATURES OF 'x' FROM CNN vgg17 LAYERS (fc6)\n"
        " JOIN 't' ON a.id = b.id TRAIN LOGREG LABEL y"
    )
    done = subprocess.run([*CLI, "run", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "vgg17" in done.stderr and "vgg16" in done.stderr
    assert "Line 1" in done.stderr
    missing = subprocess.run(
        [*CLI, "run", str(tmp_path / "nope.sql")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A standalone master and one worker (2 cores, 3 GiB) on 127.0.0.1; yields the master URL."""
    from pyspark.find_spark_home import _find_spark_home

    home = _find_spark_home()
    launcher = os.path.join(home, "bin", "spark-class")
    work = tmp_path_factory.mktemp("standalone")
    env = {**os.environ, "SPARK_HOME": home, "SPARK_LOCAL_IP": "127.0.0.1"}
    port, ui, worker_ui = _free_port(), _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    started: list[subprocess.Popen[bytes]] = []
    logs = [open(work / name, "wb") for name in ("master.log", "worker.log")]  # noqa: SIM115
    try:
        started.append(
            subprocess.Popen(
                [
                    launcher,
                    "org.apache.spark.deploy.master.Master",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--webui-port",
                    str(ui),
                ],
                env=env,
                stdout=logs[0],
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        started.append(
            subprocess.Popen(
                [
                    launcher,
                    "org.apache.spark.deploy.worker.Worker",
                    url,
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    "2",
                    "--memory",
                    "3g",
                    "--webui-port",
                    str(worker_ui),
                    "--work-dir",
                    str(work / "work"),
                ],
                env=env,
                stdout=logs[1],
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as page:
                    if json.load(page).get("aliveworkers", 0) >= 1:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the standalone worker did not register: see " + str(work))
            time.sleep(1)
        saved = os.environ.get("VISTA_SQL_MASTER_UI")
        os.environ["VISTA_SQL_MASTER_UI"] = f"http://127.0.0.1:{ui}"  # the shape's source
        try:
            yield url
        finally:
            if saved is None:
                os.environ.pop("VISTA_SQL_MASTER_UI", None)
            else:
                os.environ["VISTA_SQL_MASTER_UI"] = saved
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in logs:
            log.close()


@pytest.mark.spark
@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.skipif(
    sys.platform.startswith("linux") and unavailable_reason() is None,
    reason="the two-host namespace cluster (test_cluster_netns.py) runs instead",
)
def test_run_on_a_standalone_cluster(standalone: str, foods: FoodsDataset, tmp_path: Path) -> None:
    into = tmp_path / "result"
    done = subprocess.run(
        [
            *CLI,
            "run",
            "-e",
            statement(foods),
            "--master",
            standalone,
            "--into",
            str(into),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["layer", "n_features", "accuracy"]
    assert [line.split()[0] for line in lines[1:3]] == ["fc8", "fc7"]
    report = json.loads((into / "report.json").read_text())
    assert [row["layer"] for row in report["layers"]] == ["fc8", "fc7"]
    assert sum(report["layers"][0][k] for k in ("train_rows", "validation_rows")) == 12
