"""EXPLAIN ANALYZE: the plan that ran, with the optimizer's estimates beside what was measured.

Time is compared per layer and stage, as the executor measures it: a layer's *inference* is what
it took to materialise its branch (the Persist nodes it came to first, then its branch table), its
*training* the fit, its *evaluation* the scoring of the held-out rows. The estimate of each is the
sum of the cost model's operator times attributed the same way. An operator that several branches
compute (a plan that recomputes) or read (a Persist) is shared equally among them, its once-only
part (writing a Persist) going to the first; what lies under a Persist counts for the branch that
materialised it, as do the start-up (Python workers, model building), in that first stage.
Memory compares the estimated peak of the node with the measured peak resident memory of the
whole process tree (driver, JVM, Python workers); on a cluster, where the driver's machine does not
see the executors, with each executor's peak from Spark's executor metrics, the worst node shown
against the per-node estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vista_sql.cost_model.estimate import Estimate, format_seconds, total
from vista_sql.cost_model.optimizer import Decision
from vista_sql.logical.plan import Evaluate, Persist, Plan, Train, Workload
from vista_sql.physical.cluster import ExecutorPeak
from vista_sql.physical.executor import RunOutcome, branch_parts
from vista_sql.physical.monitor import MemorySample
from vista_sql.units import format_bytes

Groups = dict[tuple[str, str], list[tuple[int, bool]]]


@dataclass(frozen=True)
class StageRow:
    layer: str
    stage: str
    estimate: Estimate
    measured: float


def _attribute(plan: Workload, order: list[str]) -> tuple[Groups, dict[int, int]]:
    """(layer, stage) -> (operator number, whether this branch is the first to reach it), in
    pre-order as the cost model numbers them; and per operator, how many branches reach it.

    A branch reaches what it computes: every operator below it, except below a Persist an
    earlier branch materialised (it reads that Persist, and nothing under it runs again)."""
    numbers = plan.numbering()
    branches = {branch_parts(b)[1].layer: b for b in plan.branches}
    materialised: set[int] = set()
    groups: Groups = {}
    readers: dict[int, int] = {}

    def visit(node: Plan, layer: str, here: set[int]) -> None:
        if id(node) in here:
            return
        here.add(id(node))
        number = numbers[id(node)]
        first = id(node) not in materialised
        stage = (
            "training"
            if isinstance(node, Train)
            else "evaluation"
            if isinstance(node, Evaluate)
            else "inference"
        )
        groups.setdefault((layer, stage), []).append((number, first))
        readers[number] = readers.get(number, 0) + 1
        materialised.add(id(node))
        if isinstance(node, Persist) and not first:
            return
        for child in node.children:
            visit(child, layer, here)

    for layer in order:
        visit(branches[layer], layer, set())
    return groups, readers


def stage_rows(
    decision: Decision, plan: Workload, outcome: RunOutcome, order: list[str]
) -> list[StageRow]:
    runtime = decision.chosen.runtime
    groups, readers = _attribute(plan, order)
    rows = []
    first_stage = True
    for run in outcome.layers:
        measured = {
            "inference": run.inference_seconds,
            "training": run.trained.train_seconds,
            "evaluation": run.trained.evaluate_seconds,
        }
        for stage, seconds in measured.items():
            estimates = [
                op.share(readers[number], first)
                for number, first in groups.get((run.layer, stage), [])
                if (op := runtime.of(number)) is not None
            ]
            if first_stage and stage == "inference":
                # Worker start, model build and first-call tracing happen in the first stage.
                estimates.append(runtime.startup)
            rows.append(StageRow(run.layer, stage, total(estimates), seconds))
        first_stage = False
    return rows


def _ratio(estimate: Estimate, measured: float) -> str:
    if estimate.value is None or measured <= 0:
        return "?"
    return f"{estimate.value / measured:.2f}"


def analyze_text(
    decision: Decision,
    explain: str,
    plan: Workload,
    outcome: RunOutcome,
    order: list[str],
    seconds: float,
    peak: MemorySample | None,
    executors: list[ExecutorPeak] | None = None,
) -> str:
    """The plain EXPLAIN text, then per layer and stage estimated vs measured, then totals."""
    rows = stage_rows(decision, plan, outcome, order)
    lines = [explain.rstrip(), "", "== Analyze: estimated vs measured ==", ""]
    header = f"{'layer':<10} {'stage':<11} {'estimated':>11} {'measured':>10} {'est/meas':>9}"
    lines += [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.layer:<10} {row.stage:<11} {row.estimate.format('seconds'):>11}"
            f" {format_seconds(row.measured):>10} {_ratio(row.estimate, row.measured):>9}"
        )
    chosen = decision.chosen
    lines += [
        "",
        f"total time    estimated {chosen.time.format('seconds')}, measured"
        f" {format_seconds(seconds)} (ratio {_ratio(chosen.time, seconds)})",
    ]
    if peak is not None:
        lines.append(
            f"peak memory   estimated {chosen.peak.format('bytes')}, measured"
            f" {format_bytes(peak.total)} (ratio {_ratio(chosen.peak, peak.total)}):"
            f" JVM {format_bytes(peak.jvm)}, Python workers {format_bytes(peak.python_workers)},"
            f" driver {format_bytes(peak.driver)}"
        )
    else:
        lines.append(f"peak memory   estimated {chosen.peak.format('bytes')}, measured ?")
    lines += _executor_lines(chosen.peak, executors or [])
    for timing in outcome.timings:
        lines.append(
            f"materialised  {timing.node.describe()}: {timing.rows} rows in"
            f" {format_seconds(timing.seconds)}"
        )
    return "\n".join(lines) + "\n"


def worst_node(executors: list[ExecutorPeak]) -> ExecutorPeak | None:
    """The executor with the largest measured process-tree peak (None when none was measured)."""
    measured = [e for e in executors if e.total is not None]
    return max(measured, key=lambda e: e.total or 0, default=None)


def _executor_lines(estimate: Estimate, executors: list[ExecutorPeak]) -> list[str]:
    """Per executor its measured peaks, then the worst node against the per-node estimate."""
    lines = []

    def size(value: int | None) -> str:
        return "?" if value is None else format_bytes(value)

    for e in executors:
        lines.append(
            f"executor {e.executor:<4} on {e.host}: peak JVM heap {size(e.jvm_heap)},"
            f" JVM resident {size(e.jvm_rss)}, Python workers {size(e.python_rss)}"
        )
    worst = worst_node(executors)
    if worst is not None and worst.total is not None:
        lines.append(
            f"worst node    {worst.host} (executor {worst.executor}): measured"
            f" {format_bytes(worst.total)}, estimated per node {estimate.format('bytes')}"
            f" (ratio {_ratio(estimate, worst.total)})"
        )
    return lines


def analyze_json(
    decision: Decision,
    explain: dict[str, Any],
    plan: Workload,
    outcome: RunOutcome,
    order: list[str],
    seconds: float,
    peak: MemorySample | None,
    executors: list[ExecutorPeak] | None = None,
) -> dict[str, Any]:
    rows = stage_rows(decision, plan, outcome, order)
    return {
        **explain,
        "mode": "analyze",
        "analyze": {
            "stages": [
                {
                    "layer": r.layer,
                    "stage": r.stage,
                    "estimated_seconds": r.estimate.to_json(),
                    "measured_seconds": r.measured,
                }
                for r in rows
            ],
            "seconds": {"estimated": decision.chosen.time.to_json(), "measured": seconds},
            "peak_memory_bytes": {
                "estimated": decision.chosen.peak.to_json(),
                "measured": None if peak is None else peak.total,
                "measured_jvm": None if peak is None else peak.jvm,
                "measured_python_workers": None if peak is None else peak.python_workers,
            },
            "executors": [
                {
                    "executor": e.executor,
                    "host": e.host,
                    "peak_jvm_heap_bytes": e.jvm_heap,
                    "peak_jvm_rss_bytes": e.jvm_rss,
                    "peak_python_rss_bytes": e.python_rss,
                    "peak_bytes": e.total,
                }
                for e in executors or []
            ],
        },
    }
