"""EXPLAIN of a decision: the chosen physical plan with estimates, its Spark configuration, and
every alternative with its estimate and why it lost (SPEC.md, EXPLAIN).

``explain_text(decision, mode)`` and ``explain_json(decision, mode)``: ``mode`` None is plain
EXPLAIN; ``"cost"`` adds, per alternative, the breakdown of time by stage and of memory by region,
the per-operator times, and the data statistics and constants the estimates rest on. Estimates are
printed with their precision: ``=`` exact, ``~`` estimated, ``?`` unknown. The text depends only
on the decision (statement, statistics, resources, constants): no ids, no set order, no clock.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from vista_sql.cost_model.config import storage_level_name
from vista_sql.cost_model.constants import calibration_status, provenance
from vista_sql.cost_model.estimate import Estimate
from vista_sql.cost_model.facts import NodeFacts, PlanFacts
from vista_sql.cost_model.optimizer import Decision, PhysicalPlan
from vista_sql.logical.plan import Decode, Evaluate, Join, Persist, Plan, Train, Workload
from vista_sql.logical.render import render_json, render_text
from vista_sql.logical.search import describe_rounds
from vista_sql.units import format_bytes

Mode = Literal["cost"] | None


def explain_text(decision: Decision, mode: Mode = None) -> str:
    """The EXPLAIN text of a decision (``mode``: None or ``"cost"``)."""
    chosen = decision.chosen
    cost = mode == "cost"
    physical = chosen.plan
    sections = [
        f"== Physical Plan: {chosen.alternative} ==",
        render_text(physical, annotate=_annotator(chosen, physical, cost)),
        "",
        "== Spark Configuration ==",
        *_configuration_lines(chosen),
        "",
        "== Estimate ==",
        *_estimate_lines(decision),
        "",
        f"== Alternatives ({len(decision.alternatives)} plans,"
        f" {decision.considered} physical choices estimated) ==",
        *_alternative_lines(decision),
    ]
    if cost:
        for plan in decision.alternatives:
            sections += ["", f"== Cost of {plan.alternative} ==", *_cost_lines(plan)]
        sections += ["", "== Statistics ==", *_statistics_lines(decision)]
        sections += ["", "== Constants ==", *_constant_lines()]
    return "\n".join(sections) + "\n"


def explain_json(decision: Decision, mode: Mode = None) -> dict[str, Any]:
    """The same content as ``explain_text``, as JSON-ready dicts and lists."""
    chosen = decision.chosen
    cost = mode == "cost"
    document: dict[str, Any] = {
        "mode": mode or "physical",
        "chosen": chosen.alternative,
        "plan": render_json(chosen.plan),
        "operators": [_operator_json(chosen, f, cost) for f in chosen.facts.nodes],
        "config": chosen.config.to_json(),
        "estimate": {
            "seconds": chosen.time.to_json(),
            "peak_memory_bytes": chosen.peak.to_json(),
            "fit": chosen.fit.to_json(),
            "resources": decision.resources.to_json(),
            "cache_peak_bytes": chosen.memory.cache_peak.to_json(),
            "storage_capacity_bytes": chosen.memory.storage_capacity,
            "spill_fraction": chosen.memory.spill_fraction.to_json(),
            "calibration": {
                **calibration_status().to_json(),
                "profiled": decision.profiled.to_json() if decision.profiled else None,
            },
        },
        "overrides": list(decision.overrides),
        "considered": decision.considered,
        "alternatives": [
            {
                "name": plan.alternative,
                "equivalents": list(plan.names[1:]),
                "chosen": plan is chosen,
                "seconds": plan.time.to_json(),
                "peak_memory_bytes": plan.peak.to_json(),
                "fit": plan.fit.to_json(),
                "reason": decision.reason(plan),
                "choice": plan.choice.describe(),
                **({"cost": _cost_json(plan)} if cost else {}),
            }
            for plan in decision.alternatives
        ],
    }
    if cost:
        document["statistics"] = decision.stats.to_json()
        document["constants"] = [
            {"name": p.name, "unit": p.unit, "kind": p.kind, "source": p.source}
            for p in provenance()
        ]
    return document


def _annotator(plan: PhysicalPlan, physical: Plan, cost: bool) -> Any:
    """The renderer's callback: a physical node's estimates, found by its operator number (the
    physical plan has the logical plan's structure, so the numbering is the same)."""
    facts = {key: plan.facts.nodes[n - 1] for key, n in plan.numbers(physical).items()}

    def annotate(node: Plan) -> str:
        f = facts[id(node)]
        return _annotation(plan, f, cost)

    return annotate


def _annotation(plan: PhysicalPlan, f: NodeFacts, cost: bool) -> str:
    """``(rows ~20.0K, bytes ~744.5 MiB, task memory ~64.0 MiB, read x3)`` beside an operator."""
    if f.number == 1:
        parts = [f"time {plan.time.format('seconds')}", f"peak memory {plan.peak.format('bytes')}"]
        return "(" + ", ".join(parts) + ")"
    node = f.node
    task = plan.memory.task_memory_of(f.number).format("bytes")
    if isinstance(node, Train):
        parts = [f"rows {f.rows.format('rows')} training", f"model {f.bytes.format('bytes')}"]
    elif isinstance(node, Evaluate):
        parts = [f"rows {f.rows.format('rows')} held out"]
    elif isinstance(node, Decode):
        parts = [f"rows {f.rows.format('rows')}", "decoded in the inference worker"]
    else:
        parts = [f"rows {f.rows.format('rows')}", f"bytes {f.bytes.format('bytes')}"]
    parts.append(f"task memory {task}")
    if f.passes != 1:
        verb = "read" if isinstance(node, Persist) else "computed"
        parts.append(f"{verb} x{f.passes:g}")
    if cost:
        op = plan.runtime.of(f.number)
        if op is not None:
            parts.append(f"time {op.total.format('seconds')}")
    return "(" + ", ".join(parts) + ")"


def _configuration_lines(plan: PhysicalPlan) -> list[str]:
    config = plan.config
    heap_key = "spark.driver.memory" if config.mode == "local" else "spark.executor.memory"
    level = config.persist_level
    persistence = f"{level} ({storage_level_name(level)})" if level else "none"
    rows = [
        ("mode", f"{config.mode}" + (f", {config.nodes} nodes" if config.nodes > 1 else "")),
        (
            "executor cores",
            f"{_plural(config.executor_cores, 'concurrent task')},"
            f" {_plural(config.tf_threads, 'TensorFlow thread')} each",
        ),
        ("heap", f"{format_bytes(config.heap_bytes)} ({heap_key})"),
        (
            "memory fractions",
            f"{config.memory_fraction:g} unified, {config.storage_fraction:g} of it storage",
        ),
        ("partitions", str(config.partitions)),
        ("join", plan.choice.join if plan.facts.kind(Join) else "none"),
        ("persistence", persistence),
        (
            "batch size",
            f"{config.batch_size} (Arrow batch {config.arrow_rows} rows,"
            f" cache batch {config.cache_rows} rows)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append("spark conf:")
    lines += [f"  {key}={value}" for key, value in config.as_spark_conf().items()]
    return lines


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _estimate_lines(decision: Decision) -> list[str]:
    chosen = decision.chosen
    resources = decision.resources
    origin = ", ".join(f"{what}: {source}" for what, source in resources.origin)
    stats = decision.stats
    lines = [
        f"runtime      {chosen.time.format('seconds')}",
        f"peak memory  {chosen.peak.format('bytes')} per node of"
        f" {format_bytes(resources.memory_bytes)} ({chosen.fit.describe()})",
        f"resources    {resources.describe()}" + (f" ({origin})" if origin else ""),
        f"data         {stats.image_rows.format('rows')} images"
        f" ({stats.image_bytes.format('bytes')}), {stats.table_rows.format('rows')} rows x"
        f" {stats.feature_columns.format()} structured features,"
        f" {stats.label_classes.format()} classes",
        f"calibration  {calibration_status().describe()}",
    ]
    if decision.profiled is not None:
        lines.append(f"profiled     {decision.profiled.describe()}")
    if decision.overrides:
        lines.append(f"overrides    {', '.join(decision.overrides)}")
    search = _search_line(chosen.plan, chosen.facts)
    if search is not None:
        lines.append(f"search       {search}")
    return lines


def _search_line(plan: Plan, facts: PlanFacts) -> str | None:
    """The successive-halving search's rounds (``WITH (search = 'halving')``), or None."""
    trains = [f for f in facts.nodes if isinstance(f.node, Train) and f.node.search == "halving"]
    if not trains or not isinstance(plan, Workload):
        return None
    train = trains[0].node
    assert isinstance(train, Train)
    grid = math.prod(len(v) for _, v in train.model.grid) if train.model.grid else 1
    layers = len(plan.branches)
    return describe_rounds(layers * grid, trains[0].rows.value or 0.0, layers)


def _alternative_lines(decision: Decision) -> list[str]:
    width = max(len(plan.alternative) for plan in decision.alternatives)
    lines = []
    for plan in decision.alternatives:
        mark = "*" if plan is decision.chosen else " "
        lines.append(
            f"{mark} {plan.alternative:<{width}}  {plan.time.format('seconds'):>9}"
            f"  {plan.peak.format('bytes'):>10}  {decision.reason(plan)}"
        )
        if len(plan.names) > 1:
            lines.append(f"  {'':<{width}}  (same plan as {', '.join(plan.names[1:])})")
    return lines


def _cost_lines(plan: PhysicalPlan) -> list[str]:
    lines = [f"choice: {plan.choice.describe()}, heap {format_bytes(plan.memory.heap_bytes)}"]
    lines.append("time by stage:")
    for step, seconds in plan.runtime.by_step():
        lines.append(f"  {step:<10} {seconds.format('seconds'):>9}")
    lines.append(f"  {'total':<10} {plan.time.format('seconds'):>9}")
    lines.append("memory by region (per node):")
    for region in plan.memory.regions:
        indent = "    " if region.parent == "jvm_heap" else "  "
        limit = "" if region.limit is None else f" of {format_bytes(region.limit)}"
        lines.append(
            f"{indent}{region.label:<{24 - len(indent)}} {region.need.format('bytes'):>10}"
            f"{limit}  {region.detail}"
        )
    lines.append(f"fit: {plan.fit.describe()}")
    return lines


def _statistics_lines(decision: Decision) -> list[str]:
    return [f"  {note}" for note in decision.stats.notes]


def _constant_lines() -> list[str]:
    return [f"  {p.name} [{p.kind}]: {p.source}" for p in provenance()]


def _operator_json(plan: PhysicalPlan, f: NodeFacts, cost: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": f.number,
        "operator": type(f.node).__name__,
        "rows": f.rows.to_json(),
        "bytes": f.bytes.to_json(),
        "task_memory_bytes": plan.memory.task_memory_of(f.number).to_json(),
        "passes": f.passes,
    }
    if cost:
        op = plan.runtime.of(f.number)
        entry["seconds"] = op.total.to_json() if op else Estimate.exact(0).to_json()
    return entry


def _cost_json(plan: PhysicalPlan) -> dict[str, Any]:
    return {
        "heap_bytes": plan.memory.heap_bytes,
        "seconds_by_stage": {step: e.to_json() for step, e in plan.runtime.by_step()},
        "memory_by_region": [region.to_json() for region in plan.memory.regions],
    }
