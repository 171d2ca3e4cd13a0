"""The memory of one worker node, region by region, and whether a plan fits in it.

A node runs (in local mode, all in one machine):

- **OS and other processes** (``os_reserve``): kept free for the kernel, page cache, other
  processes and estimation error.
- **The driver's Python process** (``driver_python``): the user's interpreter running vista_sql
  and PySpark's py4j client. In local mode it shares the node.
- **The JVM heap** (``jvm_heap``, -Xmx = spark.driver.memory in local mode, where the driver IS
  the executor and ``local[N]`` runs N task slots in that one JVM; spark.executor.memory on a
  cluster). Spark's UnifiedMemoryManager splits it:
  - ``spark_reserved``: 300 MiB for Spark's own objects;
  - ``user_memory``: (heap - 300 MiB) x (1 - spark.memory.fraction), objects Spark does not track:
    the columnar batches the DataFrame cache builds before storing them
    (spark.sql.inMemoryColumnarStorage.batchSize rows per task), MLlib's per-task gradient
    aggregators and, on the driver, the rows a broadcast collects and the L-BFGS history;
  - ``unified_memory``: (heap - 300 MiB) x spark.memory.fraction, shared by storage (cached
    blocks, broadcast relations) and execution (shuffle and sort buffers). Cached blocks and
    shuffles spill to disk when it is full (MEMORY_AND_DISK), which costs time, not a crash; a
    broadcast relation cannot spill while tasks probe it.
- **JVM native memory** (``jvm_overhead``): metaspace, code cache, thread stacks, GC structures,
  netty buffers, sized as Spark sizes it (spark.executor.memoryOverhead: max(384 MiB, 10% heap)).
- **Arrow buffers** (``arrow_buffers``): the JVM's off-heap Arrow vectors of the batches sent to
  and read back from Python workers (maxRecordsPerBatch rows each way, per task).
- **The PySpark daemon** and **Python workers** (``python_workers``): one worker process per
  concurrently running task (spark.python.worker.reuse keeps them alive between tasks), each with
  the interpreter and TensorFlow runtime, the partial CNN's parameters, TensorFlow's activations
  at the batch size (x a workspace factor), the decoded image batch, and the Arrow/pandas copies
  of its input and output batches. This memory is outside the JVM heap, so no Spark setting bounds
  it: a heap sized "per the Spark guides" to most of the machine leaves too little for the
  TensorFlow processes, which is what crashed the VISTA paper's Naive runs.

A plan **fits** when every region stays within its limit: the sum of the node's regions within the
node's memory, user memory within its share of the heap, pinned storage within unified memory,
and, with a GPU, the workers' models and activations within GPU memory. The heap is itself chosen
here: large enough for what the plan keeps in it (with headroom for the garbage collector), and
no larger than what the Python workers leave.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from vista_sql.cost_model.config import Choice
from vista_sql.cost_model.constants import (
    MIN_HEAP_OVER_RESERVED,
    PARQUET_BATCH_ROWS,
    PARQUET_MIN_GROUP_ROWS,
    PARTITION_SKEW,
    STORE_ROW_GROUP_BYTES,
    CostConstants,
)
from vista_sql.cost_model.estimate import (
    ABSENT,
    ZERO,
    Estimate,
    largest,
    total,
)
from vista_sql.cost_model.facts import InferFacts, NodeFacts, PlanFacts
from vista_sql.cost_model.resources import Resources
from vista_sql.logical import models
from vista_sql.logical.plan import (
    Assemble,
    Decode,
    Infer,
    Join,
    Persist,
    StoredScan,
    TableScan,
    Train,
)
from vista_sql.units import DOUBLE_BYTES, MiB, format_byte_pair, format_bytes

FitStatus = Literal["fits", "unknown", "does_not_fit"]


@dataclass(frozen=True, slots=True)
class Region:
    """One named region of a node's memory at the plan's peak."""

    name: str
    need: Estimate
    limit: float | None
    """Its own bound (user memory, unified memory, GPU, the node); None: bounded by its parent."""
    parent: str | None
    detail: str

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "need": self.need.to_json(),
            "limit": self.limit,
            "parent": self.parent,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Fit:
    """Whether a plan fits; when not, the region that overflows and by how much."""

    status: FitStatus
    region: str | None = None
    needed: float | None = None
    available: float | None = None
    detail: str = ""

    def describe(self) -> str:
        if self.status == "fits":
            return "fits"
        if self.status == "unknown":
            return f"may not fit: {self.detail}"
        assert self.needed is not None and self.available is not None and self.region
        needs, has = format_byte_pair(self.needed, self.available)
        return (
            f"does not fit: needs {needs}, has {has} ({self.region.replace('_', ' ')}"
            f"{': ' + self.detail if self.detail else ''})"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "region": self.region,
            "needed": self.needed,
            "available": self.available,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class MemoryModel:
    """A plan's memory on its busiest node under one choice, and the heap chosen for it."""

    regions: tuple[Region, ...]
    fit: Fit
    heap_bytes: int
    driver_heap_bytes: int
    peak: Estimate
    """Expected resident memory of the whole process tree on the node at the peak (no OS
    reserve): the regions outside the JVM, and the JVM as ``jvm_resident`` expects it, not the
    heap and native allowance reserved for it."""
    peak_known: float
    """What the node reserves for the plan (known parts, no OS reserve): the heap and Spark's
    native allowance in full; the optimizer compares it when ``peak`` is unknown, and sets the
    executor's memory overhead from it."""
    storage_capacity: float
    """Unified memory left for cached blocks once broadcasts are pinned."""
    cache_peak: Estimate
    """Largest set of cached bytes (persisted layers and MLlib's training blocks) at once."""
    spill_fraction: Estimate
    """Share of cached bytes that Spark keeps on disk because storage memory is full."""
    spills: bool
    """Whether anything spills to disk (cached blocks or shuffle buffers), or may (unknown)."""
    task_memory: tuple[tuple[int, Estimate], ...]
    """Per operator (by its number): memory one task holds while computing it."""
    broadcast_bytes: Estimate
    """Bytes of the structured table a broadcast collects (for spark.driver.maxResultSize)."""

    def region(self, name: str) -> Region:
        return next(r for r in self.regions if r.name == name)

    def task_memory_of(self, number: int) -> Estimate:
        return next((m for n, m in self.task_memory if n == number), ABSENT)


