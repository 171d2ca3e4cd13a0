"""Choose the plan: for every logical alternative, the physical choices and Spark settings that make
it fastest within memory; then the best alternative by one documented key.

The key (``PhysicalPlan.key``), smallest first:

1. **fit**: plans that fit (0), plans whose fit is unknown because a statistic is missing (1),
   plans that do not fit (2). A plan that may crash is never preferred to one that will not.
2. **estimated seconds**, unknown sorting last; then the known part of the seconds (when a
   statistic is missing, e.g. a CNN's FLOPs, the plans still compare by everything else they do:
   a plan that decodes the images three times loses to one that decodes them once). Plans that do
   not fit compare instead by the memory they would need (so an alternative that fits nowhere is
   reported with its least demanding configuration), and no later part of the key.
3. **estimated peak memory**, unknown last, then its known part: between equally fast plans, the
   smaller.
4. **the alternative's position** in the logical driver's fixed order (lazy, eager, staged; before,
   after the join; recompute, persist), then the choice's position in the search's order (Spark's
   defaults and the most concurrency first): a deterministic tie-break.

Per alternative the search tries every join strategy (broadcast only while the structured table
fits comfortably in storage memory), every persistence level (when the plan persists something),
every number of concurrent tasks per node (1 to the node's cores, TensorFlow getting the node's
cores divided among them), a few memory fractions, and batch sizes from the largest down: past the
first that fits without spilling, on while the estimate improves (see ``_search``).
Partitions, Arrow and cache batch rows follow from those by fixed rules (see ``_choice``).

WITH overrides fix their dimension; an override under which nothing fits is refused with a
``ResourceError`` pointing at it. When nothing fits at all, the ``ResourceError`` says the least
memory per node under which some plan would (computed exactly: a plan's needs do not depend on the
memory it is given, only the heap chosen does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from vista_sql.catalog import Catalog
from vista_sql.cost_model.config import Choice, SparkConfig
from vista_sql.cost_model.constants import CostConstants, constants
from vista_sql.cost_model.estimate import Estimate, format_seconds
from vista_sql.cost_model.facts import PlanFacts, analyze
from vista_sql.cost_model.memory import (
    Fit,
    MemoryModel,
    gpu_fits,
    memory_model,
    minimum_memory,
    needs,
)
from vista_sql.cost_model.resources import Resources
from vista_sql.cost_model.runtime import RuntimeModel, runtime
from vista_sql.cost_model.stats import DataStats
from vista_sql.errors import ResourceError, SemanticError, VistaError
from vista_sql.logical.driver import Knobs
from vista_sql.logical.plan import (
    Assemble,
    Decode,
    Infer,
    Join,
    Persist,
    Plan,
    Workload,
    transform_up,
)
from vista_sql.logical.query import JoinStrategy, Options, StorageLevel, TransferQuery
from vista_sql.units import MiB, format_byte_pair, format_bytes

BATCH_SIZES = (64, 32, 16, 8, 4, 2, 1)
"""TensorFlow batch sizes tried, largest first."""
MEMORY_FRACTIONS = (0.6, 0.5, 0.75)
"""spark.memory.fraction values tried: Spark's default, more user memory, more unified memory."""
JOINS: tuple[JoinStrategy, ...] = ("broadcast", "shuffle")
LEVELS: tuple[StorageLevel, ...] = ("deserialized", "serialized", "disk")
FIT_RANK = {"fits": 0, "unknown": 1, "does_not_fit": 2}


class AlternativeLike(Protocol):
    """What the cost model reads of ``vista_sql.logical.driver.Alternative``."""

    @property
    def name(self) -> str: ...

    @property
    def names(self) -> tuple[str, ...]: ...

    @property
    def knobs(self) -> tuple[Knobs, ...]: ...

    @property
    def plan(self) -> Workload: ...


