"""The feature store: a VGG16 statement run again, and with another downstream model.

    python benchmarks/bench_feature_store.py [--rows 500] [--cnn vgg16] [--layers fc6,fc7,fc8]

Model selection repeats transfers over the same images; the store keeps the layers a statement
materialized so the next one reads them instead of decoding and inferring. Timed, in one local[2]
SparkSession (warmed first with a small statement on other images, so JVM and Python-worker
start-up count for no run):

- ``no store``: the statement with ``WITH (cache = false)``: what it costs without the store;
- ``first``: the same statement with an empty store: it infers and writes the store
  (``first - no store`` is the writing overhead; the writer's own wall time is reported too);
- ``second``: the same statement again: it reads the stored layers (its plan is checked to
  contain no inference);
- ``other model``: the same images and layers, another downstream model (a decision tree): it
  reads them too.

The figures of merit are ``first / second`` and ``first / other model`` (target: 5x or more), and
the overhead of writing. Metrics of ``second`` must equal those of ``first`` (checked). Writes
``benchmarks/results/feature_store.json`` and ``feature_store.png`` (``--name`` changes the
stem) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import vista_sql  # noqa: E402
from vista_sql.datasets.foods import make_foods  # noqa: E402
from vista_sql.physical.store import FeatureStore  # noqa: E402
from vista_sql.udfs.layer_stats import machine  # noqa: E402
from vista_sql.units import MiB  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
RUNS = ("no store", "first", "second", "other model")
MODELS = {
    "no store": "LOGREG (max_iter = 10, reg_param = 0.1)",
    "first": "LOGREG (max_iter = 10, reg_param = 0.1)",
    "second": "LOGREG (max_iter = 10, reg_param = 0.1)",
    "other model": "DECISION_TREE (max_depth = 5)",
}


def statement(images: Path, table: Path, cnn: str, layers: str, model: str, options: str) -> str:
    return (
        f"TRANSFER FEATURES OF '{images}' AS i FROM CNN {cnn} WEIGHTS RANDOM SEED 7"
        f" LAYERS ({layers}) JOIN '{table}' AS f ON i.id = f.id TRAIN {model}"
        f" LABEL healthy VALIDATE 0.2 SEED 2019 WITH ({options})"
    )


def start_spark() -> Any:
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    session = (
        SparkSession.builder.master("local[2]")
        .appName("vista_sql-bench-feature-store")
        .config("spark.driver.memory", "4g")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def timed_run(spark: Any, sql: str) -> tuple[float, Any]:
    started = time.perf_counter()
    result = vista_sql.execute(sql, spark=spark, progress=False)
    return time.perf_counter() - started, result


def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = make_foods(work / "foods", rows=args.rows, seed=0, image_size=args.image_size)
    warm = make_foods(work / "warm", rows=16, seed=1, image_size=args.image_size)
    cache = work / "cache"
    spark = start_spark()
    try:
        warm_sql = statement(
            warm.images_dir,
            warm.table_path,
            args.cnn,
            args.layers,
            MODELS["first"],
            "cache = false",
        )
        warm_seconds, _ = timed_run(spark, warm_sql)
        seconds: dict[str, float] = {}
        results: dict[str, Any] = {}
        for run in RUNS:
            options = (
                "cache = false" if run == "no store" else f"cache = true, cache_dir = '{cache}'"
            )
            sql = statement(
                data.images_dir, data.table_path, args.cnn, args.layers, MODELS[run], options
            )
            seconds[run], results[run] = timed_run(spark, sql)
            print(f"{run:<12} {seconds[run]:8.1f} s", flush=True)
    finally:
        spark.stop()
    second_plan = results["second"].plan.split("== Spark Configuration ==")[0]
    assert "Infer" not in second_plan and "StoredScan" in second_plan, second_plan
    same = (
        results["first"]
        .to_pandas()[["layer", "accuracy", "f1"]]
        .equals(results["second"].to_pandas()[["layer", "accuracy", "f1"]])
    )
    assert same, "the second run's metrics differ from the first's"
    store = FeatureStore(cache)
    return {
        "cnn": args.cnn,
        "layers": args.layers.split(","),
        "rows": args.rows,
        "image_size": args.image_size,
        "warm-up seconds": round(warm_seconds, 2),
        "seconds": {run: round(value, 2) for run, value in seconds.items()},
        "first / second": seconds["first"] / seconds["second"],
        "first / other model": seconds["first"] / seconds["other model"],
        "write overhead": (seconds["first"] - seconds["no store"]) / seconds["no store"],
        "writer seconds": round(results["first"].store["write_seconds"], 2),
        "inference seconds": {run: _stage(results[run], "inference") for run in RUNS},
        "train seconds": {run: _stage(results[run], "train") for run in RUNS},
        "plans": {run: results[run].plan.splitlines()[0] for run in RUNS},
        "entries": len(store.entries()),
        "store bytes": store.total_bytes(),
        "accuracy": {run: list(results[run].to_pandas()["accuracy"]) for run in RUNS},
    }


def _stage(result: Any, stage: str) -> float:
    """Seconds a run spent in one stage over all layers, as the executor measured them
    (inference: materialising each branch, stored reads included; train: the model fits)."""
    if stage == "inference":
        return round(sum(run.inference_seconds for run in result.runs), 2)
    return round(sum(run.trained.train_seconds for run in result.runs), 2)


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['cnn']} layers {', '.join(result['layers'])}, {result['rows']} images"
        f" ({result['image_size']} px); warm-up {result['warm-up seconds']} s",
        f"{'run':<14}{'seconds':>9}{'vs first':>10}{'inference':>11}{'training':>10}  plan",
    ]
    first = result["seconds"]["first"]
    for run in RUNS:
        seconds = result["seconds"][run]
        lines.append(
            f"{run:<14}{seconds:>9.1f}{first / seconds:>9.1f}x"
            f"{result['inference seconds'][run]:>11.1f}{result['train seconds'][run]:>10.1f}"
            f"  {result['plans'][run].strip('= ').removeprefix('Physical Plan: ')}"
        )
    lines.append(
        f"writing the store: +{result['write overhead']:.0%} over no store (writer"
        f" {result['writer seconds']} s); {result['entries']} entries,"
        f" {result['store bytes'] / MiB:.1f} MiB"
    )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Each run's seconds, stacked: inference (stored reads included), training, the rest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.8))
    stacked_seconds(
        axes, list(RUNS), result, RUNS, "inference or stored reads (+ writing the store)"
    )
    axes.set_title(
        f"Feature store: {result['cnn']} {', '.join(result['layers'])}, {result['rows']} images"
    )
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def stacked_seconds(
    axes: Any, labels: list[str], result: dict[str, Any], runs: tuple[str, ...], inference: str
) -> None:
    """Each run's seconds as a bar: inference (labelled ``inference``), training, the rest."""
    totals = [result["seconds"][run] for run in runs]
    inferring = [result["inference seconds"][run] for run in runs]
    training = [result["train seconds"][run] for run in runs]
    rest = [max(0.0, t - i - r) for t, i, r in zip(totals, inferring, training, strict=True)]
    axes.bar(labels, inferring, label=inference, color="#4c72b0")
    axes.bar(labels, training, bottom=inferring, label="training", color="#dd8452")
    bottom = [i + r for i, r in zip(inferring, training, strict=True)]
    axes.bar(labels, rest, bottom=bottom, label="other (source checks, jobs)", color="#bbbbbb")
    for index, total in enumerate(totals):
        axes.annotate(
            f"{total:.1f} s", (index, total), xytext=(0, 3), textcoords="offset points", ha="center"
        )
    axes.set_ylabel("seconds")
    axes.set_ylim(0, max(totals) * 1.15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--cnn", default="vgg16")
    parser.add_argument("--layers", default="fc6,fc7,fc8")
    parser.add_argument("--name", default="feature_store", help="stem of the result files")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vista-bench-store-"))
    load_before = os.getloadavg()[0]
    try:
        result = bench(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(table(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {"when": time.strftime("%Y-%m-%d"), "machine": machine(), "result": result}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(document, indent=1) + "\n")
    plot(result, RESULTS / f"{args.name}.png")


if __name__ == "__main__":
    main()