def os_reserve(memory: float, consts: CostConstants) -> float:
    """Memory left to the OS: a fraction with a floor (grows slower than memory: monotone fit)."""
    return min(memory, max(consts.os_reserve_min_bytes, consts.os_reserve_fraction * memory))


def jvm_overhead(heap: float, consts: CostConstants) -> float:
    """Spark's allowance for the JVM's native memory beyond the heap."""
    return max(consts.jvm_overhead_min_bytes, consts.jvm_overhead_factor * heap)


def jvm_resident(heap: float, need: Needs, storage_capacity: float, consts: CostConstants) -> float:
    """The JVM's expected resident memory at the peak, which is less than what is reserved for
    it (heap + Spark's native allowance): a measured base (native memory and the pages it
    touches whatever the heap) plus the heap it makes resident. That is a measured share of -Xmx
    when little is kept in the heap; when the plan keeps more (user memory, pinned and cached
    blocks held in memory), what it keeps and the free share G1 sizes the heap to keep beside it
    (MinHeapFreeRatio); never more than the heap."""
    held = _held(need.cache_peak, storage_capacity).lower_bound
    in_use = need.user_need.lower_bound + need.pinned.lower_bound + held
    sized = in_use / (1 - consts.jvm_min_heap_free_ratio)
    touched = min(heap, max(consts.jvm_heap_touched_fraction * heap, sized))
    return consts.jvm_resident_base_bytes + touched


def max_heap(available: float, consts: CostConstants) -> float:
    """The largest heap whose JVM (heap + native overhead) fits in ``available`` bytes."""
    switch = consts.jvm_overhead_min_bytes / consts.jvm_overhead_factor
    proportional = available / (1 + consts.jvm_overhead_factor)
    if proportional >= switch:
        return proportional
    return max(0.0, min(available - consts.jvm_overhead_min_bytes, switch))


def task_rows(rows: Estimate, choice: Choice) -> float | None:
    """The most rows one inference task sees (its partition), None when the rows are unknown."""
    if not rows.known:
        return None
    return math.ceil(rows.lower_bound / choice.partitions * PARTITION_SKEW)