@dataclass(frozen=True, slots=True)
class PhysicalPlan:
    """One alternative with its physical choices made and estimated."""

    alternative: str
    names: tuple[str, ...]
    """The alternative's name and those of the knob settings that give the same plan."""
    order: int
    """Position of the alternative in the logical driver's order (a tie-breaker)."""
    position: int
    """Position of the choice in the search's order (the last tie-breaker): Spark's defaults and
    the most concurrency first (see ``_choices``)."""
    logical: Workload
    """The alternative's logical plan (physical fields unset)."""
    choice: Choice
    config: SparkConfig
    facts: PlanFacts
    memory: MemoryModel
    runtime: RuntimeModel

    @property
    def time(self) -> Estimate:
        return self.runtime.total

    @property
    def peak(self) -> Estimate:
        return self.memory.peak

    @property
    def fit(self) -> Fit:
        return self.memory.fit

    def key(self) -> tuple[int, float, float, float, float, int, int]:
        """The comparison key (module docstring): smaller is better."""
        if self.fit.status == "does_not_fit":
            needed = self.fit.needed if self.fit.needed is not None else math.inf
            return (FIT_RANK["does_not_fit"], needed, 0.0, 0.0, 0.0, self.order, self.position)
        return (
            FIT_RANK[self.fit.status],
            self.time.or_infinity(),
            self.runtime.known_seconds,
            self.peak.or_infinity(),
            self.memory.peak_known,
            self.order,
            self.position,
        )

    @property
    def plan(self) -> Workload:
        """The plan with Join.strategy, Persist.level and Infer.batch_size filled in (a new
        object on each access; its structure and sharing are the logical plan's)."""
        return _physical(self.logical, self.choice)

    def numbers(self, plan: Plan) -> dict[int, int]:
        """``id`` of each node of ``plan`` (this plan's physical or logical form) -> its operator
        number, pre-order as in ``facts``."""
        return plan.numbering()


@dataclass(frozen=True, slots=True)
class Decision:
    """The chosen plan, and every alternative's best plan with why it lost."""

    chosen: PhysicalPlan
    alternatives: tuple[PhysicalPlan, ...]
    """Each logical alternative's best physical plan, in the driver's order."""
    resources: Resources
    stats: DataStats
    overrides: tuple[str, ...]
    """The WITH options that constrained the search, as written (``join = 'shuffle'``)."""
    considered: int
    """Physical plans estimated in all."""
    profiled: Any = None
    """``WITH (calibrate = true)``: what was profiled for this statement
    (``physical.profile.StatementProfile``: ``describe()``, ``to_json()``), else None."""

    def reason(self, plan: PhysicalPlan) -> str:
        """Why ``plan`` was not chosen ("chosen" for the chosen one)."""
        if plan is self.chosen:
            return "chosen"
        if plan.fit.status == "does_not_fit":
            return plan.fit.describe()
        if plan.fit.status == "unknown" and self.chosen.fit.status == "fits":
            return plan.fit.describe()
        mine, best = plan.time, self.chosen.time
        if mine.value is not None and best.value is not None and mine.value > best.value:
            text = f"slower: {mine.format('seconds')} vs {best.format('seconds')}"
            if mine.format("seconds") == best.format("seconds"):
                text += f" (+{format_seconds(mine.value - best.value)})"
            return text
        if not mine.known and best.known:
            return f"runtime unknown vs {best.format('seconds')}"
        known, best_known = plan.runtime.known_seconds, self.chosen.runtime.known_seconds
        if not mine.known and known > best_known:
            return (
                f"slower in what is known: ~{format_seconds(known)} vs"
                f" ~{format_seconds(best_known)} (runtime unknown: statistics not measured)"
            )
        if mine.value == best.value and plan.peak.or_infinity() > self.chosen.peak.or_infinity():
            mine_peak, best_peak = plan.peak.format("bytes"), self.chosen.peak.format("bytes")
            return f"as fast, more memory: {mine_peak} vs {best_peak}"
        return "same estimate, later in the fixed order of alternatives"


def choose(
    query: TransferQuery,
    alternatives: Sequence[AlternativeLike],
    catalog: Catalog,
    stats: DataStats,
    resources: Resources,
    consts: CostConstants | None = None,
) -> Decision:
    """The fastest plan that fits, its Spark configuration, and every alternative's estimate.

    Raises ``ResourceError`` when no plan fits (with the least memory per node that would), or
    when the WITH overrides leave no plan that fits (pointing at the override); ``SemanticError``
    when the overrides exclude every alternative.
    """
    consts = consts or constants()
    options = query.options
    allowed = [(i, a) for i, a in enumerate(alternatives) if _allowed(a, options)]
    if not allowed:
        raise _override_error(
            SemanticError, query, "no plan alternative matches the WITH options", None
        )
    analyzed = [(i, a, analyze(a.plan, catalog, stats, consts)) for i, a in allowed]
    best: list[PhysicalPlan] = []
    considered = 0
    for order, alternative, facts in analyzed:
        plans = list(_search(alternative, order, facts, options, resources, consts))
        considered += len(plans)
        best.append(min(plans, key=PhysicalPlan.key))
    chosen = min(best, key=PhysicalPlan.key)
    overrides = _overrides(query)
    if chosen.fit.status == "does_not_fit":
        _refuse(query, alternatives, catalog, stats, resources, consts, chosen, analyzed)
    return Decision(
        chosen=chosen,
        alternatives=tuple(best),
        resources=resources,
        stats=stats,
        overrides=overrides,
        considered=considered,
    )


