"""Optimizer fidelity: every plan of a grid of workloads measured beside the cost model's estimates.

    python benchmarks/bench_fidelity.py run [--cnns alexnet,vgg16,resnet50] [--sizes small,large]
        [--budgets none,3] [--calibration FILE] [--data DIR] [--timeout 900]
    python benchmarks/bench_fidelity.py reestimate [--calibration FILE] [--data DIR]
    python benchmarks/bench_fidelity.py report

The grid: each CNN's paper layers (AlexNet conv5..fc8, VGG16 fc6..fc8, ResNet50's top 5; logistic
regression, the feature store off) on a Foods-like dataset of two sizes (``SIZES``), each under two
memory budgets: the whole machine, and a cgroup v1 limit (3 GiB by default) tight enough that
plans made without it in mind are killed. On each workload (CNN x size x budget):

- **every alternative** the optimizer compares (lazy / eager / staged x join before / after x
  recompute / persist), each forced (``run_query(alternative=...)``) with the physical choices the
  optimizer makes for it under the budget (vista_sql reads the cgroup's limit);
- **the authors' procedure** (``authors_2018.decide``: staged, after the join, their cores,
  partitions, join, storage level, heap and memory fraction) run through vista_sql;
- **Naive in Spark** (``methods.method_naive_spark``: lazy inference before the join, Spark's
  defaults and the guides' heap on a session of its own);
- **the optimizer's choice**, run as chosen: its alternative with the physical choices the
  optimizer makes when it compares them all (a forced alternative gets the best choices for that
  alternative alone, which may differ once the cost model changes; a grid from before this ran
  the chosen plan planned only, judged by its alternative's forced run).

Each plan runs in a fresh process inside a memory cgroup (the machine's memory as its limit when
there is no budget, so that the kernel counts the peak and any OOM kill alike), which first
estimates the plan twice: with the constants shipped with vista_sql and with this machine's
calibration (``vista-sql calibrate``: ``--calibration``, default the user's file), then runs it
under this machine's. A run is ``finished``, ``refused`` (no setting of the plan fits the budget:
the optimizer says so before running), ``oom_killed``, ``failed`` (e.g. a Java OutOfMemoryError) or
``timeout``.

Results go to ``benchmarks/results/fidelity.jsonl``, one line per plan, as each finishes: a
second ``run`` resumes where the first stopped (the grid takes hours on 2 cores). After the cost
model or the calibration changed, ``reestimate`` estimates every measured plan again (each with
the physical choices it ran with, under its workload's budget, planning only) into
``fidelity_estimates.jsonl``, which the report then uses. ``report``
prints the goals' table, writes ``benchmarks/results/fidelity.json`` and ``fidelity.png``, and
the table that ``benchmarks/FIDELITY.md`` shows:

- the chosen plan measured fastest, or within 10 % of the fastest, on >= 90 % of the workloads;
- the total-time estimate within +-25 % of the measurement for >= 90 % of all measured plans;
- the peak memory estimate within +-25 % for all of them;
- the chosen plan never crashes;
- how often the authors' procedure and Naive crash or lose, and by how much.

Run it alone on an idle machine: every figure is a wall time on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_headline import TOP_LAYERS, ensure_dataset, run_measured  # noqa: E402
from bench_scale import cpu_flags  # noqa: E402

from vista_sql.physical.cgroup import MemoryCgroup, unavailable_reason  # noqa: E402
from vista_sql.units import GiB  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
RECORDS = RESULTS / "fidelity.jsonl"
SIZES = {"alexnet": (500, 1500), "vgg16": (80, 200), "resnet50": (150, 400)}
"""Rows per CNN, small and large: the one-pass plans run about 20-40 s at the small size here."""
TIGHT_GIB = 3.0
WITHIN_FASTEST = 0.10
WITHIN_ESTIMATE = 0.25
CONSTANTS = ("shipped", "calibrated")


@dataclass(frozen=True)
class Workload:
    cnn: str
    rows: int
    budget_gib: float | None

    @property
    def name(self) -> str:
        budget = f"{self.budget_gib:g} GiB" if self.budget_gib else "machine"
        return f"{self.cnn} {self.rows} rows, {budget}"

    def key(self, plan: str) -> str:
        return f"{self.cnn}/{self.rows}/{self.budget_gib or 'none'}/{plan}"


# ------------------------------------------------------------------------------------------------
# One plan, in its own process: estimate it under both sets of constants, then run it.
# ------------------------------------------------------------------------------------------------


def statement(cnn: str, data: Path, options: list[str]) -> str:
    from methods import MAX_ITER, SEED

    from vista_sql.catalog import current

    info = current().cnn(cnn)
    assert info is not None, cnn
    layers = ", ".join(info.layer_names[-TOP_LAYERS[cnn] :])
    settings = ", ".join([o for o in options if not o.startswith("cache")] + ["cache = false"])
    return (
        f"TRANSFER FEATURES OF '{data / 'images'}' AS i FROM CNN {cnn}"
        f" WEIGHTS RANDOM SEED {SEED} LAYERS ({layers})"
        f" JOIN '{data / 'foods.parquet'}' AS f ON i.id = f.id"
        f" TRAIN LOGREG (max_iter = {MAX_ITER}) LABEL healthy VALIDATE 0.2 SEED 2019"
        f" WITH ({settings})"
    )


def shipped_constants() -> Any:
    """The constants with only the calibration shipped with vista_sql applied."""
    from dataclasses import replace
    from importlib import resources

    from vista_sql.cost_model.constants import CostConstants

    text = resources.files("vista_sql.cost_model").joinpath("calibration.json").read_text()
    values = {k: float(v) for k, v in json.loads(text)["values"].items()}
    return replace(CostConstants(), **values)


def authors_decision(spec: dict[str, Any]) -> Any:
    """The authors' 2018 decision for this machine (or the budget) and workload."""
    from authors_2018 import decide as decide_2018

    from vista_sql.catalog import current
    from vista_sql.udfs.layer_stats import machine

    memory = spec["budget_bytes"] or machine()["memory_bytes"]
    cnn = current().cnn(spec["cnn"])
    assert cnn is not None
    return decide_2018(
        memory / GiB,
        os.cpu_count() or 1,
        1,
        spec["cnn"],
        TOP_LAYERS[spec["cnn"]],
        spec["rows"],
        d_s=130,
    )


