"""Calibrate the cost model: measure its machine constants, and compare predictions with runs.

    python benchmarks/bench_calibration.py constants [--write]
        Measures the machine constants as ``vista-sql calibrate`` does (``vista_sql.physical.
        profile``: each in a fresh subprocess; see its docstring for what) and prints them as
        JSON; ``--write`` stores them as the calibration shipped with vista_sql,
        ``vista_sql/cost_model/calibration.json`` (a user's own ``vista-sql calibrate`` file
        overrides it).

    python benchmarks/bench_calibration.py runs [--rows N] [--cnns a,b] [--batches 8,32]
                                              [--cores 1,2] [--data DIR] [--out FILE.json]
        Runs real statements (a Foods-like dataset of N rows, the two top layers of each CNN,
        logistic regression), one per CNN x batch size x concurrent tasks (``WITH (batch_size,
        executor_cores)``), each in a fresh process, and prints the cost model's prediction beside
        the measurement: runtime of the workload (``TransferResult.seconds``) and peak resident
        memory of the whole process tree (``TransferResult.peak_memory``, split JVM / Python
        workers / driver as the executor samples it), with the error ratios (measured /
        predicted). The target for memory is a ratio within 1 +- 0.25. Writes the JSON and a plot
        of measured against predicted (``calibration.png``).

    python benchmarks/bench_calibration.py plans [--rows alexnet=800,...] [--data DIR]
        For each CNN's benchmark workload (AlexNet conv5..fc8, VGG16 fc6..fc8, ResNet50 its top
        three layers; logistic regression), every logical alternative the optimizer compares
        (lazy / eager / staged x join before / after x recompute / persist), each run in a fresh
        process with the physical choices the optimizer makes for it, and the measured runtimes
        set beside the optimizer's choice. The target: the chosen plan measured fastest, or within
        10% of the fastest. Writes ``calibration_plans.json`` and ``calibration_plans.png``.

Every statement runs with ``WITH (cache = false)``: a feature-store entry written by one run
would otherwise let the next skip inference, and the runs would not measure the same work.

Run it alone on an idle machine: the throughput figures are per core and other load skews them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vista_sql.physical.profile import measure  # noqa: E402

CALIBRATION_FILE = ROOT / "vista_sql" / "cost_model" / "calibration.json"

RUN = """
import json
import vista_sql
from vista_sql.catalog import current
from vista_sql.cost_model.decide import decide
from vista_sql.logical.builder import build

