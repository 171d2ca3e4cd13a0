"""Successive halving against the exhaustive search: which (layer, parameters), at what cost.

    python benchmarks/bench_search.py [--rows 1000] [--tasks fashion,foods] [--layers 8]

``LAYERS TOP k`` with k of 8 or more, times a 3-value grid, is many candidates; most are
clearly worse. Two statements per task, in one local[2] SparkSession, over the same features
(the first stores its layers in a fresh feature store, the second reads them, so only training
differs):

- ``exhaustive`` (the default): every layer's grid by 3-fold cross-validation on its training
  rows, the best values refitted; the best (layer, parameters) is the layer with the highest
  validation AUC, with its chosen values;
- ``halving``: ``WITH (search = 'halving')`` (``vista_sql.logical.search``).

Tasks: ``fashion``: Fashion-MNIST T-shirt/top vs shirt (``--rows`` garments, Debian's
``dataset-fashion-mnist``), SqueezeNet 1.1 with its real ImageNet weights (the ``real`` extra);
``foods``: the generated Foods-like set (``--rows`` rows), ResNet50 with seeded random weights.
Both ``LOGREG (max_iter = 30, reg_param = (0.001, 0.01, 0.1))``, 25 % held out.

Targets (issue 18): halving picks the exhaustive search's best (layer, parameters), or one within
0.01 of its validation AUC, in at most 40 % of its training time (the layers' ``train_seconds``:
every fit, cross-validation and scoring included). Writes ``benchmarks/results/search.json`` and
``search.png`` and prints a table.
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

from bench_feature_store import start_spark  # noqa: E402
from bench_scale import cpu_flags  # noqa: E402

import vista_sql  # noqa: E402
from vista_sql.udfs.layer_stats import machine  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
GRID = "max_iter = 30, reg_param = (0.001, 0.01, 0.1)"
TIME_TARGET = 0.40
METRIC_TOLERANCE = 0.01


def datasets(task: str, rows: int, work: Path) -> dict[str, Any]:
    if task == "fashion":
        from vista_sql.datasets.fashion_mnist import make_fashion_mnist

        made = make_fashion_mnist(work / "fashion", rows=rows, image_size=64)
        return {
            "cnn": "squeezenet",
            "weights": "WEIGHTS IMAGENET",
            "images": made.images_dir,
            "table": made.table_path,
            "label": made.label,
        }
    from vista_sql.datasets.foods import make_foods

    foods = make_foods(work / "foods", rows=rows, seed=0, image_size=224)
    return {
        "cnn": "resnet50",
        "weights": "WEIGHTS RANDOM SEED 7",
        "images": foods.images_dir,
        "table": foods.table_path,
        "label": "healthy",
    }


def statement(data: dict[str, Any], layers: int, options: str) -> str:
    return (
        f"TRANSFER FEATURES OF '{data['images']}' AS i FROM CNN {data['cnn']} {data['weights']}"
        f" LAYERS TOP {layers} JOIN '{data['table']}' AS t ON i.id = t.id"
        f" TRAIN LOGREG ({GRID}) LABEL {data['label']} VALIDATE 0.25 SEED 2019"
        f" WITH ({options})"
    )


def best_exhaustive(result: Any) -> dict[str, Any]:
    rows = result.rows()
    best = max(rows, key=lambda r: (r["auc"], r["accuracy"]))
    return {
        "layer": best["layer"],
        "params": json.loads(best.get("best_params", "{}")),
        "auc": best["auc"],
        "accuracy": best["accuracy"],
    }


def same_choice(reference: dict[str, Any], winner: dict[str, Any]) -> bool:
    """The same layer and grid values (the fixed parameters are the same by construction)."""
    grid = winner["params"]
    return winner["layer"] == reference["layer"] and all(
        reference["params"].get(k) == v for k, v in grid.items()
    )


def run_task(spark: Any, task: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = datasets(task, args.rows, work / task)
    cache = work / task / "cache"
    stored = f"cache = true, cache_dir = '{cache}', conv_pooling = 'max2x2'"
    seconds: dict[str, float] = {}
    results: dict[str, Any] = {}
    for run, options in (("exhaustive", stored), ("halving", stored + ", search = 'halving'")):
        started = time.perf_counter()
        results[run] = vista_sql.execute(
            statement(data, args.layers, options), spark=spark, progress=False
        )
        seconds[run] = time.perf_counter() - started
        print(f"{task} {run:<11} {seconds[run]:8.1f} s", flush=True)
    exhaustive, halving = results["exhaustive"], results["halving"]
    winner = next(fit for fit in halving.search if fit["winner"])
    reference = best_exhaustive(exhaustive)
    train = {run: sum(r["train_seconds"] for r in results[run].rows()) for run in results}
    return {
        "task": task,
        "cnn": data["cnn"],
        "rows": args.rows,
        "layers": [r["layer"] for r in exhaustive.rows()],
        "candidates": len(halving.search),
        "seconds": {run: round(value, 2) for run, value in seconds.items()},
        "train seconds": {run: round(value, 2) for run, value in train.items()},
        "time ratio": train["halving"] / train["exhaustive"],
        "exhaustive best": reference,
        "halving winner": {
            "layer": winner["layer"],
            "params": winner["params"],
            "auc": winner["auc"],
            "accuracy": winner["accuracy"],
        },
        "same choice": same_choice(reference, winner),
        "auc gap": reference["auc"] - winner["auc"],
        "exhaustive layers": exhaustive.rows(),
        "halving fits": halving.search,
        "read from the store": halving.store.get("read", []) != [],
    }


def table(report: list[dict[str, Any]]) -> str:
    lines = [
        f"{'task':<9}{'cnn':<12}{'cands':>6}{'exh. train s':>13}{'halv. train s':>14}"
        f"{'ratio':>7}  exhaustive best -> halving winner (AUC)"
    ]
    for entry in report:
        best, won = entry["exhaustive best"], entry["halving winner"]
        train = entry["train seconds"]
        verdict = "same" if entry["same choice"] else f"gap {entry['auc gap']:+.3f}"
        lines.append(
            f"{entry['task']:<9}{entry['cnn']:<12}{entry['candidates']:>6}"
            f"{train['exhaustive']:>13.1f}{train['halving']:>14.1f}{entry['time ratio']:>7.0%}"
            f"  {best['layer']} {best['params']} ({best['auc']:.3f}) -> {won['layer']}"
            f" {won['params']} ({won['auc']:.3f}), {verdict}"
        )
    lines.append(
        f"targets: the same choice or an AUC within {METRIC_TOLERANCE}, training time <="
        f" {TIME_TARGET:.0%} of the exhaustive search's"
    )
    return "\n".join(lines)


def plot(report: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.5, 3.6))
    labels = [f"{e['task']}\n{e['cnn']}, {e['candidates']} candidates" for e in report]
    positions = range(len(report))
    exhaustive = [e["train seconds"]["exhaustive"] for e in report]
    halving = [e["train seconds"]["halving"] for e in report]
    axes.bar([p - 0.2 for p in positions], exhaustive, 0.4, label="exhaustive", color="#4c72b0")
    axes.bar([p + 0.2 for p in positions], halving, 0.4, label="halving", color="#dd8452")
    for p, e in zip(positions, report, strict=True):
        axes.annotate(
            f"{e['time ratio']:.0%}, AUC gap {e['auc gap']:+.3f}",
            (p + 0.2, e["train seconds"]["halving"]),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize="small",
        )
    axes.set_xticks(list(positions), labels)
    axes.set_ylabel("training seconds (all fits)")
    axes.set_title("Successive halving vs exhaustive search")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--tasks", default="fashion,foods")
    parser.add_argument("--name", default="search", help="stem of the result files")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vista-bench-search-"))
    load_before = os.getloadavg()[0]
    spark = start_spark()
    try:
        report = [run_task(spark, task, args, work) for task in args.tasks.split(",")]
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(table(report))
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "when": time.strftime("%Y-%m-%d"),
        "machine": {**machine(), "cpu_flags": cpu_flags()},
        "load average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "grid": GRID,
        "report": report,
    }
    (RESULTS / f"{args.name}.json").write_text(json.dumps(document, indent=1, default=str) + "\n")
    plot(report, RESULTS / f"{args.name}.png")


if __name__ == "__main__":
    main()
