"""Partial CNN inference throughput: one multi-output pass vs the naive way, resuming, Spark vs TF.

    python benchmarks/bench_inference.py [--images N] [--batch-size 8] [--cnn vgg16 ...]

Per roster CNN, images per second (decode included where the input is an image) of:

- ``one pass``: one model from the image to the top 3 transfer layers (multi-output);
- ``3 passes``: three models, image to each of the top 3 layers (VISTA's "naive" plan);
- ``resume``: the top 3 layers from the stored resume tensor of the layer below them (the stored
  tensor is already in memory: this is the inference that is left once a lower layer is stored);
- ``spark``: the one-pass inference as ``vista_sql.udfs.spark_infer.infer`` in a local[2]
  SparkSession, 2 partitions, 1 TensorFlow thread per task, written to Spark's ``noop`` sink;
  ``spark / tf`` is its throughput over the in-process ``one pass`` (TensorFlow's default threads:
  one per core). Spark runs once to warm its Python workers (model build) before it is timed.

Every in-process figure excludes building the model (reported as ``build s``: building and
tracing the first batch). Seeded random weights; images are the Foods-like dataset's JPEGs.
Writes ``benchmarks/results/inference.json`` and ``inference.png`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vista_sql.catalog import roster  # noqa: E402
from vista_sql.datasets.foods import food_jpeg, food_row  # noqa: E402
from vista_sql.logical.plan import LayerOut, WeightsSpec  # noqa: E402
from vista_sql.udfs.inference import InferenceSpec, clear_cache, infer_local  # noqa: E402
from vista_sql.udfs.layer_stats import machine  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
WEIGHTS = WeightsSpec("random", seed=7)
MODES = ("one pass", "3 passes", "resume", "spark")
IMAGES = {"alexnet": 256, "vgg16": 64, "resnet50": 128}
"""Images per CNN by default: about the same seconds each, enough that Spark's per-job overhead
(scheduling, a few hundred ms) does not dominate the cheap AlexNet."""


def images(count: int) -> list[bytes]:
    return [food_jpeg(food_row(i), image_size=256) for i in range(count)]


def timed(function: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def bench_model(cnn: str, data: list[bytes], batch_size: int, spark: Any) -> dict[str, Any]:
    info = roster().cnn(cnn)
    assert info is not None
    *_, store, top1, top2, top3 = info.layers
    top = [top1, top2, top3]
    outputs = tuple(LayerOut(layer.name, "features") for layer in top)
    one = InferenceSpec(cnn, WEIGHTS, None, outputs)
    separate = [InferenceSpec(cnn, WEIGHTS, None, (out,)) for out in outputs]
    store_spec = InferenceSpec(cnn, WEIGHTS, None, (LayerOut(store.name, "resume"),))
    resume = InferenceSpec(cnn, WEIGHTS, store.name, outputs)
    warm = data[:batch_size]
    load_before = os.getloadavg()[0]
    clear_cache()
    build_s, _ = timed(lambda: infer_local(warm, one, batch_size))
    for spec in (*separate, store_spec, resume):
        stored_warm = infer_local(warm, store_spec, batch_size)[f"resume_{store.name}"]
        infer_local(stored_warm if spec is resume else warm, spec, batch_size)
    one_s, reference = timed(lambda: infer_local(data, one, batch_size))
    three_s = sum(timed(lambda s=spec: infer_local(data, s, batch_size))[0] for spec in separate)
    stored = infer_local(data, store_spec, batch_size)[f"resume_{store.name}"]
    resume_s, resumed = timed(lambda: infer_local(stored, resume, batch_size))
    for column in one.columns:
        assert abs(resumed[column] - reference[column]).max() <= 1e-4 * abs(reference[column]).max()
    clear_cache()
    spark_s = bench_spark(spark, data, one, batch_size)
    count = len(data)
    return {
        "cnn": cnn,
        "layers": [layer.name for layer in top],
        "stored": store.name,
        "images": count,
        "batch_size": batch_size,
        "build s": round(build_s, 2),
        "one pass": count / one_s,
        "3 passes": count / three_s,
        "resume": count / resume_s,
        "spark": count / spark_s,
        "spark / tf": (count / spark_s) / (count / one_s),
        "load average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def bench_spark(spark: Any, data: list[bytes], spec: InferenceSpec, batch_size: int) -> float:
    from vista_sql.udfs.spark_infer import infer

    frame = spark.createDataFrame(list(enumerate(data)), "id int, image binary").repartition(2)
    frame = frame.cache()
    frame.count()
    result = infer(
        frame, spec, input_column="image", passthrough=["id"], batch_size=batch_size, threads=1
    )

    def run() -> None:
        result.write.format("noop").mode("overwrite").save()

    run()  # warm: Python workers import TensorFlow and build the model once
    seconds, _ = timed(run)
    frame.unpersist()
    return seconds


def start_spark() -> Any:
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    session = (
        SparkSession.builder.master("local[2]")
        .appName("vista_sql-bench-inference")
        .config("spark.driver.memory", "2g")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.python.worker.reuse", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "64")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def table(rows: list[dict[str, Any]]) -> str:
    header = f"{'cnn':<10}{'top 3 layers':<26}{'stored':<9}{'images':>7}{'build s':>8}"
    header += "".join(f"{mode:>11}" for mode in MODES) + f"{'spark / tf':>12}"
    lines = [header, "-" * len(header)]
    for row in rows:
        line = f"{row['cnn']:<10}{', '.join(row['layers']):<26}{row['stored']:<9}"
        line += f"{row['images']:>7}{row['build s']:>8.2f}"
        line += "".join(f"{row[mode]:>11.2f}" for mode in MODES)
        load = "/".join(f"{value:.1f}" for value in row["load average"])
        lines.append(line + f"{row['spark / tf']:>12.2f}  load {load}")
    lines.append("images/s; one pass = image -> top 3 layers in one multi-output model;")
    lines.append("load = 1-minute load average before/after (other processes share the cores)")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    width = 0.2
    for index, mode in enumerate(MODES):
        positions = [i + (index - 1.5) * width for i in range(len(rows))]
        axes.bar(positions, [row[mode] for row in rows], width, label=mode)
    axes.set_xticks(range(len(rows)), [row["cnn"] for row in rows])
    axes.set_ylabel("images / s")
    axes.set_yscale("log")
    axes.set_title("Inference to the top 3 layers (2-core CPU)")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=len(MODES), frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, help="images per CNN (default: IMAGES)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cnn", action="append")
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    spark = start_spark()
    rows = []
    for cnn in args.cnn or list(IMAGES):
        data = images(args.images or IMAGES.get(cnn, 64))
        rows.append(bench_model(cnn, data, args.batch_size, spark))
        print(table(rows[-1:]).splitlines()[2], flush=True)
    spark.stop()
    print(table(rows))
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "when": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "results": rows,
    }
    (RESULTS / "inference.json").write_text(json.dumps(document, indent=1) + "\n")
    plot(rows, RESULTS / "inference.png")


if __name__ == "__main__":
    main()