def worker_bytes(
    infer: InferFacts,
    choice: Choice,
    consts: CostConstants,
    gpu: bool,
    rows: float | None = None,
) -> Estimate:
    """One Python worker's resident memory while running this inference.

    From the catalog's measured peak RSS (inferring from the image to the top output) when there
    is one, moved to this batch size by the activation bytes; else from its parts: the TF runtime
    base, the partial model's parameters, the activations at the batch size. Plus the batch
    buffers the measurement does not include: the decoded images (uint8 and float32) and the
    Arrow/pandas copies of maxRecordsPerBatch rows in and out.

    ``rows``: the most rows the task sees (``task_rows``). The worker slices the Arrow batches of
    its partition into model batches, so neither holds more rows than the partition has: 120
    images in 4 partitions run VGG16 in batches of at most ~45 whatever the batch size.
    """
    batch = choice.batch_size if rows is None else max(1, min(choice.batch_size, int(rows)))
    per_image = infer.activation_bytes * consts.tf_workspace_factor
    decoded = Estimate.exact(batch * infer.input_pixels * 3 * 5 if infer.decodes else 0)
    object_bytes = consts.python_object_bytes if infer.decodes else 0
    arrow_rows = choice.arrow_rows if rows is None else max(1, min(choice.arrow_rows, int(rows)))
    arrow_in = (infer.input_bytes + object_bytes) * (2 * arrow_rows)
    arrow_out = infer.output_bytes * (2 * arrow_rows)
    buffers = decoded + arrow_in + arrow_out
    correction = consts.python_worker_correction
    if gpu:
        return (consts.python_worker_base_bytes + buffers).inexact_() * correction
    measured_batch = infer.measured_batch
    usable = batch == measured_batch or per_image.known
    if infer.measured_rss.known and measured_batch is not None and usable:
        moved = infer.measured_rss.lower_bound + per_image.lower_bound * (batch - measured_batch)
        worker = Estimate.inexact(max(moved, consts.python_worker_base_bytes)) + buffers
        return worker * correction
    params = infer.param_bytes * consts.param_copies
    worker = consts.python_worker_base_bytes + params + per_image * batch + buffers
    return worker.inexact_() * correction


def gpu_bytes(infer: InferFacts, choice: Choice, consts: CostConstants) -> Estimate:
    """One worker's GPU memory: CUDA context, the model, activations at the batch size."""
    activations = infer.activation_bytes * (choice.batch_size * consts.tf_workspace_factor)
    return consts.gpu_runtime_bytes + infer.param_bytes * consts.param_copies + activations


def gpu_fits(facts: PlanFacts, choice: Choice, resources: Resources, consts: CostConstants) -> bool:
    """Whether the concurrent workers' models and activations fit in GPU memory (True without a
    GPU, and when unknown: only what is known to overflow is refused)."""
    if resources.gpu_memory_bytes is None:
        return True
    need = _gpu_worker_bytes(facts, choice, consts)
    return need.lower_bound * choice.executor_cores <= resources.gpu_memory_bytes


def stored_bytes(facts: NodeFacts, level: str, consts: CostConstants) -> Estimate:
    """Bytes a persisted DataFrame occupies in memory at ``level`` (0 on disk only)."""
    if level == "disk":
        return ZERO
    if level == "serialized":
        return facts.bytes * consts.serialized_compression
    return facts.bytes


def branch_table_bytes(assembled: NodeFacts, consts: CostConstants) -> Estimate:
    """The executor's cache of one branch's assembled table (PySpark MEMORY_AND_DISK: serialized
    columnar batches, lz4-compressed since the configuration sets spark.rdd.compress)."""
    return assembled.bytes * consts.serialized_compression


def training_blocks(facts: NodeFacts) -> Estimate:
    """MLlib's persisted training data (MEMORY_AND_DISK): dense double blocks for linear models,
    binned integer features (TreePoint) for trees, of the training rows."""
    model = facts.model
    if model is None:
        return ZERO
    per_value = models.model(model.name).training_value_bytes
    return facts.rows * ((model.values + 1) * per_value)


def known_sum(parts: list[Estimate]) -> float:
    """What parts certainly add up to: the sum of the known ones."""
    return sum(part.lower_bound for part in parts)


@dataclass(frozen=True, slots=True)
class Needs:
    """What a plan under one choice needs on its busiest node, whatever memory it has."""

    task_memory: dict[int, Estimate]
    per_worker: Estimate
    """Python memory of one task: its pipeline's workers together."""
    chained: int
    """Python workers one task runs at once: the longest pipeline of inference operators."""
    workers: Estimate
    daemon: Estimate
    arrow: Estimate
    driver_python: Estimate
    builders: Estimate
    aggregators: Estimate
    table: Estimate
    """Bytes of the structured table a broadcast collects (zero without a broadcast)."""
    pinned: Estimate
    driver_user: Estimate
    user_need: Estimate
    user_detail: str
    cache_peak: Estimate
    shuffle_task: Estimate
    """Bytes of one task's hash map in a shuffled hash join."""
    hard: float
    """The smallest heap that holds what must be in it (with GC headroom)."""
    want: float
    """The heap that also holds every cached block and shuffle buffer without spilling."""
    has_python: bool

    @property
    def outside(self) -> list[Estimate]:
        """Node memory outside the JVM."""
        return [self.driver_python, self.daemon, self.workers, self.arrow]


