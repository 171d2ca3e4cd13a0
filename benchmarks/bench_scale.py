"""Paper scale on one machine: the VISTA paper's Foods and Amazon sizes, features beyond memory.

    python benchmarks/bench_scale.py resnet50 [--rows 20000] [--naive-timeout 1800]
    python benchmarks/bench_scale.py alexnet [--rows 200000] [--no-naive]
    python benchmarks/bench_scale.py --report      # the table and plot of what is recorded

Two workloads of the paper (section 4), on Foods-like data (``vista_sql.datasets.make_foods``: 129
numeric features, a ``healthy`` label, one 227x227 JPEG per row; made once under ``--data``):

``resnet50``
    ResNet50's top 5 transfer layers on 20,000 rows (Foods' size), logistic regression per layer.
    vista_sql's plan beside Naive in Spark with the guides' configuration (``methods.py``:
    ``local[*]``, the JVM given the machine less 1 GiB less 7 %, every layer inferred from the
    image). Naive runs under ``--naive-timeout``: when it is stopped, the table says so and gives
    the ratio as a lower bound (it was at least that much slower).
``alexnet``
    AlexNet conv5..fc8 on 200,000 rows (Amazon's size, about 3 GB of JPEGs), vista_sql alone by
    default: the features of the four layers (40 KB a row, 8 GB in all as float32) no longer fit
    the storage memory of a 2-core machine's plan, so the optimizer plans what spills.

Each run is ``bench_headline.py``'s (its own subprocess in a memory cgroup of the machine's size,
so the kernel's OOM kills are counted; the process tree's resident memory sampled every 0.25 s;
``methods.StorageSampler`` records the largest cached bytes in memory and on disk). vista_sql's
feature store starts empty. Reported against EXPLAIN ANALYZE's estimates: the statement's time
(``result.seconds``, from the first read to the last metrics), its per-stage times, the peak
resident memory, and the cached bytes the memory model expects to spill (``spill_fraction`` of its
cache peak) against what Spark held on disk. Target: time and peak within +-25 %.

Results accumulate per workload in ``benchmarks/results/scale.json``; each run rewrites
``scale.png`` and prints the tables. Run alone on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from bench_headline import TOP_LAYERS, ensure_dataset, launch  # noqa: E402
from methods import TITLES, Task  # noqa: E402

from vista_sql.catalog import current  # noqa: E402
from vista_sql.physical.cgroup import unavailable_reason  # noqa: E402
from vista_sql.udfs.layer_stats import machine  # noqa: E402
from vista_sql.units import GiB  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
DEFAULT_ROWS = {"resnet50": 20_000, "alexnet": 200_000}
NAIVE_BY_DEFAULT = {"resnet50": True, "alexnet": False}
TOLERANCE = 0.25
STAGES = ("inference", "training", "evaluation")


def cpu_flags() -> list[str]:
    """The CPU features that change TensorFlow's speed (vector widths, bfloat16, AMX)."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            present = set(line.split(":", 1)[1].split())
            return [f for f in wanted if f in present]
    return []