def minimum_memory_for(
    alternatives: Sequence[tuple[int, AlternativeLike, PlanFacts]],
    options: Options,
    resources: Resources,
    consts: CostConstants,
) -> tuple[int, PhysicalPlan | None]:
    """The least per-node memory (whole MiB) under which some plan fits, and that plan there.

    Every choice's needs are independent of the memory given, so its least memory is computed
    directly (``memory.minimum_memory``); the answer is the smallest over all choices, rounded up
    to a MiB, and verified by estimating the plan under it.
    """
    least = math.inf
    for _, alternative, facts in alternatives:
        groups = _choices(alternative, facts, options, resources, consts)
        for choice in (choice for group in groups for choice in group):
            if not gpu_fits(facts, choice, resources, consts):
                continue  # no node memory helps a model that does not fit on the GPU
            need = needs(facts, choice, resources, consts)
            least = min(least, minimum_memory(need, choice, resources, consts))
    if math.isinf(least):
        return 0, None
    size = math.ceil(least / MiB) * MiB
    winner = _best_at(alternatives, options, resources.with_memory(size), consts)
    if winner.fit.status != "does_not_fit":
        return size, winner
    # Not expected (the needs do not depend on the memory); stay correct anyway: fitting is
    # monotone in memory, so bisect up to a bound beyond any machine.
    low, high = size, 2**50
    best = _best_at(alternatives, options, resources.with_memory(high), consts)
    if best.fit.status == "does_not_fit":
        return 0, None
    while high - low > MiB:
        middle = (low + high) // 2 // MiB * MiB
        plan = _best_at(alternatives, options, resources.with_memory(middle), consts)
        if plan.fit.status == "does_not_fit":
            low = middle
        else:
            high, best = middle, plan
    return high, best


def _best_at(
    alternatives: Sequence[tuple[int, AlternativeLike, PlanFacts]],
    options: Options,
    resources: Resources,
    consts: CostConstants,
) -> PhysicalPlan:
    return min(
        (
            min(_search(a, order, facts, options, resources, consts), key=PhysicalPlan.key)
            for order, a, facts in alternatives
        ),
        key=PhysicalPlan.key,
    )


def _allowed(alternative: AlternativeLike, options: Options) -> bool:
    """Whether the alternative (or a knob setting equivalent to it) matches the overrides."""
    for knobs in alternative.knobs:
        if options.inference is not None and knobs.inference != options.inference:
            continue
        if options.placement is not None and knobs.placement != options.placement:
            continue
        if options.persist is not None and not knobs.persist:
            continue
        return True
    return False


def _search(
    alternative: AlternativeLike,
    order: int,
    facts: PlanFacts,
    options: Options,
    resources: Resources,
    consts: CostConstants,
) -> list[PhysicalPlan]:
    """Every physical plan of one alternative the search estimates.

    Within a group (same join, level, cores and fraction) batch sizes go largest first: past the
    first that fits without spilling, the search goes on down only while the estimate gets
    faster. Time depends on the batch size through the per-call overhead (smaller is slower),
    the caches (larger is slower past the calibrated batch: ``runtime.batch_slowdown``) and
    memory (a smaller batch leaves a larger heap, which can spill less), so once nothing spills
    it has one minimum over the batch sizes.
    """
    plans: list[PhysicalPlan] = []
    groups = _choices(alternative, facts, options, resources, consts)
    for group_index, group in enumerate(groups):
        best: PhysicalPlan | None = None
        for batch_index, choice in enumerate(group):
            position = group_index * len(BATCH_SIZES) + batch_index
            plan = _estimate(alternative, order, position, facts, choice, resources, consts)
            if best is not None and plan.time.lower_bound >= best.time.lower_bound:
                break
            plans.append(plan)
            if plan.fit.status != "does_not_fit" and not plan.memory.spills:
                best = plan
    return plans