def plan_once(spec: dict[str, Any]) -> dict[str, Any]:
    """The subprocess's body (``one SPEC``): estimates, then the run, as one JSON object."""
    import vista_sql
    from vista_sql.catalog import current
    from vista_sql.cost_model.constants import constants
    from vista_sql.cost_model.decide import decide
    from vista_sql.errors import ResourceError
    from vista_sql.logical.builder import build

    catalog = current()
    data = Path(spec["data"])
    plan = spec["plan"]
    options: list[str] = list(spec.get("forced", []))
    conf: dict[str, str] = {}
    alternative: str | None = None
    out: dict[str, Any] = {}
    if plan == "authors":
        try:
            decision = authors_decision(spec)
        except ValueError as error:  # their procedure finds no core count that fits
            return {"status": "refused", "reason": f"authors' procedure: {error}"}
        options = decision.with_options()  # all its physical choices: nothing more to force
        conf = decision.spark_conf(local=True)
        out["authors"] = {"options": options, "spark_conf": conf}
    elif plan == "naive":
        from methods import naive_options

        options = naive_options(_naive_task(spec))
    elif plan != "chosen":
        alternative = plan
    sql = statement(spec["cnn"], data, options)
    query = build(vista_sql.parse_one(sql), sql, catalog)
    estimates: dict[str, Any] = {}
    for name, consts in (("shipped", shipped_constants()), ("calibrated", constants())):
        try:
            chosen = decide(query, catalog, alternative=alternative, consts=consts).chosen
        except ResourceError as error:
            estimates[name] = {"refused": str(error).splitlines()[0]}
            continue
        estimates[name] = {
            "alternative": chosen.alternative,
            "choice": chosen.choice.describe(),
            "seconds": chosen.time.value,
            "peak_bytes": chosen.peak.value,
            "stages": {step: e.value for step, e in chosen.runtime.by_step()},
        }
    out |= {"statement": sql, "estimates": estimates}
    if spec.get("estimate_only"):
        return {**out, "status": "ok"}
    if "refused" in estimates["calibrated"]:
        return {**out, "status": "refused", "reason": estimates["calibrated"]["refused"]}
    started = time.perf_counter()
    if plan == "naive":
        result = _run_naive(spec, sql)
    elif plan == "authors":
        result = vista_sql.execute(sql, conf=conf, progress=False)
    else:
        from vista_sql.physical.run import run_query

        result = run_query(query, catalog, progress=False, alternative=alternative)
    seconds = time.perf_counter() - started
    peak = result.peak_memory
    return {
        **out,
        "status": "ok",
        "seconds": result.seconds,
        "wall_seconds": seconds,
        "peak_bytes": peak.total if peak is not None else None,
        "stages": _measured_stages(result),
        "accuracy": {str(r["layer"]): r["accuracy"] for r in result.rows()},
    }