def run_workload(cnn: str, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    info = current().cnn(cnn)
    assert info is not None, cnn
    data = ensure_dataset(Path(args.data), rows)
    scratch = Path(tempfile.mkdtemp(prefix="scale-", dir=args.scratch))
    use_cgroup = unavailable_reason() is None
    methods = ["vista"] + (["naive_spark"] if args.naive else [])
    records: dict[str, Any] = {}
    for method in methods:
        task = Task(
            method=method,
            cnn=cnn,
            layers=tuple(info.layer_names[-TOP_LAYERS[cnn] :]),
            data=str(data),
            rows=rows,
            budget_bytes=None,
            machine_bytes=machine()["memory_bytes"],
            cores=len(os.sched_getaffinity(0)),
            naive_memory="guide",
            workdir=str(scratch / method),
            result=str(scratch / f"{method}.json"),
        )
        timeout = args.naive_timeout if method == "naive_spark" else args.timeout
        print(f"{cnn} x{rows}: {TITLES[method]} (at most {timeout:.0f} s)", flush=True)
        record = launch(task, timeout, use_cgroup)
        record["timeout_seconds"] = timeout
        records[method] = record
        print(f"  {record['status']} in {record['seconds']:.1f} s", flush=True)
    return {
        "cnn": cnn,
        "rows": rows,
        "layers": list(info.layer_names[-TOP_LAYERS[cnn] :]),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {**machine(), "cpu_flags": cpu_flags()},
        "versions": {p: version(p) for p in ("tensorflow-cpu", "keras", "pyspark")},
        "records": records,
        "summary": summarize(records),
    }


def _stage_totals(analyze: dict[str, Any]) -> dict[str, dict[str, float]]:
    totals = {stage: {"estimated": 0.0, "measured": 0.0} for stage in STAGES}
    for row in analyze["stages"]:
        if row["stage"] in totals:
            totals[row["stage"]]["estimated"] += row["estimated_seconds"]["value"] or 0.0
            totals[row["stage"]]["measured"] += row["measured_seconds"] or 0.0
    return totals


def summarize(records: dict[str, Any]) -> dict[str, Any]:
    vista = records["vista"]
    summary: dict[str, Any] = {"vista_status": vista["status"]}
    if vista["status"] == "finished":
        predicted = vista["predicted"]
        analyze = vista["analyze"]
        measured_peak = vista["peak"]["total"]
        spill = predicted["spill_fraction"] or 0.0
        summary.update(
            plan=f"{predicted['alternative']} ({predicted['choice']})",
            seconds={"estimated": predicted["seconds"], "measured": vista["run_seconds"]},
            wall_seconds=vista["seconds"],
            peak_bytes={"estimated": predicted["peak_bytes"], "measured": measured_peak},
            cgroup_peak_bytes=vista.get("cgroup_peak_bytes"),
            stages=_stage_totals(analyze),
            cache={
                "estimated_peak_bytes": predicted["cache_peak_bytes"],
                "storage_capacity_bytes": predicted["storage_capacity_bytes"],
                "estimated_spill_fraction": spill,
                "estimated_spilled_bytes": spill * (predicted["cache_peak_bytes"] or 0.0),
                "measured_peak_memory_bytes": vista["storage"]["peak_cached_memory_bytes"],
                "measured_peak_disk_bytes": vista["storage"]["peak_cached_disk_bytes"],
            },
            layers={k: v["accuracy"] for k, v in vista["layers"].items()},
        )
        summary["time_ratio"] = summary["seconds"]["measured"] / summary["seconds"]["estimated"]
        summary["peak_ratio"] = measured_peak / predicted["peak_bytes"]
        summary["within"] = all(
            abs(summary[k] - 1) <= TOLERANCE for k in ("time_ratio", "peak_ratio")
        )
    naive = records.get("naive_spark")
    if naive is not None:
        summary["naive"] = {
            "status": naive["status"],
            "seconds": naive["seconds"],
            "peak_bytes": (naive.get("peak") or {}).get("total"),
            "oom_kills": naive.get("oom_kills"),
        }
        if vista["status"] == "finished":
            # Wall against wall (process start to exit): a stopped Naive ran at least this long.
            ratio = naive["seconds"] / vista["seconds"]
            summary["naive"]["over_vista"] = ratio
            summary["naive"]["over_vista_is_lower_bound"] = naive["status"] != "finished"
            if naive["status"] == "finished":
                summary["naive"]["same_accuracy"] = all(
                    abs(naive["layers"][k]["accuracy"] - v["accuracy"]) < 1e-9
                    for k, v in vista["layers"].items()
                )
    return summary


def forcing_options(predicted: dict[str, Any]) -> list[str]:
    """WITH options that make the optimizer estimate the plan that ran, as it was configured."""
    inference, placement, keep = predicted["alternative"].split("/")
    choice = dict(part.split("=", 1) for part in predicted["choice"].split())
    options = [
        f"inference = {inference}",
        f"placement = {placement}",
        f"executor_cores = {choice['cores']}",
        f"partitions = {choice['partitions']}",
        f"batch_size = {choice['batch']}",
    ]
    if keep == "persist" and choice.get("persist") not in (None, "None"):
        options.append(f"persist = {choice['persist']}")
    return options


def reestimate(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The plan that ran, estimated again under the calibration and cost model in use now
    (``vista-sql calibrate``'s file, when this machine has one), with EXPLAIN ANALYZE's per-layer
    stage rows rebuilt beside the run's measured times. None when vista_sql did not finish."""
    import vista_sql
    from vista_sql.catalog import current
    from vista_sql.cost_model.constants import calibration_status
    from vista_sql.cost_model.decide import decide
    from vista_sql.logical.builder import build
    from vista_sql.logical.query import TransferQuery
    from vista_sql.physical.analyze import stage_rows
    from vista_sql.physical.executor import LayerRun, RunOutcome
    from vista_sql.physical.gpu import machine_resources
    from vista_sql.physical.train import Trained

    vista = entry["records"]["vista"]
    if vista["status"] != "finished":
        return None
    options = ", ".join(forcing_options(vista["predicted"]))
    sql = f"{vista['statement']}\n  WITH ({options})"
    catalog = current()
    query = build(vista_sql.parse_one(sql), sql, catalog)
    assert isinstance(query, TransferQuery)
    decision = decide(query, catalog, resources=machine_resources(query.options))
    measured: dict[str, dict[str, float]] = {}
    for row in vista["analyze"]["stages"]:
        measured.setdefault(row["layer"], {})[row["stage"]] = row["measured_seconds"]
    order = list(measured)
    outcome = RunOutcome(
        [
            LayerRun(
                layer,
                0,
                Trained(None, {}, m["training"], m["evaluation"], 0, 0, {}),  # type: ignore[arg-type]
                m["inference"],
                0,
            )
            for layer, m in measured.items()
        ]
    )
    rows = stage_rows(decision, decision.chosen.plan, outcome, order)
    stages = {stage: 0.0 for stage in STAGES}
    for row in rows:
        stages[row.stage] += row.estimate.value or 0.0
    return {
        "calibration": calibration_status().to_json(),
        "alternative": decision.chosen.alternative,
        "choice": decision.chosen.choice.describe(),
        "seconds": decision.chosen.time.value,
        "peak_bytes": decision.chosen.peak.value,
        "stages": stages,
        "layer_stages": [
            {
                "layer": row.layer,
                "stage": row.stage,
                "estimated": row.estimate.value,
                "measured": row.measured,
            }
            for row in rows
        ],
    }


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value / GiB:.1f} GiB"


def text_tables(document: dict[str, Any]) -> str:
    lines = [
        f"{'workload':<22} {'plan':<26} {'time est':>9} {'measured':>9} {'ratio':>6}"
        f" {'peak est':>9} {'measured':>9} {'ratio':>6}  Naive in Spark",
    ]
    for entry in document["workloads"].values():
        s = entry["summary"]
        label = f"{entry['cnn']} x{entry['rows']:,}"
        if s["vista_status"] != "finished":
            lines.append(f"{label:<22} vista_sql {s['vista_status']}")
            continue
        naive = s.get("naive")
        if naive is None:
            naive_text = "not run"
        elif naive["status"] == "finished":
            naive_text = f"{naive['seconds']:.0f} s ({naive['over_vista']:.2f}x)"
        elif naive["status"] == "timeout":
            naive_text = f"stopped at {naive['seconds']:.0f} s (>= {naive['over_vista']:.2f}x)"
        else:
            naive_text = f"{naive['status']} after {naive['seconds']:.0f} s"
        lines.append(
            f"{label:<22} {s['plan'].split(' ')[0]:<26}"
            f" {s['seconds']['estimated']:>7.0f} s {s['seconds']['measured']:>7.0f} s"
            f" {s['time_ratio']:>6.2f} {_gib(s['peak_bytes']['estimated']):>9}"
            f" {_gib(s['peak_bytes']['measured']):>9} {s['peak_ratio']:>6.2f}  {naive_text}"
        )
    for entry in document["workloads"].values():
        s = entry["summary"]
        if s["vista_status"] != "finished":
            continue
        lines += ["", f"{entry['cnn']} x{entry['rows']:,}: {s['plan']}"]
        lines.append(f"  {'stage':<12} {'estimated':>10} {'measured':>10} {'meas/est':>9}")
        for stage, t in s["stages"].items():
            ratio = t["measured"] / t["estimated"] if t["estimated"] else float("nan")
            lines.append(
                f"  {stage:<12} {t['estimated']:>8.1f} s {t['measured']:>8.1f} s {ratio:>9.2f}"
            )
        again = entry.get("reestimate")
        if again is not None:
            cal = again["calibration"]
            mark = "this machine" if cal["this_machine"] else "another machine"
            lines.append(
                f"  re-estimated under the {cal['source']} calibration ({mark},"
                f" {cal['measured_at']}): {again['seconds']:.0f} s against"
                f" {s['seconds']['measured']:.0f} s measured"
                f" ({s['seconds']['measured'] / again['seconds']:.2f});"
                f" peak {_gib(again['peak_bytes'])}"
            )
            for row in again.get("layer_stages", []):
                seconds, measured = row["estimated"] or 0.0, row["measured"]
                lines.append(
                    f"    {row['layer']:<6} {row['stage']:<11} {seconds:>8.1f} s"
                    f" {measured:>8.1f} s"
                    f" {measured / seconds if seconds else float('nan'):>9.2f}"
                )
            for stage, seconds in again["stages"].items():
                measured = s["stages"][stage]["measured"]
                lines.append(
                    f"    {'all':<6} {stage:<11} {seconds:>8.1f} s {measured:>8.1f} s"
                    f" {measured / seconds if seconds else float('nan'):>9.2f}"
                )
        c = s["cache"]
        lines.append(
            f"  cache: estimated peak {_gib(c['estimated_peak_bytes'])} against storage memory"
            f" {_gib(c['storage_capacity_bytes'])}, {c['estimated_spill_fraction']:.0%} to"
            f" spill ({_gib(c['estimated_spilled_bytes'])}); measured at most"
            f" {_gib(c['measured_peak_memory_bytes'])} in memory and"
            f" {_gib(c['measured_peak_disk_bytes'])} on disk"
        )
    return "\n".join(lines)


def plot(document: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [
        e for e in document["workloads"].values() if e["summary"]["vista_status"] == "finished"
    ]
    if not entries:
        return
    figure, (times, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [f"{e['cnn']}\n{e['rows']:,} rows" for e in entries]
    x = range(len(entries))
    width = 0.27
    estimated = [e["summary"]["seconds"]["estimated"] / 60 for e in entries]
    measured = [e["summary"]["seconds"]["measured"] / 60 for e in entries]
    naive = [
        (e["summary"].get("naive") or {}).get("seconds", 0.0) / 60
        if (e["summary"].get("naive") or {}).get("status") in ("finished", "timeout")
        else 0.0
        for e in entries
    ]
    again = [((e.get("reestimate") or {}).get("seconds") or 0.0) / 60 for e in entries]
    width = 0.2
    times.bar([i - 1.5 * width for i in x], estimated, width, label="estimate", color="#c6dbef")
    times.bar(
        [i - 0.5 * width for i in x],
        again,
        width,
        label="estimate, this machine's calibration",
        color="#6baed6",
    )
    times.bar([i + 0.5 * width for i in x], measured, width, label="measured", color="#08519c")
    bars = times.bar(
        [i + 1.5 * width for i in x], naive, width, label="Naive in Spark", color="#e6550d"
    )
    for bar, entry in zip(bars, entries, strict=True):
        status = (entry["summary"].get("naive") or {}).get("status")
        if status == "timeout":
            times.annotate("stopped", (bar.get_x() + width / 2, bar.get_height()), ha="center")
    times.set_xticks(list(x), labels)
    times.set_ylabel("minutes")
    times.set_title("statement time")
    times.legend(fontsize=8, loc="upper left")
    est_peak = [e["summary"]["peak_bytes"]["estimated"] / GiB for e in entries]
    meas_peak = [e["summary"]["peak_bytes"]["measured"] / GiB for e in entries]
    disk = [e["summary"]["cache"]["measured_peak_disk_bytes"] / GiB for e in entries]
    memory.bar([i - width for i in x], est_peak, width, label="peak estimate", color="#a1d99b")
    memory.bar(list(x), meas_peak, width, label="peak measured", color="#31a354")
    memory.bar([i + width for i in x], disk, width, label="cached on disk", color="#756bb1")
    memory.set_xticks(list(x), labels)
    memory.set_ylabel("GiB")
    memory.set_title("memory (one 24 GiB node)")
    memory.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cnn", nargs="?", choices=sorted(DEFAULT_ROWS))
    parser.add_argument("--rows", type=int)
    parser.add_argument("--naive", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--naive-timeout", type=float, default=1800.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds for vista_sql")
    parser.add_argument("--data", default="/tmp/vista_headline_data")
    parser.add_argument("--scratch", default=None, help="directory for per-run files")
    parser.add_argument("--results", default=str(RESULTS / "scale"), help="path stem")
    parser.add_argument("--report", action="store_true", help="print and plot what is recorded")
    parser.add_argument(
        "--reestimate",
        action="store_true",
        help="estimate each recorded plan again under the calibration in use now",
    )
    args = parser.parse_args()
    stem = Path(args.results)
    path = stem.with_suffix(".json")
    document = json.loads(path.read_text()) if path.exists() else {"workloads": {}}
    if not args.report:
        if args.cnn is None:
            parser.error("name a workload (resnet50 or alexnet), or --report")
        if args.naive is None:
            args.naive = NAIVE_BY_DEFAULT[args.cnn]
        rows = args.rows or DEFAULT_ROWS[args.cnn]
        entry = run_workload(args.cnn, rows, args)
        entry["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        document["workloads"][args.cnn] = entry
        stem.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    if args.reestimate:
        for entry in document["workloads"].values():
            entry["reestimate"] = reestimate(entry)
        path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    print(text_tables(document))
    plot(document, stem.with_suffix(".png"))
    print(f"\nwrote {path} and {stem.with_suffix('.png')}")
    statuses = [e["summary"]["vista_status"] for e in document["workloads"].values()]
    return 0 if all(s == "finished" for s in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
