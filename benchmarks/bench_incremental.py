"""The feature store over a growing image set: 2,000 images stored, then 200 added.

    python benchmarks/bench_incremental.py [--rows 2000] [--added 200] [--cnn resnet50]

Image sets grow (new products, new labelled photos). A statement stores its layers for the
images it saw; the next one, over the directory with more images, reads the stored rows of the
images unchanged and infers only the new ones (``vista_sql.logical.rules.use_stored_layers``).
Timed in one local[2] SparkSession (warmed first with a small statement on other images):

- ``stored``: the statement over the first ``--rows`` images, with an empty store: it infers
  them all and stores its layers;
- ``incremental``: ``--added`` images more in the directory: the same statement reads what is
  stored and infers the added images;
- ``cold``: the same statement over the grown directory with ``WITH (cache = false)``.

Targets (issue 18): ``incremental`` spends at most 15 % of ``cold``'s inference time and takes at
most 40 % of its time end to end. Checked, not timed: the incremental run's metrics equal the
cold run's, and it inferred exactly the added images (``result.inferred_images``). Writes
``benchmarks/results/incremental.json`` and ``incremental.png`` and prints a table.
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
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from bench_feature_store import _stage, stacked_seconds, start_spark, timed_run  # noqa: E402
from bench_scale import cpu_flags  # noqa: E402

from vista_sql.datasets.foods import make_foods  # noqa: E402
from vista_sql.udfs.layer_stats import machine  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
RUNS = ("stored", "incremental", "cold")
INFERENCE_TARGET = 0.15
TOTAL_TARGET = 0.40


def statement(images: Path, table: Path, cnn: str, layers: str, options: str) -> str:
    return (
        f"TRANSFER FEATURES OF '{images}' AS i FROM CNN {cnn} WEIGHTS RANDOM SEED 7"
        f" LAYERS ({layers}) JOIN '{table}' AS f ON i.id = f.id"
        f" TRAIN LOGREG (max_iter = 10, reg_param = 0.1) LABEL healthy VALIDATE 0.2 SEED 2019"
        f" WITH ({options})"
    )


def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    total = args.rows + args.added
    data = make_foods(work / "foods", rows=total, seed=0, image_size=args.image_size)
    warm = make_foods(work / "warm", rows=16, seed=1, image_size=args.image_size)
    images = work / "images"
    images.mkdir()
    files = sorted(data.images_dir.iterdir(), key=lambda p: int(p.stem))
    for path in files[: args.rows]:
        shutil.copy2(path, images / path.name)
    cache = work / "cache"
    cached = f"cache = true, cache_dir = '{cache}'"
    spark = start_spark()
    seconds: dict[str, float] = {}
    results: dict[str, Any] = {}
    try:
        warm_sql = statement(
            warm.images_dir, warm.table_path, args.cnn, args.layers, "cache = false"
        )
        warm_seconds, _ = timed_run(spark, warm_sql)
        for run in RUNS:
            if run == "incremental":
                for path in files[args.rows :]:
                    shutil.copy2(path, images / path.name)
            options = "cache = false" if run == "cold" else cached
            sql = statement(images, data.table_path, args.cnn, args.layers, options)
            seconds[run], results[run] = timed_run(spark, sql)
            print(f"{run:<12} {seconds[run]:8.1f} s", flush=True)
    finally:
        spark.stop()
    incremental, cold = results["incremental"], results["cold"]
    columns = ["layer", "accuracy", "f1", "auc"]
    assert incremental.to_pandas()[columns].equals(cold.to_pandas()[columns]), (
        "the incremental run's metrics differ from the cold run's"
    )
    assert incremental.inferred_images in (None, args.added), incremental.inferred_images
    inference = {run: _stage(results[run], "inference") for run in RUNS}
    return {
        "cnn": args.cnn,
        "layers": args.layers.split(","),
        "rows": args.rows,
        "added": args.added,
        "image_size": args.image_size,
        "warm-up seconds": round(warm_seconds, 2),
        "seconds": {run: round(value, 2) for run, value in seconds.items()},
        "inference seconds": inference,
        "train seconds": {run: _stage(results[run], "train") for run in RUNS},
        "inferred images": {run: results[run].inferred_images for run in RUNS},
        "inference ratio": inference["incremental"] / inference["cold"],
        "total ratio": seconds["incremental"] / seconds["cold"],
        "plans": {run: results[run].plan_choice.get("alternative") for run in RUNS},
        "accuracy": {run: list(results[run].to_pandas()["accuracy"]) for run in RUNS},
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['cnn']} layers {', '.join(result['layers'])}: {result['rows']} images stored,"
        f" then {result['added']} added ({result['image_size']} px);"
        f" warm-up {result['warm-up seconds']} s",
        f"{'run':<13}{'images':>8}{'inferred':>10}{'seconds':>9}{'inference':>11}"
        f"{'training':>10}  plan",
    ]
    for run in RUNS:
        images = result["rows"] + (0 if run == "stored" else result["added"])
        inferred = result["inferred images"][run]
        lines.append(
            f"{run:<13}{images:>8}{'?' if inferred is None else inferred:>10}"
            f"{result['seconds'][run]:>9.1f}{result['inference seconds'][run]:>11.1f}"
            f"{result['train seconds'][run]:>10.1f}  {result['plans'][run]}"
        )
    lines.append(
        f"incremental / cold: inference {result['inference ratio']:.0%} (target <="
        f" {INFERENCE_TARGET:.0%}), end to end {result['total ratio']:.0%} (target <="
        f" {TOTAL_TARGET:.0%})"
    )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Each run's seconds, stacked: inference (stored reads included), training, the rest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.5, 3.8))
    labels = [
        f"{run}\n{result['rows'] + (0 if run == 'stored' else result['added'])} images"
        for run in RUNS
    ]
    stacked_seconds(axes, labels, result, RUNS, "inference and stored reads")
    axes.set_title(
        f"Growing image set: {result['cnn']} {', '.join(result['layers'])},"
        f" +{result['added']} images"
    )
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--added", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--cnn", default="resnet50")
    parser.add_argument("--layers", default="conv5_3,fc6")
    parser.add_argument("--name", default="incremental", help="stem of the result files")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vista-bench-incremental-"))
    load_before = os.getloadavg()[0]
    try:
        result = bench(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(table(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "when": time.strftime("%Y-%m-%d"),
        "machine": {**machine(), "cpu_flags": cpu_flags()},
        "result": result,
    }
    (RESULTS / f"{args.name}.json").write_text(json.dumps(document, indent=1) + "\n")
    plot(result, RESULTS / f"{args.name}.png")


if __name__ == "__main__":
    main()