def _naive_task(spec: dict[str, Any]) -> Any:
    from methods import Task

    from vista_sql.udfs.layer_stats import machine

    return Task(
        method="naive_spark",
        cnn=spec["cnn"],
        layers=(),
        data=spec["data"],
        rows=spec["rows"],
        budget_bytes=spec["budget_bytes"],
        machine_bytes=machine()["memory_bytes"],
        cores=os.cpu_count() or 1,
        naive_memory="guide",
        workdir="",
        result="",
    )


def _run_naive(spec: dict[str, Any], sql: str) -> Any:
    from methods import naive_conf, start_session

    import vista_sql

    spark = start_session(naive_conf(_naive_task(spec)), "naive-spark")
    try:
        return vista_sql.execute(sql, spark=spark, progress=False)
    finally:
        spark.stop()


def _measured_stages(result: Any) -> dict[str, float]:
    """Measured seconds per stage of the run, summed over its layers (EXPLAIN ANALYZE's)."""
    analyzed = json.loads(result.explain_json()).get("analyze") or {}
    stages: dict[str, float] = {}
    for row in analyzed.get("stages") or []:
        if isinstance(row.get("measured_seconds"), (int, float)):
            stages[row["stage"]] = stages.get(row["stage"], 0.0) + row["measured_seconds"]
    return stages


# ------------------------------------------------------------------------------------------------
# The orchestrator: the grid, one cgroup per plan, results appended as they come.
# ------------------------------------------------------------------------------------------------


def alternatives_of(workload: Workload, data: Path) -> list[str]:
    import vista_sql
    from vista_sql.catalog import current
    from vista_sql.logical.builder import build
    from vista_sql.logical.driver import alternatives

    sql = statement(workload.cnn, data, [])
    query = build(vista_sql.parse_one(sql), sql, current())
    return [a.name for a in alternatives(query, current())]