def _choices(
    alternative: AlternativeLike,
    facts: PlanFacts,
    options: Options,
    resources: Resources,
    consts: CostConstants,
) -> list[list[Choice]]:
    """The choices to estimate for one alternative, in groups that differ only in batch size
    (largest first)."""
    nodes = list(alternative.plan.walk())
    has_join = any(isinstance(n, Join) for n in nodes)
    has_persist = any(isinstance(n, Persist) for n in nodes)
    has_infer = any(isinstance(n, Infer) for n in nodes)
    joins: tuple[JoinStrategy, ...] = (
        (options.join,) if options.join else JOINS if has_join else ("shuffle",)
    )
    levels: tuple[StorageLevel, ...] = (
        (options.persist,) if options.persist else LEVELS if has_persist else ("deserialized",)
    )
    cores = (
        (options.executor_cores,)
        if options.executor_cores
        else tuple(range(resources.cores, 0, -1))
    )
    batches = (options.batch_size,) if options.batch_size else BATCH_SIZES
    if not has_infer:
        batches = batches[:1]
    # Decoded images never materialize: the worker decodes them (udfs.spark_infer).
    largest_bytes = max(
        (f.bytes.lower_bound for f in facts.nodes if not isinstance(f.node, Decode)),
        default=0.0,
    )
    # Every cached DataFrame: the Persist nodes and the executor's branch tables (Assemble).
    cached = (*facts.kind(Persist), *facts.kind(Assemble))
    persisted = max((f.row_bytes.lower_bound for f in cached), default=0.0)
    sizes = (largest_bytes, persisted)
    return [
        [
            _choice(sizes, join, level, count, fraction, batch, options, resources, consts)
            for batch in batches
        ]
        for join in joins
        for level in levels
        for count in cores
        for fraction in MEMORY_FRACTIONS
    ]