sql = {sql!r}
query = build(vista_sql.parse_one(sql), sql, current())
chosen = decide(query, current()).chosen
need = {{r.name: r.need.value for r in chosen.memory.regions}}
result = vista_sql.execute(sql, progress=False)
peak = result.peak_memory
print(json.dumps({{
    "alternative": chosen.alternative,
    "choice": chosen.choice.describe(),
    "heap_bytes": chosen.memory.heap_bytes,
    "predicted_seconds": chosen.time.value,
    "predicted_peak": chosen.peak.value,
    "predicted_jvm": need["jvm_heap"] + need["jvm_overhead"] + need["arrow_buffers"],
    "predicted_python": need["python_workers"] + need["python_daemon"],
    "predicted_driver": need["driver_python"],
    "seconds": result.seconds,
    "peak": peak.total,
    "peak_jvm": peak.jvm,
    "peak_python": peak.python_workers,
    "peak_driver": peak.driver,
}}))
"""

TOP_LAYERS = 2


def _statement(code: str, label: str) -> dict[str, Any]:
    """Run one statement's script (``RUN`` or ``PLAN``) in a fresh interpreter: the JSON object
    it prints last, or ``{"error": <stderr tail>}`` when it fails (the benchmark goes on)."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if done.returncode != 0:
        print(f"{label}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
        return {"error": done.stderr[-2000:]}
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{label}: {row['seconds']:.1f} s", file=sys.stderr)
    return row


def workload(cnn: str, data: Path, top: int, options: str = "") -> str:
    """The benchmark statement: ``cnn``'s ``top`` transfer layers over the dataset in ``data``,
    logistic regression, the feature store off, and the extra WITH ``options``."""
    from vista_sql.catalog import current

    info = current().cnn(cnn)
    assert info is not None, cnn
    layers = ", ".join(info.layer_names[-top:])
    settings = ", ".join(filter(None, [options, "cache = false"]))
    return (
        f"TRANSFER FEATURES OF '{data / 'images'}' AS i FROM CNN {cnn}"
        f" WEIGHTS RANDOM SEED 7 LAYERS ({layers})"
        f" JOIN '{data / 'foods.parquet'}' AS f ON i.id = f.id"
        f" TRAIN LOGREG (max_iter = 5) LABEL healthy WITH ({settings})"
    )


def run_statements(
    rows: int, cnns: list[str], batches: list[int], cores: list[int], data: Path
) -> list[dict[str, Any]]:
    """Every configuration run in its own process; the prediction and measurement of each."""
    from vista_sql.datasets.foods import make_foods

    if not (data / "foods.parquet").exists():
        make_foods(data, rows, overwrite=True)
    results = []
    for cnn in cnns:
        for batch in batches:
            for count in cores:
                options = f"batch_size = {batch}, executor_cores = {count}"
                sql = workload(cnn, data, TOP_LAYERS, options)
                label = f"{cnn} batch={batch} cores={count}"
                results.append({"label": label, **_statement(RUN.format(sql=sql), label)})
    return results


PLAN = """
import json
import vista_sql
from vista_sql.catalog import current
from vista_sql.cost_model.decide import decide
from vista_sql.logical.builder import build
from vista_sql.physical.run import run_query

sql = {sql!r}
catalog = current()
query = build(vista_sql.parse_one(sql), sql, catalog)
plan = decide(query, catalog, alternative={alternative!r}).chosen
result = run_query(query, catalog, progress=False, alternative={alternative!r})
print(json.dumps({{
    "alternative": {alternative!r},
    "choice": plan.choice.describe(),
    "predicted_seconds": plan.time.value,
    "predicted_peak": plan.peak.value,
    "seconds": result.seconds,
    "peak": result.peak_memory.total,
    "accuracy": {{str(row["layer"]): row["accuracy"] for row in result.rows()}},
}}))
"""

PLAN_ROWS = {"alexnet": 800, "vgg16": 120, "resnet50": 300}
"""Rows per workload: sized so that the one-pass plans run 20-30 s and the slowest about 50 s
here, long enough for recomputing to show, short enough for 33 runs in about 20 minutes."""

PLAN_LAYERS = {"alexnet": 4, "vgg16": 3, "resnet50": 3}
"""How many of each CNN's top transfer layers the workload transfers."""

WITHIN = 0.10
"""The target: the chosen plan's measured runtime at most this much above the fastest's."""


def run_plans(rows: dict[str, int], data_root: Path) -> list[dict[str, Any]]:
    """Every alternative of every workload, each in its own process, and the optimizer's choice."""
    import vista_sql
    from vista_sql.catalog import current
    from vista_sql.cost_model.decide import decide
    from vista_sql.datasets.foods import make_foods
    from vista_sql.logical.builder import build
    from vista_sql.logical.driver import alternatives

    results = []
    for cnn, count in rows.items():
        data = data_root / f"{cnn}-{count}"
        if not (data / "foods.parquet").exists():
            make_foods(data, count, overwrite=True)
        sql = workload(cnn, data, PLAN_LAYERS[cnn])
        query = build(vista_sql.parse_one(sql), sql, current())
        chosen = decide(query, current()).chosen.alternative
        runs = []
        for option in alternatives(query, current()):
            code = PLAN.format(sql=sql, alternative=option.name)
            runs.append({"alternative": option.name, **_statement(code, f"{cnn} {option.name}")})
        results.append({"cnn": cnn, "rows": count, "sql": sql, "chosen": chosen, "runs": runs})
    return results


def plans_table(results: list[dict[str, Any]]) -> str:
    """Per workload, every alternative's predicted and measured runtime, and the verdict."""
    from vista_sql.cost_model.estimate import format_bytes

    lines = []
    for workload_result in results:
        ok = [r for r in workload_result["runs"] if "error" not in r]
        if not ok:
            continue
        fastest = min(ok, key=lambda r: r["seconds"])
        chosen = next((r for r in ok if r["alternative"] == workload_result["chosen"]), None)
        lines.append(f"{workload_result['cnn']} ({workload_result['rows']} rows)")
        lines.append(
            f"  {'alternative':<28} {'predicted':>9} {'measured':>9} {'vs best':>8}"
            f" {'pred. peak':>10} {'peak':>10}"
        )
        for r in sorted(ok, key=lambda r: r["seconds"]):
            mark = " <- chosen" if r is chosen else ""
            lines.append(
                f"  {r['alternative']:<28} {r['predicted_seconds']:>8.1f}s {r['seconds']:>8.1f}s"
                f" {r['seconds'] / fastest['seconds']:>7.2f}x"
                f" {format_bytes(r['predicted_peak']):>10} {format_bytes(r['peak']):>10}{mark}"
            )
        if chosen is None:
            lines.append(f"  chosen {workload_result['chosen']}: did not run")
        else:
            slower = chosen["seconds"] / fastest["seconds"] - 1
            verdict = "on target" if slower <= WITHIN else "OFF TARGET"
            lines.append(
                f"  chosen {chosen['alternative']}: {slower:+.0%} against the fastest"
                f" ({fastest['alternative']}), {verdict} (<= {WITHIN:.0%})"
            )
        failed = [r["alternative"] for r in workload_result["runs"] if "error" in r]
        if failed:
            lines.append("  failed: " + ", ".join(failed))
        lines.append("")
    return "\n".join(lines)


def plot_plans(results: list[dict[str, Any]], path: Path) -> None:
    """One panel per workload: measured runtime of every alternative, the chosen one marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.5), squeeze=False)
    for axis, workload_result in zip(axes[0], results, strict=True):
        ok = [r for r in workload_result["runs"] if "error" not in r]
        names = [r["alternative"] for r in ok]
        colors = [
            "tab:orange" if name == workload_result["chosen"] else "tab:blue" for name in names
        ]
        axis.barh(names, [r["seconds"] for r in ok], color=colors, label="measured")
        axis.scatter(
            [r["predicted_seconds"] for r in ok],
            names,
            color="black",
            marker="x",
            zorder=3,
            label="predicted",
        )
        axis.invert_yaxis()
        axis.set_xlabel("seconds")
        axis.set_title(f"{workload_result['cnn']}, {workload_result['rows']} rows (chosen: orange)")
        axis.tick_params(axis="y", labelsize=8)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def plot_runs(results: list[dict[str, Any]], path: Path) -> None:
    """Measured against predicted: runtime and peak memory, the +-25% memory band shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "error" not in r]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
    for axis, key, unit, scale in (
        (left, "seconds", "runtime (s)", 1.0),
        (right, "peak", "peak memory (GiB)", 2.0**30),
    ):
        predicted = [r[f"predicted_{key}"] / scale for r in ok]
        measured = [r[key] / scale for r in ok]
        top = max(predicted + measured) * 1.1
        axis.plot([0, top], [0, top], color="gray", linewidth=1)
        if key == "peak":
            axis.fill_between([0, top], [0, 0.75 * top], [0, 1.25 * top], alpha=0.15)
        for r, x, y in zip(ok, predicted, measured, strict=True):
            axis.scatter(x, y, color="tab:blue")
            axis.annotate(r["label"], (x, y), fontsize=6)
        axis.set_xlabel(f"predicted {unit}")
        axis.set_ylabel(f"measured {unit}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def table(results: list[dict[str, Any]]) -> str:
    """The error table of the runs, then the memory split of each."""
    from vista_sql.cost_model.calibration import Measurement, Prediction, error_table
    from vista_sql.cost_model.estimate import format_bytes

    ok = [r for r in results if "error" not in r]
    text = error_table(
        [Prediction(r["label"], r["predicted_seconds"], r["predicted_peak"]) for r in ok],
        [Measurement(r["label"], r["seconds"], r["peak"]) for r in ok],
    )
    lines = [text, "", f"{'run':<40} {'part':<8} {'predicted':>10} {'measured':>10} {'ratio':>6}"]
    for r in ok:
        for part in ("jvm", "python", "driver"):
            predicted, measured = r[f"predicted_{part}"], r[f"peak_{part}"]
            ratio = f"{measured / predicted:.2f}" if predicted else "?"
            lines.append(
                f"{r['label']:<40} {part:<8} {format_bytes(predicted):>10}"
                f" {format_bytes(measured):>10} {ratio:>6}"
            )
    failed = [r["label"] for r in results if "error" in r]
    if failed:
        lines += ["", "failed: " + ", ".join(failed)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    constants = commands.add_parser("constants", help="measure the machine constants")
    constants.add_argument("--write", action="store_true", help=f"store in {CALIBRATION_FILE}")
    runs = commands.add_parser("runs", help="predicted vs measured time and peak memory")
    runs.add_argument("--rows", type=int, default=200)
    runs.add_argument("--cnns", default="alexnet,resnet50,vgg16")
    runs.add_argument("--batches", default="8,32")
    runs.add_argument("--cores", default="1,2")
    runs.add_argument("--data", default="/tmp/vista_calibration_data")
    runs.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "calibration.json"))
    plans = commands.add_parser("plans", help="every alternative measured; the choice checked")
    plans.add_argument(
        "--rows",
        default=",".join(f"{cnn}={rows}" for cnn, rows in PLAN_ROWS.items()),
        help="CNN=rows pairs: the workloads and their sizes",
    )
    plans.add_argument("--data", default="/tmp/vista_calibration_plans")
    plans.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "calibration_plans.json")
    )
    args = parser.parse_args()
    if args.command == "constants":
        result = measure()
        text = json.dumps(result, indent=1, sort_keys=True)
        print(text)
        if args.write:
            CALIBRATION_FILE.write_text(text + "\n")
    elif args.command == "plans":
        sizes = dict(pair.split("=") for pair in args.rows.split(","))
        plan_results = run_plans({cnn: int(n) for cnn, n in sizes.items()}, Path(args.data))
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(plan_results, indent=1, sort_keys=True) + "\n")
        plot_plans(plan_results, out.with_suffix(".png"))
        print(plans_table(plan_results))
    else:
        results = run_statements(
            args.rows,
            args.cnns.split(","),
            [int(b) for b in args.batches.split(",")],
            [int(c) for c in args.cores.split(",")],
            Path(args.data),
        )
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        plot_runs(results, out.with_suffix(".png"))
        print(table(results))


if __name__ == "__main__":
    main()