def launch(
    workload: Workload, plan: str, data: Path, calibration: Path | None, timeout: float
) -> dict[str, Any]:
    """Run one plan's process in a cgroup of the workload's budget; its record."""
    from vista_sql.udfs.layer_stats import machine

    machine_bytes = machine()["memory_bytes"]
    budget = int(workload.budget_gib * GiB) if workload.budget_gib else None
    spec = {
        "cnn": workload.cnn,
        "rows": workload.rows,
        "budget_bytes": budget,
        "data": str(data),
        "plan": plan,
    }
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    if calibration is not None:
        env["VISTA_SQL_CALIBRATION"] = str(calibration)
    record: dict[str, Any] = {
        "key": workload.key(plan),
        "cnn": workload.cnn,
        "rows": workload.rows,
        "budget_gib": workload.budget_gib,
        "plan": plan,
        "load_before": os.getloadavg()[0],
    }
    argv = [sys.executable, __file__, "one", json.dumps(spec)]
    limit = (budget or machine_bytes) if unavailable_reason() is None else None
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        run = run_measured(argv, env, limit, timeout, out, err)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    record["process_seconds"] = run.seconds
    record |= run.record()
    record["tree_peak_bytes"] = run.peak.total if run.peak is not None else None
    lines = stdout.strip().splitlines()
    outcome: dict[str, Any] = {}
    if run.returncode == 0 and lines:
        try:
            outcome = json.loads(lines[-1])
        except json.JSONDecodeError:
            outcome = {}
    record.update(outcome)
    if run.timed_out:
        record["status"] = "timeout"
    elif outcome.get("status") in ("ok", "refused"):
        record["status"] = "finished" if outcome["status"] == "ok" else "refused"
    elif record.get("oom_kills", 0) > 0:
        record["status"] = "oom_killed"
    else:
        record["status"] = "failed"
    if record["status"] not in ("finished", "refused"):
        record["log_tail"] = stderr[-3000:]
    return record


def grid(args: argparse.Namespace) -> list[Workload]:
    """Small sizes first, then large; within a size the machine's budget, then the tight one:
    an interrupted run has the most balanced part of the grid."""
    budgets = [None if b == "none" else float(b) for b in args.budgets.split(",")]
    sizes = [("small", "large").index(s) for s in args.sizes.split(",")]
    return [
        Workload(cnn, SIZES[cnn][size], budget)
        for size in sizes
        for budget in budgets
        for cnn in args.cnns.split(",")
    ]


def read_records() -> list[dict[str, Any]]:
    if not RECORDS.exists():
        return []
    return [json.loads(line) for line in RECORDS.read_text().splitlines() if line.strip()]


def run(args: argparse.Namespace) -> None:
    from vista_sql.cost_model.constants import calibration_path

    calibration = Path(args.calibration) if args.calibration else calibration_path()
    if not calibration.is_file():
        sys.exit(f"no calibration of this machine at {calibration}: run `vista-sql calibrate`")
    reason = unavailable_reason()
    if reason is not None:
        print(f"memory budgets need cgroups, which are unavailable: {reason}", file=sys.stderr)
    # stopped (SIGTERM): unwind, so that the running plan's cgroup is removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    done = {r["key"] for r in read_records()}
    data_root = Path(args.data)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for workload in grid(args):
        if workload.budget_gib and reason is not None:
            continue
        data = ensure_dataset(data_root, workload.rows)
        # The chosen plan after the alternatives: a workload's first run read 20-40 % slower than
        # a later run of the same plan (vgg16 80 rows: 47.5 s, then 40.5 s)
        plans = [*alternatives_of(workload, data), "chosen", "authors", "naive"]
        for plan in plans:
            key = workload.key(plan)
            if key in done:
                continue
            record = launch(workload, plan, data, calibration, args.timeout)
            record["machine"] = {"cpu_flags": cpu_flags(), "cores": os.cpu_count()}
            record["calibration"] = str(calibration)
            with RECORDS.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            seconds = record.get("seconds")
            estimate = (record.get("estimates") or {}).get("calibrated", {}).get("seconds")
            shown = f"{seconds:.1f} s" if seconds else record["status"]
            guess = f" (est. {estimate:.1f} s)" if estimate else ""
            print(f"{workload.name}: {plan}: {shown}{guess}", flush=True)


ESTIMATES = RESULTS / "fidelity_estimates.jsonl"
"""Estimates of the measured plans made again (``reestimate``) after the cost model or the
calibration changed: the report uses the latest for each plan."""


def ran_alternative(record: dict[str, Any]) -> str | None:
    """The logical alternative a measured vista_sql plan ran: its own, or the chosen plan's (its
    calibrated estimate's when it ran); None for the baselines and a chosen plan not run."""
    if record["plan"] in ("authors", "naive"):
        return None
    if record["plan"] == "chosen":
        if "seconds" not in record:
            return None
        alternative = (record.get("estimates") or {}).get("calibrated", {}).get("alternative")
        return str(alternative) if alternative else None
    return str(record["plan"])