def needs(facts: PlanFacts, choice: Choice, resources: Resources, consts: CostConstants) -> Needs:
    """Every region's need for this plan and choice (see the module docstring), region by region;
    ``task_memory`` collects each operator's memory per task on the way."""
    task_memory: dict[int, Estimate] = {}
    python = _python_needs(facts, choice, resources, consts, task_memory)
    user = _user_needs(facts, choice, resources, consts, task_memory)
    unified = _unified_needs(facts, choice, resources, consts, user.relation, task_memory)
    for f in facts.nodes:
        task_memory.setdefault(f.number, _small_task_memory(f, choice))
    hard, want = _heap_needs(choice, consts, user.need, unified)
    return Needs(
        task_memory=task_memory,
        per_worker=python.per_worker,
        chained=python.chained,
        workers=python.workers,
        daemon=python.daemon,
        arrow=python.arrow,
        driver_python=python.driver_python,
        builders=user.builders,
        aggregators=user.aggregators,
        table=user.table,
        pinned=unified.pinned,
        driver_user=user.driver,
        user_need=user.need,
        user_detail=user.detail,
        cache_peak=unified.cache_peak,
        shuffle_task=unified.shuffle_task,
        hard=hard,
        want=want,
        has_python=python.has_python,
    )


@dataclass(frozen=True, slots=True)
class _PythonNeeds:
    per_worker: Estimate
    chained: int
    workers: Estimate
    daemon: Estimate
    arrow: Estimate
    driver_python: Estimate
    has_python: bool


def _python_needs(
    facts: PlanFacts,
    choice: Choice,
    resources: Resources,
    consts: CostConstants,
    task_memory: dict[int, Estimate],
) -> _PythonNeeds:
    """Python workers: one per inference operator of a task's pipeline (``facts.pipelines``), per
    task slot (a reused worker keeps only its latest model); the daemon that forks them; the
    Arrow batches between them and the JVM; and, in local mode, the driver's interpreter."""
    slots = choice.executor_cores
    gpu = resources.gpu_memory_bytes is not None
    infers = [(f, f.infer) for f in facts.nodes if f.infer is not None and f.passes > 0]
    for f, infer in infers:
        task_memory[f.number] = worker_bytes(infer, choice, consts, gpu, task_rows(f.rows, choice))
    chains = facts.pipelines
    per_worker = largest(total([task_memory[f.number] for f in chain]) for chain in chains)
    arrow = largest(
        total([f.infer.input_bytes + f.infer.output_bytes for f in chain if f.infer is not None])
        * (choice.arrow_rows * slots)
        for chain in chains
    )
    return _PythonNeeds(
        per_worker=per_worker,
        chained=max((len(chain) for chain in chains), default=0),
        workers=per_worker * slots if infers else ZERO,
        daemon=Estimate.inexact(consts.python_daemon_bytes) if infers else ZERO,
        arrow=arrow,
        driver_python=Estimate.inexact(consts.driver_python_bytes)
        if resources.nodes == 1
        else ZERO,
        has_python=bool(infers),
    )


@dataclass(frozen=True, slots=True)
class _UserNeeds:
    builders: Estimate
    aggregators: Estimate
    table: Estimate
    """Bytes of the structured table a broadcast collects (zero without a broadcast)."""
    relation: Estimate
    """The broadcast hash relation built from ``table``."""
    driver: Estimate
    need: Estimate
    detail: str


def _user_needs(
    facts: PlanFacts,
    choice: Choice,
    resources: Resources,
    consts: CostConstants,
    task_memory: dict[int, Estimate],
) -> _UserNeeds:
    """User memory: heap objects Spark does not track, per task (columnar batches under
    construction, MLlib's aggregators) and, in local mode, on the driver (broadcast rows,
    L-BFGS history)."""
    slots = choice.executor_cores
    for p in facts.kind(Persist):
        task_memory[p.number] = p.row_bytes * (2 * choice.cache_rows)
    # Columnar batches under construction: of every Persist and of the executor's branch tables.
    builders = largest(
        f.row_bytes * (2 * choice.cache_rows) for f in (*facts.kind(Persist), *facts.kind(Assemble))
    )
    trains = facts.kind(Train)
    for t in trains:
        task_memory[t.number] = _aggregator_bytes(t, consts)
    aggregators = largest(task_memory[t.number] for t in trains)
    joins = facts.kind(Join)
    broadcast = choice.join == "broadcast" and bool(joins)
    table = largest(_right_side(facts, j).bytes for j in joins) if broadcast else ZERO
    lbfgs = largest(_lbfgs_bytes(t, consts) for t in trains)
    driver_user = table * (consts.broadcast_driver_copies - 1) + lbfgs
    executor_user = (builders + aggregators) * slots
    per_task = (
        f"per task x {slots}: cache batch builder {builders.format('bytes')}, MLlib"
        f" aggregator {aggregators.format('bytes')}; "
    )
    if resources.nodes == 1:
        need = executor_user + driver_user
        detail = (
            f"{per_task}driver: broadcast rows"
            f" {(table * (consts.broadcast_driver_copies - 1)).format('bytes')},"
            f" L-BFGS {lbfgs.format('bytes')}"
        )
    else:
        need = executor_user + table * (consts.broadcast_executor_copies - 1)
        detail = f"{per_task}broadcast pieces"
    return _UserNeeds(
        builders=builders,
        aggregators=aggregators,
        table=table,
        relation=table * consts.hash_relation_factor,
        driver=driver_user,
        need=need,
        detail=detail,
    )