def _choice(
    sizes: tuple[float, float],
    join: JoinStrategy,
    level: StorageLevel,
    executor_cores: int,
    fraction: float,
    batch: int,
    options: Options,
    resources: Resources,
    consts: CostConstants,
) -> Choice:
    """A full choice from the searched dimensions, the rest by rule:

    - TF threads: the node's cores divided among its concurrent tasks (at least one);
    - partitions: at least ``partitions_per_slot`` per task slot, and enough that no task handles
      more than ``partition_target_bytes`` of the largest intermediate, rounded up to a multiple
      of the slots so that no wave runs half empty;
    - Arrow batch rows: ``arrow_batch_multiple`` TF batches (at most Spark's 10,000);
    - cache batch rows: what keeps one task's columnar batch near ``cache_batch_target_bytes``;
    - storage fraction: Spark's default. It decides how much cached data execution memory may
      evict; these plans' execution memory is small (the join's hash maps of the structured
      table), so there is nothing to trade.
    """
    largest_bytes, persisted = sizes
    slots = executor_cores * resources.nodes
    if options.partitions is not None:
        partitions = options.partitions
    else:
        by_size = math.ceil(largest_bytes / consts.partition_target_bytes)
        partitions = max(int(slots * consts.partitions_per_slot), by_size, 1)
        partitions = math.ceil(partitions / slots) * slots
    cache_rows = int(consts.columnar_batch_rows_default)
    if persisted > 0:
        cache_rows = int(
            max(16, min(cache_rows, consts.cache_batch_target_bytes // (2 * persisted)))
        )
    return Choice(
        join=join,
        persist=level,
        executor_cores=executor_cores,
        tf_threads=max(1, resources.cores // executor_cores),
        batch_size=batch,
        memory_fraction=fraction,
        storage_fraction=consts.storage_fraction_default,
        partitions=partitions,
        arrow_rows=int(min(consts.arrow_records_default, batch * consts.arrow_batch_multiple)),
        cache_rows=cache_rows,
    )


def _estimate(
    alternative: AlternativeLike,
    order: int,
    position: int,
    facts: PlanFacts,
    choice: Choice,
    resources: Resources,
    consts: CostConstants,
) -> PhysicalPlan:
    memory = memory_model(facts, choice, resources, consts)
    time = runtime(facts, choice, memory, resources, consts)
    has_persist = bool(facts.kind(Persist))
    broadcast = choice.join == "broadcast" and bool(facts.kind(Join))
    max_result = None
    if broadcast and memory.broadcast_bytes.lower_bound * 1.25 > consts.default_heap_bytes:
        max_result = math.ceil(memory.broadcast_bytes.lower_bound * 1.25 / MiB) * MiB
    config = SparkConfig(
        mode="local" if resources.nodes == 1 else "cluster",
        nodes=resources.nodes,
        executor_cores=choice.executor_cores,
        tf_threads=choice.tf_threads,
        partitions=choice.partitions,
        heap_bytes=memory.heap_bytes,
        driver_heap_bytes=memory.driver_heap_bytes,
        memory_fraction=choice.memory_fraction,
        storage_fraction=choice.storage_fraction,
        batch_size=choice.batch_size,
        arrow_rows=choice.arrow_rows,
        cache_rows=choice.cache_rows,
        compress_cached=True,
        max_result_bytes=max_result,
        gpu=resources.gpu_memory_bytes is not None,
        persist_level=choice.persist if has_persist else None,
        overhead_bytes=max(0, math.ceil(memory.peak_known) - memory.heap_bytes),
        file_open_bytes=max(1, round(consts.file_open_seconds / consts.scan_seconds_per_byte)),
    )
    return PhysicalPlan(
        alternative=alternative.name,
        names=alternative.names,
        order=order,
        position=position,
        logical=alternative.plan,
        choice=choice,
        config=config,
        facts=facts,
        memory=memory,
        runtime=time,
    )


def _physical(plan: Workload, choice: Choice) -> Workload:
    """The plan with the physical fields filled in (structure and sharing unchanged)."""

    def fill(node: Plan) -> Plan:
        if isinstance(node, Join):
            return replace(node, strategy=choice.join)
        if isinstance(node, Persist):
            return replace(node, level=choice.persist)
        if isinstance(node, Infer):
            return replace(node, batch_size=choice.batch_size)
        return node

    physical = transform_up(plan, fill)
    assert isinstance(physical, Workload)
    return physical


_OVERRIDES = ("inference", "placement", "join", "persist", "executor_cores", "partitions")
_OVERRIDE_ORDER = (*_OVERRIDES, "batch_size")


def _overrides(query: TransferQuery) -> tuple[str, ...]:
    options = query.options
    return tuple(
        f"{name} = {getattr(options, name)!r}"
        for name in _OVERRIDE_ORDER
        if getattr(options, name) is not None
    )


def _override_error(
    cls: type[VistaError], query: TransferQuery, description: str, needed: int | None
) -> VistaError:
    """An error pointing at the first override given (in the text), or at the statement."""
    options = query.options
    given = [name for name in _OVERRIDE_ORDER if getattr(options, name) is not None]
    origins = [options.origins[name] for name in given if name in options.origins]
    origin = min(origins, key=lambda o: o.start) if origins else None
    base = VistaError.at(description, query.sql, origin)
    if cls is ResourceError:
        error: VistaError = ResourceError(str(base), needed_bytes=needed)
    else:
        error = cls(str(base))
    error.errors = base.errors
    return error


def _refuse(
    query: TransferQuery,
    alternatives: Sequence[AlternativeLike],
    catalog: Catalog,
    stats: DataStats,
    resources: Resources,
    consts: CostConstants,
    chosen: PhysicalPlan,
    analyzed: list[tuple[int, AlternativeLike, PlanFacts]],
) -> None:
    """Raise the ResourceError for a statement where nothing fits."""
    options = query.options
    overrides = _overrides(query)
    has = format_bytes(resources.memory_bytes)
    if overrides:
        free = replace(
            options,
            **{name: None for name in _OVERRIDE_ORDER},  # type: ignore[arg-type]
        )
        every = [
            (i, a, analyze(a.plan, catalog, stats, consts)) for i, a in enumerate(alternatives)
        ]
        unconstrained = min(
            (
                min(_search(a, i, f, free, resources, consts), key=PhysicalPlan.key)
                for i, a, f in every
            ),
            key=PhysicalPlan.key,
        )
        if unconstrained.fit.status != "does_not_fit":
            raise _override_error(
                ResourceError,
                query,
                f"WITH {', '.join(overrides)} cannot fit:"
                f" {chosen.fit.describe().removeprefix('does not fit: ')};"
                f" without it, {unconstrained.alternative} fits"
                f" ({_summary(unconstrained)})",
                None,
            )
    needed, plan = minimum_memory_for(analyzed, options, resources, consts)
    if plan is None:
        raise _override_error(
            ResourceError,
            query,
            f"no plan fits on this machine at any memory size: {chosen.fit.describe()}",
            None,
        )
    raise _override_error(
        ResourceError,
        query,
        f"no plan fits in {has} per node: the best, {chosen.alternative}, {chosen.fit.describe()};"
        f" {plan.alternative} would fit with"
        f" {format_byte_pair(needed, resources.memory_bytes)[0]} per node"
        f" ({_tasks(plan.choice.executor_cores)}, batch {plan.choice.batch_size})",
        needed,
    )


def _tasks(count: int) -> str:
    return f"{count} concurrent task{'' if count == 1 else 's'}"


def _summary(plan: PhysicalPlan) -> str:
    seconds = plan.time.value
    time = "?" if seconds is None else format_seconds(seconds)
    peak = plan.peak.value
    return f"{time}, {'?' if peak is None else format_bytes(peak)}"