def physical_plan(record: dict[str, Any]) -> tuple[Any, ...]:
    """A measured vista_sql plan as it ran: its alternative and physical choices (those of its
    calibrated estimate when it ran)."""
    first = record.get("first_estimates") or record.get("estimates") or {}
    return (ran_alternative(record), first.get("calibrated", {}).get("choice"))


def forced_options(record: dict[str, Any]) -> list[str]:
    """WITH options that force the physical choices a measured plan ran with (its calibrated
    estimate's ``choice``), so that a later cost model estimates that very plan. Thread counts
    and the memory fraction follow from the rest; the authors' and Naive's options force theirs
    already."""
    alternative = ran_alternative(record)
    choice = (record.get("estimates") or {}).get("calibrated", {}).get("choice")
    if alternative is None or not choice:
        return []
    fields = dict(part.split("=", 1) for part in choice.split())
    options = [
        f"join = {fields['join']}",
        f"executor_cores = {fields['cores']}",
        f"batch_size = {fields['batch']}",
        f"partitions = {fields['partitions']}",
    ]
    if alternative.endswith("/persist"):
        options.append(f"persist = {fields['persist']}")
    return options


def reestimate(args: argparse.Namespace) -> None:
    """Estimate every measured plan again, each in a process under its workload's budget (as
    when it ran), with the current cost model, the shipped constants and ``--calibration``."""
    from vista_sql.cost_model.constants import calibration_path
    from vista_sql.udfs.layer_stats import machine

    calibration = Path(args.calibration) if args.calibration else calibration_path()
    machine_bytes = machine()["memory_bytes"]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "VISTA_SQL_CALIBRATION": str(calibration),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    with ESTIMATES.open("w") as out:
        for record in read_records():
            if record["status"] != "finished" and record["plan"] != "chosen":
                continue
            budget = int(record["budget_gib"] * GiB) if record["budget_gib"] else None
            data = Path(args.data) / f"foods_{record['rows']}"
            spec = {
                "cnn": record["cnn"],
                "rows": record["rows"],
                "budget_bytes": budget,
                "data": str(data),
                # a chosen plan that ran is estimated as what it ran
                "plan": ran_alternative(record) or record["plan"],
                "forced": forced_options(record),
                "estimate_only": True,
            }
            argv = [sys.executable, __file__, "one", json.dumps(spec)]
            with MemoryCgroup.create(budget or machine_bytes) as group:
                done = group.run(argv, capture_output=True, text=True, env=env, cwd=REPO)
            if done.returncode != 0:
                print(f"{record['key']}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            estimated = json.loads(done.stdout.strip().splitlines()[-1])
            line = {"key": record["key"], "calibration": str(calibration), **estimated}
            out.write(json.dumps(line) + "\n")
            out.flush()
            print(f"{record['key']}: re-estimated", flush=True)


def latest_estimates(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with their estimates replaced by ``reestimate``'s, where it made them."""
    if not ESTIMATES.exists():
        return records
    newer = {}
    for line in ESTIMATES.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            newer[entry["key"]] = entry["estimates"]
    return [
        {**r, "estimates": newer[r["key"]], "first_estimates": r.get("estimates")}
        if r["key"] in newer
        else r
        for r in records
    ]


# ------------------------------------------------------------------------------------------------
# The report: the goals, a table, a plot.
# ------------------------------------------------------------------------------------------------


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per workload the verdicts, and the goals over the grid."""
    workloads: dict[tuple[str, int, Any], dict[str, dict[str, Any]]] = {}
    for r in records:
        workloads.setdefault((r["cnn"], r["rows"], r["budget_gib"]), {})[r["plan"]] = r
    rows = []
    ratios: dict[str, list[float]] = {c: [] for c in CONSTANTS}
    peaks: dict[str, list[float]] = {c: [] for c in CONSTANTS}
    # The baselines run on sessions the cost model does not see (Naive's own, with the guides'
    # heap; the authors' heap and memory fraction): their estimates are of the plan under
    # vista_sql's settings, so they are reported apart from the alternatives'.
    baseline_ratios: dict[str, list[float]] = {c: [] for c in CONSTANTS}
    baseline_peaks: dict[str, list[float]] = {c: [] for c in CONSTANTS}
    for (cnn, count, budget), plans in sorted(workloads.items(), key=lambda kv: str(kv[0])):
        chosen_record = plans.get("chosen", {})
        chosen = chosen_record.get("estimates", {})
        # The chosen plan runs as chosen (with the physical choices the optimizer made); grids
        # from before it did have it planned only, judged by its alternative's forced run.
        chosen_ran = "seconds" in chosen_record or chosen_record.get("status") not in (
            None,
            "finished",
        )
        forced = {p: r for p, r in plans.items() if p not in ("chosen", "authors", "naive")}
        finished = {p: r for p, r in forced.items() if r["status"] == "finished"}
        for r in plans.values():
            if r["status"] != "finished" or "seconds" not in r:  # planned only
                continue
            baseline = r["plan"] in ("authors", "naive")
            for c in CONSTANTS:
                estimate = r.get("estimates", {}).get(c, {})
                if estimate.get("seconds"):
                    (baseline_ratios if baseline else ratios)[c].append(
                        r["seconds"] / estimate["seconds"]
                    )
                if estimate.get("peak_bytes") and r.get("peak_bytes"):
                    (baseline_peaks if baseline else peaks)[c].append(
                        r["peak_bytes"] / estimate["peak_bytes"]
                    )
        candidates = list(finished.values())
        if chosen_ran and chosen_record["status"] == "finished":
            candidates.append(chosen_record)
        # The chosen plan and a forced alternative that ran with the same physical choices are
        # one plan measured twice: each plan's time is the mean of its runs.
        runs: dict[tuple[Any, ...], list[float]] = {}
        for r in candidates:
            runs.setdefault(physical_plan(r), []).append(r["seconds"])

        def seconds_of(r: dict[str, Any], runs: dict[tuple[Any, ...], list[float]] = runs) -> float:
            times = runs[physical_plan(r)]
            return sum(times) / len(times)

        fastest = min(candidates, key=seconds_of) if candidates else None
        row: dict[str, Any] = {
            "cnn": cnn,
            "rows": count,
            "budget_gib": budget,
            "alternatives": len(forced),
            "finished": len(finished),
            "fastest": (
                None
                if fastest is None
                else f"chosen ({ran_alternative(fastest)})"
                if fastest["plan"] == "chosen"
                else fastest["plan"]
            ),
            "fastest_seconds": seconds_of(fastest) if fastest else None,
        }
        for c in CONSTANTS:
            name = chosen.get(c, {}).get("alternative")
            run = forced.get(name) if name else None
            if c == "calibrated" and chosen_ran:  # what the optimizer chose, as it ran
                run = chosen_record
            row[f"chosen_{c}"] = name
            row[f"chosen_{c}_status"] = run["status"] if run else None
            if run is not None and run["status"] == "finished" and fastest is not None:
                row[f"chosen_{c}_vs_fastest"] = seconds_of(run) / seconds_of(fastest)
        for baseline in ("authors", "naive"):
            r = plans.get(baseline)
            row[baseline] = r["status"] if r else None
            if r and r["status"] == "finished" and fastest is not None:
                row[f"{baseline}_vs_fastest"] = r["seconds"] / seconds_of(fastest)
        rows.append(row)

    def share(values: list[float], within: float) -> float | None:
        if not values:
            return None
        return sum(1 for v in values if abs(v - 1) <= within) / len(values)

    goals: dict[str, Any] = {}
    for c in CONSTANTS:
        verdicts = [r[f"chosen_{c}_vs_fastest"] for r in rows if f"chosen_{c}_vs_fastest" in r]
        goals[c] = {
            "chosen_within_10pct": (
                sum(1 for v in verdicts if v <= 1 + WITHIN_FASTEST) / len(verdicts)
                if verdicts
                else None
            ),
            "workloads_judged": len(verdicts),
            "time_within_25pct": share(ratios[c], WITHIN_ESTIMATE),
            "peak_within_25pct": share(peaks[c], WITHIN_ESTIMATE),
            "plans_measured": len(ratios[c]),
            "time_ratio_range": [min(ratios[c]), max(ratios[c])] if ratios[c] else None,
            "peak_ratio_range": [min(peaks[c]), max(peaks[c])] if peaks[c] else None,
            "baselines_time_ratios": baseline_ratios[c],
            "baselines_peak_ratios": baseline_peaks[c],
            "chosen_crashed": sum(
                1 for r in rows if r[f"chosen_{c}_status"] in ("oom_killed", "failed", "timeout")
            ),
        }
    for baseline in ("authors", "naive"):
        crashed = [r for r in rows if r[baseline] in ("oom_killed", "failed", "timeout")]
        slower = [r[f"{baseline}_vs_fastest"] for r in rows if f"{baseline}_vs_fastest" in r]
        goals[baseline] = {
            "crashed": len(crashed),
            "refused": sum(1 for r in rows if r[baseline] == "refused"),
            "finished": len(slower),
            "median_vs_fastest": sorted(slower)[len(slower) // 2] if slower else None,
            "max_vs_fastest": max(slower) if slower else None,
        }
    return {"workloads": rows, "goals": goals}


def table(summary: dict[str, Any]) -> str:
    def ratio(value: Any) -> str:
        return f"{value:.2f}x" if isinstance(value, float) else "-"

    lines = [
        "| workload | plans finished | fastest | chosen (calibrated) | vs fastest"
        " | chosen (shipped) | vs fastest | authors | Naive |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["workloads"]:
        if not r["alternatives"]:  # planned, none of its plans measured yet
            continue
        budget = f"{r['budget_gib']:g} GiB" if r["budget_gib"] else "machine"
        authors = r["authors"] if "authors_vs_fastest" not in r else ratio(r["authors_vs_fastest"])
        naive = r["naive"] if "naive_vs_fastest" not in r else ratio(r["naive_vs_fastest"])
        lines.append(
            f"| {r['cnn']} {r['rows']}, {budget} | {r['finished']}/{r['alternatives']}"
            f" | {r['fastest']} | {r['chosen_calibrated']} | "
            f"{ratio(r.get('chosen_calibrated_vs_fastest'))} | {r['chosen_shipped']} | "
            f"{ratio(r.get('chosen_shipped_vs_fastest'))} | {authors} | {naive} |"
        )
    lines.append("")
    lines.append("| goal | target | calibrated | shipped |")
    lines.append("|---|---|---|---|")
    g = summary["goals"]

    def pct(value: Any) -> str:
        return f"{value:.0%}" if isinstance(value, float) else "-"

    lines.append(
        f"| chosen fastest or within 10 % | >= 90 % | {pct(g['calibrated']['chosen_within_10pct'])}"
        f" of {g['calibrated']['workloads_judged']} | {pct(g['shipped']['chosen_within_10pct'])}"
        f" of {g['shipped']['workloads_judged']} |"
    )
    lines.append(
        f"| time estimate within +-25 % (alternatives) | >= 90 % |"
        f" {pct(g['calibrated']['time_within_25pct'])} of {g['calibrated']['plans_measured']}"
        f" | {pct(g['shipped']['time_within_25pct'])} of {g['shipped']['plans_measured']} |"
    )

    def span(values: Any) -> str:
        return f"{min(values):.2f}-{max(values):.2f}" if values else "-"

    lines.append(
        f"| measured / estimated time, range | 0.75-1.25 |"
        f" {span(g['calibrated']['time_ratio_range'])} | {span(g['shipped']['time_ratio_range'])} |"
    )
    calibrated, shipped = g["calibrated"], g["shipped"]
    lines.append(
        f"| peak estimate within +-25 % (alternatives) | 100 % |"
        f" {pct(calibrated['peak_within_25pct'])} ({span(calibrated['peak_ratio_range'])})"
        f" | {pct(shipped['peak_within_25pct'])} ({span(shipped['peak_ratio_range'])}) |"
    )
    lines.append(
        f"| the baselines' measured / estimated time; peak | - |"
        f" {span(g['calibrated']['baselines_time_ratios'])};"
        f" {span(g['calibrated']['baselines_peak_ratios'])}"
        f" | {span(g['shipped']['baselines_time_ratios'])};"
        f" {span(g['shipped']['baselines_peak_ratios'])} |"
    )
    lines.append(
        f"| chosen plan crashed | never | {g['calibrated']['chosen_crashed']}"
        f" | {g['shipped']['chosen_crashed']} |"
    )
    for baseline, title in (("authors", "authors' procedure"), ("naive", "Naive in Spark")):
        b = g[baseline]
        lines.append(
            f"| {title}: crashed / refused / finished (median, worst vs fastest) | - |"
            f" {b['crashed']} / {b['refused']} / {b['finished']}"
            f" ({ratio(b['median_vs_fastest'])}, {ratio(b['max_vs_fastest'])}) | |"
        )
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, 2, figsize=(11, 5))
    for axes, field, unit, scale in (
        (panels[0], "seconds", "s", 1.0),
        (panels[1], "peak_bytes", "GiB", 1 / GiB),
    ):
        for constants, marker in (("calibrated", "o"), ("shipped", "x")):
            xs, ys = [], []
            for r in records:
                estimate = (r.get("estimates") or {}).get(constants, {}).get(field)
                if r["status"] == "finished" and estimate and r.get(field):
                    xs.append(estimate * scale)
                    ys.append(r[field] * scale)
            axes.scatter(xs, ys, marker=marker, label=f"{constants} constants", alpha=0.7)
        limits = [v for line in axes.collections for v in line.get_offsets().flatten()]
        if limits:
            low, high = min(limits) * 0.8, max(limits) * 1.2
            axes.plot([low, high], [low, high], "k-", linewidth=0.8)
            axes.fill_between(
                [low, high], [low * 0.75, high * 0.75], [low * 1.25, high * 1.25], alpha=0.1
            )
            axes.set_xscale("log")
            axes.set_yscale("log")
        axes.set_xlabel(f"estimated {field.split('_')[0]} ({unit})")
        axes.set_ylabel(f"measured ({unit})")
        axes.legend()
    panels[0].set_title("total time: every finished plan (band: +-25 %)")
    panels[1].set_title("peak memory")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def report() -> None:
    records = latest_estimates(read_records())
    summary = summarize(records)
    text = table(summary)
    print(text)
    (RESULTS / "fidelity.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(records, RESULTS / "fidelity.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    go = commands.add_parser("run")
    go.add_argument("--cnns", default="alexnet,vgg16,resnet50")
    go.add_argument("--sizes", default="small,large")
    go.add_argument("--budgets", default=f"none,{TIGHT_GIB:g}")
    go.add_argument("--calibration", default=None)
    go.add_argument("--data", default="/tmp/vista-fidelity-data")
    go.add_argument("--timeout", type=float, default=900.0)
    again = commands.add_parser("reestimate")
    again.add_argument("--calibration", default=None)
    again.add_argument("--data", default="/tmp/vista-fidelity-data")
    one = commands.add_parser("one")
    one.add_argument("spec")
    commands.add_parser("report")
    args = parser.parse_args()
    if args.command == "one":
        print(json.dumps(plan_once(json.loads(args.spec))))
    elif args.command == "run":
        run(args)
    elif args.command == "reestimate":
        reestimate(args)
    else:
        report()


if __name__ == "__main__":
    main()