@dataclass(frozen=True, slots=True)
class _UnifiedNeeds:
    relation: Estimate
    """Pinned broadcast relations alone."""
    hash_maps: Estimate
    """Pinned hash maps of shuffled hash joins, all slots."""
    pinned: Estimate
    cache_peak: Estimate
    shuffle_task: Estimate
    """Bytes of one task's hash map in a shuffled hash join."""


def _unified_needs(
    facts: PlanFacts,
    choice: Choice,
    resources: Resources,
    consts: CostConstants,
    relation: Estimate,
    task_memory: dict[int, Estimate],
) -> _UnifiedNeeds:
    """Unified memory: pinned broadcast relations and hash maps; cached blocks and shuffle
    buffers, which spill."""
    slots = choice.executor_cores
    joins = facts.kind(Join)
    broadcast = choice.join == "broadcast" and bool(joins)
    cache_peak = _cache_peak(facts, choice, consts, resources.nodes)
    # A shuffled hash join (physical/ hints shuffle_hash) builds a hash map of its partition of
    # the structured side in execution memory; it cannot spill, so it is pinned too.
    for j in joins:
        task_memory[j.number] = (
            relation if broadcast else _hash_task_bytes(facts, j, choice, consts)
        )
    shuffle_task = largest(_hash_task_bytes(facts, j, choice, consts) for j in joins)
    hash_maps = shuffle_task * slots if joins and not broadcast else ZERO
    return _UnifiedNeeds(
        relation=relation,
        hash_maps=hash_maps,
        pinned=relation + hash_maps,
        cache_peak=cache_peak,
        shuffle_task=shuffle_task,
    )


def _heap_needs(
    choice: Choice, consts: CostConstants, user_need: Estimate, unified: _UnifiedNeeds
) -> tuple[float, float]:
    """The heap: what must fit (hard), what the plan would like (want)."""
    fraction = choice.memory_fraction
    reserved = consts.spark_reserved_bytes
    headroom = consts.heap_headroom * consts.heap_need_correction
    # A broadcast relation must fit comfortably: in a fraction of unified memory, as Spark's
    # size threshold intends, so that caching and execution still have room beside it.
    comfortable = unified.relation.lower_bound / (fraction * consts.broadcast_fraction_of_storage)
    comfortable += unified.hash_maps.lower_bound / fraction
    hard = reserved + headroom * max(user_need.lower_bound / (1 - fraction), comfortable)
    hard = max(hard, MIN_HEAP_OVER_RESERVED * reserved)
    wanted_unified = known_sum([unified.pinned, unified.cache_peak])
    want = max(
        consts.default_heap_bytes,
        reserved
        + headroom * max(user_need.lower_bound / (1 - fraction), wanted_unified / fraction),
    )
    return hard, want


def _per_task(need: Needs) -> str:
    text = need.per_worker.format("bytes")
    return f"{text} ({need.chained} workers in a pipeline)" if need.chained > 1 else text


def node_memory_for(heap: float, need: Needs, consts: CostConstants) -> float:
    """The node memory a heap of ``heap`` bytes needs besides the OS reserve (known parts)."""
    return known_sum(need.outside) + heap + jvm_overhead(heap, consts)


def memory_for_available(parts: float, consts: CostConstants) -> float:
    """The least node memory that leaves ``parts`` bytes once the OS reserve is taken:
    ``M - max(min_reserve, fraction x M) >= parts``."""
    return max(parts + consts.os_reserve_min_bytes, parts / (1 - consts.os_reserve_fraction))


def minimum_memory(
    need: Needs, choice: Choice, resources: Resources, consts: CostConstants
) -> float:
    """The least node memory under which this choice fits (inf when no memory would: GPU).

    The heap is then its hard need; memory must cover the node's parts plus the OS reserve,
    ``M - max(min_reserve, fraction x M) >= parts``.
    """
    heap = math.ceil(need.hard / MiB) * MiB
    memory = memory_for_available(node_memory_for(heap, need, consts), consts)
    if resources.nodes > 1:
        driver_heap, _, _ = _driver(need.driver_user, math.inf, 0.0, consts, choice.memory_fraction)
        driver = consts.driver_python_bytes + driver_heap + jvm_overhead(driver_heap, consts)
        memory = max(
            memory, driver + consts.os_reserve_min_bytes, driver / (1 - consts.os_reserve_fraction)
        )
    return memory


def memory_model(
    facts: PlanFacts, choice: Choice, resources: Resources, consts: CostConstants
) -> MemoryModel:
    """The regions of the busiest node's memory for this plan and choice, and the fit."""
    need = needs(facts, choice, resources, consts)
    memory = float(resources.memory_bytes)
    reserve = os_reserve(memory, consts)
    cap = max_heap(memory - reserve - known_sum(need.outside), consts)
    heap = max(math.floor(min(need.want, cap) / MiB), math.ceil(need.hard / MiB)) * MiB
    node_parts = [*need.outside, Estimate.inexact(heap + jvm_overhead(heap, consts))]
    node_need = total(node_parts)
    node_lower = known_sum(node_parts) + reserve
    unified_limit = (heap - consts.spark_reserved_bytes) * choice.memory_fraction
    storage_capacity = max(0.0, unified_limit - need.pinned.lower_bound)
    spill = _spill(need.cache_peak, storage_capacity)

    resident_jvm = jvm_resident(heap, need, storage_capacity, consts)
    resident = total([*need.outside, Estimate.inexact(resident_jvm)])
    regions = _node_regions(
        need,
        choice,
        resources,
        consts,
        heap,
        cap,
        reserve,
        node_need,
        storage_capacity,
        spill,
        resident_jvm,
    )
    fit = _node_fit(need, choice, consts, heap, memory, node_need, node_lower)
    driver_heap = heap
    if resources.nodes > 1:
        driver_heap, driver_region, driver_fit = _driver(
            need.driver_user, memory, reserve, consts, choice.memory_fraction
        )
        regions.append(driver_region)
        if driver_fit is not None and fit.status != "does_not_fit":
            fit = driver_fit
    if resources.gpu_memory_bytes is not None and need.has_python:
        gpu_region, fit = _gpu(facts, choice, resources, consts, fit)
        regions.append(gpu_region)
    return MemoryModel(
        regions=tuple(regions),
        fit=fit,
        heap_bytes=heap,
        driver_heap_bytes=driver_heap,
        peak=resident.inexact_() if resident.known else ABSENT,
        peak_known=node_lower - reserve,
        storage_capacity=storage_capacity,
        cache_peak=need.cache_peak,
        spill_fraction=spill,
        spills=spill.lower_bound > 0 or not spill.known,
        task_memory=tuple(sorted(need.task_memory.items())),
        broadcast_bytes=need.table,
    )


def _node_regions(
    need: Needs,
    choice: Choice,
    resources: Resources,
    consts: CostConstants,
    heap: float,
    cap: float,
    reserve: float,
    node_need: Estimate,
    storage_capacity: float,
    spill: Estimate,
    resident_jvm: float,
) -> list[Region]:
    """The node's regions, as EXPLAIN prints them (see the module docstring)."""
    slots = choice.executor_cores
    reserved = consts.spark_reserved_bytes
    fraction = choice.memory_fraction
    return [
        Region(
            "os_reserve",
            Estimate.inexact(reserve),
            None,
            "node",
            f"{consts.os_reserve_fraction:.0%} of memory, at least"
            f" {format_bytes(consts.os_reserve_min_bytes)}",
        ),
        Region("driver_python", need.driver_python, None, "node", "vista_sql and the py4j client"),
        Region(
            "jvm_heap",
            Estimate.inexact(heap),
            None,
            "node",
            f"needs {format_bytes(need.hard)}, wants {format_bytes(need.want)},"
            f" at most {format_bytes(cap)}",
        ),
        Region("spark_reserved", Estimate.exact(reserved), None, "jvm_heap", "Spark's own objects"),
        Region(
            "user_memory",
            need.user_need,
            (heap - reserved) * (1 - fraction),
            "jvm_heap",
            need.user_detail,
        ),
        Region(
            "unified_memory",
            need.pinned + _held(need.cache_peak, storage_capacity),
            (heap - reserved) * fraction,
            "jvm_heap",
            f"{'broadcast relation' if need.table.lower_bound else 'join hash maps'}"
            f" {need.pinned.format('bytes')} (pinned); cached {need.cache_peak.format('bytes')}"
            f" ({_percent(spill)} spills to disk)",
        ),
        Region(
            "jvm_overhead",
            Estimate.inexact(jvm_overhead(heap, consts)),
            None,
            "node",
            "metaspace, code cache, threads, GC, netty: max(384 MiB, 10% of heap), reserved;"
            f" the JVM's expected resident memory is"
            f" {format_bytes(resident_jvm)}",
        ),
        Region(
            "arrow_buffers",
            need.arrow,
            None,
            "node",
            f"off-heap Arrow batches of {choice.arrow_rows} rows in and out, per task x {slots}",
        ),
        Region(
            "python_daemon", need.daemon, None, "node", "pyspark.daemon, which forks the workers"
        ),
        Region(
            "python_workers",
            need.workers,
            None,
            "node",
            f"{slots} x {_per_task(need)}: TF runtime, partial model, batch"
            f" {choice.batch_size}, Arrow batches"
            if need.has_python
            else "no Python stage",
        ),
        Region(
            "node", node_need + reserve, float(resources.memory_bytes), None, resources.describe()
        ),
    ]


def _node_fit(
    need: Needs,
    choice: Choice,
    consts: CostConstants,
    heap: float,
    memory: float,
    node_need: Estimate,
    node_lower: float,
) -> Fit:
    """Whether the node's regions stay within their limits: the node, then user memory, then
    pinned unified memory; unknown when a statistic is missing."""
    user_limit = (heap - consts.spark_reserved_bytes) * (1 - choice.memory_fraction)
    unified_limit = (heap - consts.spark_reserved_bytes) * choice.memory_fraction
    if node_lower > memory:
        workers_dominate = need.workers.lower_bound >= heap
        return Fit(
            "does_not_fit",
            "python_workers" if workers_dominate else "jvm_heap",
            node_lower,
            memory,
            f"{choice.executor_cores} x {_per_task(need)}"
            if workers_dominate
            else f"heap needs {format_bytes(need.hard)}",
        )
    if need.user_need.lower_bound > user_limit:
        return Fit("does_not_fit", "user_memory", need.user_need.lower_bound, user_limit)
    if need.pinned.lower_bound > unified_limit:
        return Fit("does_not_fit", "unified_memory", need.pinned.lower_bound, unified_limit)
    if not node_need.known or not need.user_need.known or not need.pinned.known:
        return Fit("unknown", detail="a statistic the memory model needs is not measured")
    return Fit("fits")


def _gpu_worker_bytes(facts: PlanFacts, choice: Choice, consts: CostConstants) -> Estimate:
    """GPU memory of the largest worker: its model and its activations at the batch size."""
    return largest(
        gpu_bytes(f.infer, choice, consts)
        for f in facts.nodes
        if f.infer is not None and f.passes > 0
    )


def _gpu(
    facts: PlanFacts, choice: Choice, resources: Resources, consts: CostConstants, fit: Fit
) -> tuple[Region, Fit]:
    """The GPU region (every task slot's worker on one GPU) and the fit with it."""
    slots = choice.executor_cores
    per_gpu = _gpu_worker_bytes(facts, choice, consts)
    gpu_need = per_gpu * slots
    limit = float(resources.gpu_memory_bytes or 0)
    region = Region(
        "gpu", gpu_need, limit, None, f"{slots} x {per_gpu.format('bytes')}: model, batch"
    )
    if gpu_need.lower_bound > limit and fit.status != "does_not_fit":
        fit = Fit("does_not_fit", "gpu", gpu_need.lower_bound, limit, f"{slots} TF processes")
    elif not gpu_need.known and fit.status == "fits":
        fit = Fit("unknown", "gpu", None, limit, "GPU memory needs statistics not measured")
    return region, fit


def _driver(
    need: Estimate, memory: float, reserve: float, consts: CostConstants, fraction: float
) -> tuple[int, Region, Fit | None]:
    """On a cluster the driver runs on its own machine (same memory assumed): its heap holds the
    broadcast build and the optimizer state."""
    reserved = consts.spark_reserved_bytes
    wanted = reserved + consts.heap_headroom * need.lower_bound / (1 - fraction)
    heap = math.ceil(max(consts.default_heap_bytes, wanted) / MiB) * MiB
    used = consts.driver_python_bytes + heap + jvm_overhead(heap, consts)
    region = Region(
        "driver",
        Estimate.inexact(used) if need.known else ABSENT,
        memory - reserve,
        None,
        f"driver machine: heap {format_bytes(heap)} for broadcast build and L-BFGS"
        f" ({need.format('bytes')}), Python {format_bytes(consts.driver_python_bytes)}",
    )
    fit = None
    if used + reserve > memory:
        fit = Fit("does_not_fit", "driver", used + reserve, memory, "")
    return heap, region, fit


def _held(want: Estimate, room: float) -> Estimate:
    """What a spillable need actually holds in memory: at most the room it has."""
    if want.value is None:
        return ABSENT
    return Estimate(min(want.value, room), want.precision)


def _percent(estimate: Estimate) -> str:
    if estimate.value is None:
        return "?"
    return f"{estimate.precision.value}{estimate.value:.0%}"


def _spill(cache: Estimate, capacity: float) -> Estimate:
    if not cache.known:
        return ABSENT
    assert cache.value is not None
    if cache.value <= capacity or cache.value == 0:
        return Estimate.inexact(0)
    return Estimate.inexact((cache.value - capacity) / cache.value)


def _right_side(facts: PlanFacts, join: NodeFacts) -> NodeFacts:
    """The structured side of a join (the one that reads the table): the broadcast candidate."""
    assert isinstance(join.node, Join)
    right = facts.of(join.node.right)
    left = facts.of(join.node.left)
    if any(isinstance(n, TableScan) for n in join.node.left.walk()) and not any(
        isinstance(n, TableScan) for n in join.node.right.walk()
    ):
        return left
    return right


def _hash_task_bytes(
    facts: PlanFacts, join: NodeFacts, choice: Choice, consts: CostConstants
) -> Estimate:
    """One task's hash map in a shuffled hash join: its partition of the structured side."""
    return _right_side(facts, join).bytes * (consts.hash_relation_factor / choice.partitions)


def _aggregator_bytes(train: NodeFacts, consts: CostConstants) -> Estimate:
    model = train.model
    if model is None:
        return ZERO
    entry = models.model(model.name)
    if entry.fixed_aggregate_bytes is not None:
        return Estimate.inexact(entry.fixed_aggregate_bytes)
    sets = model.classes.map(entry.coefficient_sets)
    gradient = (model.values + 1) * sets * DOUBLE_BYTES
    return gradient * 2 + 2 * consts.mllib_block_bytes


def _lbfgs_bytes(train: NodeFacts, consts: CostConstants) -> Estimate:
    """The driver's optimizer state: 2m history vectors plus a few working vectors."""
    model = train.model
    if model is None:
        return ZERO
    sets = model.classes.map(models.model(model.name).coefficient_sets)
    return (model.values + 1) * sets * (DOUBLE_BYTES * (2 * consts.lbfgs_history + 6))


def _cache_peak(facts: PlanFacts, choice: Choice, consts: CostConstants, nodes: int) -> Estimate:
    """Largest cached set on one node over the branches, run in order: every persisted
    DataFrame alive from its first to its last using branch, plus the branch's cached table and
    MLlib's training blocks. (The executor runs the branches bottom layer first, the reverse of
    the workload's order; the intervals mirror, the peak is the same.)"""
    persists = facts.kind(Persist)
    trains = facts.kind(Train)
    branch_count = max((max(f.branches, default=0) for f in facts.nodes), default=0) + 1
    peak = ZERO
    for branch in range(branch_count):
        live = [
            stored_bytes(p, choice.persist, consts)
            for p in persists
            if p.branches and min(p.branches) <= branch <= max(p.branches)
        ]
        blocks = [training_blocks(t) for t in trains if branch in t.branches]
        tables = [
            branch_table_bytes(facts.of(t.node.child), consts)
            for t in trains
            if branch in t.branches and isinstance(t.node, Train)
        ]
        peak = largest([peak, total(live + blocks + tables) / nodes])
    return peak


def stored_batch_rows(row_bytes: float) -> float:
    """Rows the Parquet reader holds at once reading a store entry (see STORE_ROW_GROUP_BYTES)."""
    per_group = max(PARQUET_MIN_GROUP_ROWS, STORE_ROW_GROUP_BYTES / max(row_bytes, 1.0))
    return float(min(PARQUET_BATCH_ROWS, math.ceil(per_group)))


def _small_task_memory(f: NodeFacts, choice: Choice) -> Estimate:
    """Operators that stream rows hold about one batch of them per task."""
    if isinstance(f.node, TableScan):
        return f.row_bytes * PARQUET_BATCH_ROWS
    if isinstance(f.node, StoredScan):
        return f.row_bytes.map(lambda row: row * stored_batch_rows(row))
    if isinstance(f.node, Decode):
        return f.row_bytes * choice.batch_size
    if isinstance(f.node, Infer):
        return ABSENT
    return f.row_bytes * 2
