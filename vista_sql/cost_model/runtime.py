"""How long a plan takes under one choice: every operator's time, times how often it runs.

Each operator's work is counted in core-seconds from the constants (FLOPs over a measured FLOP
rate for inference and training, bytes over per-byte costs for decoding, Arrow transfer, joins,
shuffles and persistence), then spread over the task slots in waves: ``ceil(partitions / slots)``
rounds of ``work / partitions`` each, plus a fixed cost per task. Running more tasks than cores,
or more TensorFlow threads than a slot's share of the cores, slows each task down in proportion.

Fixed costs come beside the work, each a constant ``vista-sql calibrate`` measures: a job's
(analysis, planning, scheduling), a task's and a Python task's more (every inference task), an
MLlib iteration's jobs and a fit's setup, and MLlib's warm-up once a statement (the session's
first fit loads and compiles its code).

An operator runs once per pass (``facts.passes``): a plan that does not persist shared work pays
for it again on every read, including the second read of MLlib's training pass and the evaluation.
Spilled cached data is read from disk on every pass, and the training blocks MLlib spills are read
from disk on every iteration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vista_sql.cost_model.config import Choice
from vista_sql.cost_model.constants import CostConstants
from vista_sql.cost_model.estimate import ZERO, Estimate, total
from vista_sql.cost_model.facts import NodeFacts, PlanFacts
from vista_sql.cost_model.memory import (
    MemoryModel,
    branch_table_bytes,
    stored_bytes,
    training_blocks,
)
from vista_sql.cost_model.resources import Resources
from vista_sql.logical import models
from vista_sql.logical.plan import (
    Assemble,
    Decode,
    Evaluate,
    ImageScan,
    Infer,
    Join,
    Persist,
    Pool,
    StoredScan,
    TableScan,
    Train,
    UnionAll,
    Workload,
)
from vista_sql.logical.search import halving_rounds
from vista_sql.units import DOUBLE_BYTES

STEPS = (
    "startup",
    "scan",
    "decode",
    "inference",
    "join",
    "persist",
    "assemble",
    "train",
    "evaluate",
)
"""The stages EXPLAIN COST breaks a plan's time into, in pipeline order."""

SPARK_EVALUATION_JOBS = 4
"""physical/evaluate.py's ``spark_metrics``: the confusion counts, the per-score counts, their
running sum and the total, for more held-out rows than the driver counts itself."""


def evaluation_jobs(held_out: Estimate) -> int:
    """Jobs that compute one fit's metrics (``physical.evaluate.scored_metrics``): one that brings
    the held-out scores to the driver, up to ``DRIVER_ROWS`` rows, else Spark's four."""
    from vista_sql.physical.evaluate import DRIVER_ROWS

    rows = held_out.value
    return 1 if rows is not None and rows <= DRIVER_ROWS else SPARK_EVALUATION_JOBS


BRANCH_TABLE_COUNTS = 2
"""The executor counts the branch table when caching it and the training rows after the fit."""

BRANCH_CHECK_JOBS = 4
"""Jobs on each branch table besides its reads: the executor's check for bad images (a sorted
collect: its sample and the collect) and the training split's counts (``train.split_counts``,
its aggregate and its result); Spark's event log shows four per layer."""


@dataclass(frozen=True, slots=True)
class OperatorTime:
    """One operator's time: per computation, how many computations, and in all."""

    number: int
    step: str
    once: Estimate
    passes: float
    total: Estimate
    extra: Estimate
    """The part of ``total`` paid once however many passes (writing a persisted node)."""

    def share(self, readers: int, first: bool) -> Estimate:
        """What one of ``readers`` branches that each compute or read this operator pays: an
        equal part of the passes, and the once-only part for the first of them."""
        passes = self.once * (self.passes / max(1, readers))
        return passes + self.extra if first else passes


@dataclass(frozen=True, slots=True)
class RuntimeModel:
    """A plan's estimated time under one choice."""

    operators: tuple[OperatorTime, ...]
    startup: Estimate
    total: Estimate
    known_seconds: float
    """The part of the total that is known (the sum of the known operator times): what the
    optimizer compares when the total is unknown because a statistic is missing."""

    def by_step(self) -> tuple[tuple[str, Estimate], ...]:
        """Total seconds per stage, in pipeline order, stages with no operator left out."""
        sums: dict[str, list[Estimate]] = {"startup": [self.startup]}
        for op in self.operators:
            sums.setdefault(op.step, []).append(op.total)
        return tuple((step, total(sums[step])) for step in STEPS if step in sums)

    def of(self, number: int) -> OperatorTime | None:
        return next((op for op in self.operators if op.number == number), None)


@dataclass(frozen=True, slots=True)
class _Cluster:
    slots: int
    """Task slots in the cluster."""
    partitions: int
    slowdown: float
    """How much slower each JVM or Python task runs because slots outnumber cores."""
    consts: CostConstants

    @property
    def waves(self) -> int:
        return math.ceil(self.partitions / self.slots)

    def spread(self, work: Estimate) -> Estimate:
        """Elapsed seconds of ``work`` core-seconds split into the partitions, run in waves."""
        per_task = work / self.partitions
        return (
            per_task * (self.waves * self.slowdown) + self.waves * self.consts.task_overhead_seconds
        )


def runtime(
    facts: PlanFacts,
    choice: Choice,
    memory: MemoryModel,
    resources: Resources,
    consts: CostConstants,
) -> RuntimeModel:
    """Every operator's time and the plan's total for this choice."""
    slots = choice.executor_cores * resources.nodes
    cores = resources.cores * resources.nodes
    cluster = _Cluster(slots, choice.partitions, max(1.0, slots / cores), consts)
    operators = []
    for f in facts.nodes:
        if f.passes <= 0:
            continue
        step, once, extra = _operator(f, facts, choice, memory, resources, cluster)
        operators.append(
            OperatorTime(f.number, step, once, f.passes, once * f.passes + extra, extra)
        )
    startup = _startup(facts, consts)
    if any(isinstance(f.node, Train) and f.passes > 0 for f in facts.nodes):
        startup = startup + consts.mllib_warmup_seconds  # the session's first fit
    return RuntimeModel(
        operators=tuple(operators),
        startup=startup,
        total=startup + total(op.total for op in operators),
        known_seconds=startup.lower_bound + sum(op.total.lower_bound for op in operators),
    )


def _startup(facts: PlanFacts, consts: CostConstants) -> Estimate:
    """Python workers start once (reused after); each inference's model is built, and traced on
    its first batch, once per worker (all workers in parallel). Building materializes the
    variables the worker does not hold yet: the new segment's parameters. A pipeline of
    inferences (``facts.pipelines``: staged without persisting) starts a worker per stage."""
    infers = [f.infer for f in facts.nodes if f.infer is not None and f.passes > 0]
    if not infers:
        return ZERO
    held = (
        max(i.param_bytes.lower_bound for i in infers)
        if all(i.param_bytes.known for i in infers)
        else None
    )
    builds = (
        Estimate.inexact(
            consts.model_build_seconds + held * consts.model_build_seconds_per_param_byte
        )
        if held is not None
        else Estimate.absent()
    )
    traces = len(infers) * consts.tf_first_call_seconds
    chained = max((len(chain) for chain in facts.pipelines), default=1)
    return builds + traces + consts.python_worker_start_seconds * chained


def _operator(
    f: NodeFacts,
    facts: PlanFacts,
    choice: Choice,
    memory: MemoryModel,
    resources: Resources,
    cluster: _Cluster,
) -> tuple[str, Estimate, Estimate]:
    """(stage, seconds per computation, seconds paid once however many passes)."""
    consts = cluster.consts
    node = f.node
    if isinstance(node, ImageScan):
        # Read every file, then repartition by key (physical/): one shuffle of the image bytes.
        image = f.column("image")
        image_bytes = f.rows * image.bytes if image else Estimate.absent()
        per_byte = consts.scan_seconds_per_byte + consts.shuffle_seconds_per_byte
        work = f.rows * consts.file_open_seconds + image_bytes * per_byte
        return "scan", cluster.spread(work) + consts.stage_overhead_seconds, ZERO
    if isinstance(node, TableScan):
        per_byte = (
            consts.parquet_seconds_per_byte
            if facts.stats.table_format in ("parquet", "memory")
            else consts.text_seconds_per_byte
        )
        return "scan", cluster.spread(facts.stats.table_bytes * per_byte), ZERO
    if isinstance(node, StoredScan):
        # Decode the entry's Parquet files, then repartition the rows by key as the image scan
        # does (physical/ lowers both the same way): one shuffle of the in-memory rows.
        decode = Estimate.exact(node.file_bytes) * consts.parquet_seconds_per_byte
        shuffle = f.bytes * consts.shuffle_seconds_per_byte
        return "scan", cluster.spread(decode + shuffle) + consts.stage_overhead_seconds, ZERO
    if isinstance(node, UnionAll):
        # The stored rows and the inferred ones, hashed by key together (physical/): one
        # shuffle of every row.
        shuffle = f.bytes * consts.shuffle_seconds_per_byte
        return "scan", cluster.spread(shuffle) + consts.stage_overhead_seconds, ZERO
    if isinstance(node, Decode):
        child = facts.of(node.child).column("image")
        encoded = child.bytes if child else Estimate.absent()
        pixels = node.size[0] * node.size[1]
        per_image = (
            encoded * consts.decode_seconds_per_jpeg_byte
            + pixels * consts.resize_seconds_per_output_pixel
        )
        return "decode", cluster.spread(f.rows * per_image), ZERO
    if isinstance(node, Infer):
        return "inference", _inference(f, choice, resources, cluster), ZERO
    if isinstance(node, Pool):
        column = f.column(f"{node.layer}:features")
        values = column.values if column else Estimate.absent()
        return "inference", cluster.spread(f.rows * values * consts.pool_seconds_per_value), ZERO
    if isinstance(node, Join):
        return "join", _join(f, facts, choice, memory, cluster), ZERO
    if isinstance(node, Persist):
        write, read = _persist(f, choice, memory, consts)
        # ``passes`` counts reads; the write happens once, in a job of its own (physical/
        # materialises each Persist with a count).
        once = cluster.spread(write) + consts.job_overhead_seconds
        return "persist", cluster.spread(read), once
    if isinstance(node, Assemble):
        vector = f.column("features")
        values = vector.values if vector else Estimate.absent()
        # The executor caches each branch table as it materialises it (counted in the layer's
        # inference, as EXPLAIN ANALYZE measures it); training reads it back.
        spilled = (
            branch_table_bytes(f, consts) * memory.spill_fraction * consts.disk_seconds_per_byte
        )
        write = branch_table_bytes(f, consts) * (
            consts.cache_write_seconds_per_byte + consts.serialize_seconds_per_byte
        )
        assemble = cluster.spread(f.rows * values * consts.assemble_seconds_per_value)
        return "assemble", assemble, cluster.spread(write + spilled)
    if isinstance(node, Train):
        return "train", ZERO, _train(f, facts, memory, cluster)
    if isinstance(node, Evaluate):
        return "evaluate", _evaluate(f, facts, memory, cluster), ZERO
    return "startup", ZERO, ZERO


CALIBRATED_BATCH = 8
"""The batch the FLOP rates are measured at (``vista-sql calibrate``, physical.profile)."""


def batch_slowdown(batch: int, consts: CostConstants) -> float:
    """Per-image TensorFlow time at ``batch`` over the calibrated batch's: larger batches'
    activations outgrow the CPU caches (``tf_batch_slowdown_exponent``). Smaller batches pay only
    the per-call overhead (``tf_call_overhead_seconds``), counted apart."""
    return max(1.0, batch / CALIBRATED_BATCH) ** consts.tf_batch_slowdown_exponent


def _inference(f: NodeFacts, choice: Choice, resources: Resources, cluster: _Cluster) -> Estimate:
    """TensorFlow time per image at this thread count and batch, plus the Arrow round trip."""
    consts = cluster.consts
    infer = f.infer
    assert infer is not None
    arrow = (infer.input_bytes + infer.output_bytes) * consts.arrow_seconds_per_byte
    calls = consts.tf_call_overhead_seconds / choice.batch_size
    # every partition is a Python task: its Arrow stream, the function loaded, in waves
    python_tasks = cluster.waves * consts.python_task_overhead_seconds
    if resources.gpu_memory_bytes is not None:
        gpu_seconds = f.rows * infer.flops / (consts.gpu_flops * resources.nodes)
        return cluster.spread(f.rows * (arrow + calls)) + gpu_seconds + python_tasks
    threads = choice.tf_threads
    oversubscribed = max(1.0, choice.executor_cores * threads / resources.cores)
    efficiency = getattr(consts, f"tf_efficiency_{infer.cnn}", 1.0)  # measured CNNs only
    # Tasks inferring at once on a node share its memory bandwidth, caches and SMT siblings: k of
    # them together run k**e times as fast as one alone, each at k**(e - 1) of its solo rate.
    # Both exponents are the CNN's own where calibrated (VGG16's memory-bound layers scale worse).
    thread_exponent, concurrency_exponent = consts.scaling_exponents(infer.cnn)
    together = min(choice.executor_cores, resources.cores)
    contention = together ** (concurrency_exponent - 1)
    rate = consts.inference_flops_per_core * efficiency * threads**thread_exponent * contention
    tensorflow = infer.flops * (oversubscribed / rate) * batch_slowdown(choice.batch_size, consts)
    # ``spread`` already slows tasks for more slots than cores; TF's own threads are the rest.
    per_image = tensorflow * (1 / cluster.slowdown) + calls + arrow
    return cluster.spread(f.rows * per_image) + python_tasks


def _join(
    f: NodeFacts, facts: PlanFacts, choice: Choice, memory: MemoryModel, cluster: _Cluster
) -> Estimate:
    consts = cluster.consts
    assert isinstance(f.node, Join)
    left = facts.of(f.node.left)
    right = facts.of(f.node.right)
    output = f.bytes * consts.row_copy_seconds_per_byte
    if choice.join == "broadcast":
        build = memory.broadcast_bytes * consts.broadcast_build_seconds_per_byte
        probe = left.rows * consts.hash_probe_seconds_per_row
        return build + cluster.spread(probe + output) + consts.job_overhead_seconds
    # A shuffled hash join (physical/ hints shuffle_hash). The image side is already hash
    # partitioned by key (physical/ repartitions the image scan into spark.sql.shuffle.partitions
    # partitions, and inference keeps the partitioning), so only the structured side moves.
    moved = right.bytes * consts.shuffle_seconds_per_byte
    build = right.rows * consts.hash_probe_seconds_per_row
    probe = left.rows * consts.hash_probe_seconds_per_row
    stages = consts.stage_overhead_seconds + cluster.waves * consts.task_overhead_seconds
    return cluster.spread(moved + build + probe + output) + stages


def _persist(
    f: NodeFacts, choice: Choice, memory: MemoryModel, consts: CostConstants
) -> tuple[Estimate, Estimate]:
    """Core-seconds to write the persisted data once and to read it once."""
    level = choice.persist
    data = f.bytes
    build = data * consts.cache_write_seconds_per_byte
    scan = data * consts.cache_read_seconds_per_byte
    serialize = data * consts.serialize_seconds_per_byte
    if level == "disk":
        on_disk = data * consts.serialized_compression * consts.disk_seconds_per_byte
        return build + serialize + on_disk, scan + serialize + on_disk
    stored = stored_bytes(f, level, consts)
    spilled = stored * memory.spill_fraction * consts.disk_seconds_per_byte
    spilled_serialize = serialize * memory.spill_fraction
    if level == "serialized":
        return build + serialize + spilled, scan + serialize + spilled
    return build + spilled_serialize + spilled, scan + spilled_serialize + spilled


def _branch_table_read(
    assembled: NodeFacts, memory: MemoryModel, consts: CostConstants
) -> Estimate:
    """Core-seconds to read the executor's cached branch table once (decompress and deserialize
    its batches; the part that spilled from disk)."""
    table = branch_table_bytes(assembled, consts)
    spilled = table * memory.spill_fraction * consts.disk_seconds_per_byte
    return (
        table * (consts.cache_read_seconds_per_byte + consts.serialize_seconds_per_byte) + spilled
    )


def _train(f: NodeFacts, facts: PlanFacts, memory: MemoryModel, cluster: _Cluster) -> Estimate:
    """MLlib training: reading the cached branch table (each fit's passes, the executor's counts;
    the Assemble below it wrote it), the CPU work on the blocks, one job per iteration, and
    reading back blocks that spilled."""
    consts = cluster.consts
    model = f.model
    if model is None:
        return ZERO
    assert isinstance(f.node, Train)
    assembled = facts.of(f.node.child)
    reads = model.input_passes * model.fits + BRANCH_TABLE_COUNTS
    cache = cluster.spread(_branch_table_read(assembled, memory, consts) * reads)
    rows = f.rows
    values = model.values + 1
    entry = models.model(model.name)
    sets = model.classes.map(entry.coefficient_sets)
    jvm = consts.jvm_flops_per_core
    prepare = rows * values * (4 / jvm + DOUBLE_BYTES * consts.row_copy_seconds_per_byte)
    considered = values if entry.considered_values is None else values.map(entry.considered_values)
    work = rows * considered
    if entry.iteration_scales_with_sets:
        work = work * sets
    level = work * (entry.iteration_flops_per_value / jvm)
    blocks_spilled = training_blocks(f) * memory.spill_fraction * consts.disk_seconds_per_byte
    iteration = cluster.spread(level + blocks_spilled) + consts.mllib_iteration_seconds
    per_fit = cluster.spread(prepare) + consts.mllib_fit_seconds + iteration * model.iterations
    # DataFrame jobs besides MLlib's own (a fit's reads are in ``mllib_fit_seconds``): the
    # table's counts, its checks, and one a fit
    jobs = (BRANCH_TABLE_COUNTS + model.fits + BRANCH_CHECK_JOBS) * consts.job_overhead_seconds
    if f.node.search == "halving":
        scaled = cluster.spread(level + blocks_spilled)
        return _halving(f, facts, per_fit, scaled, prepare, cluster, memory)
    return cache + per_fit * model.fits + jobs


def _halving(
    f: NodeFacts,
    facts: PlanFacts,
    per_fit: Estimate,
    scaled: Estimate,
    prepare: Estimate,
    cluster: _Cluster,
    memory: MemoryModel,
) -> Estimate:
    """One layer's share of a successive-halving search (``logical.search``): every round's fits
    of the surviving candidates, spread evenly over the layers (which survive is not known
    before), each on its round's sample (``scaled``, the work per iteration, scales with the
    rows; the per-iteration job does not) and scored on the held-out rows; then the winner's fit
    on every row, a layer's share of it. Every fit reads the cached branch table (a sample is a
    filter of it)."""
    consts = cluster.consts
    model = f.model
    assert model is not None and isinstance(f.node, Train)
    layers = len(facts.plan.branches) if isinstance(facts.plan, Workload) else 1
    grid = math.prod(len(values) for _, values in f.node.model.grid) if f.node.model.grid else 1
    count = layers * grid
    train_rows = f.rows.value or 0.0
    held_out = f.rows * (f.node.validate / max(1 - f.node.validate, 1e-9))
    score = held_out * (model.values + 1) * (2 / consts.jvm_flops_per_core)
    scoring = cluster.spread(score) + evaluation_jobs(held_out) * consts.job_overhead_seconds
    one_fit = per_fit / max(model.fits, 1) if model.fits > 1 else per_fit
    rounds = halving_rounds(count, train_rows)
    fits = (sum(r.candidates for r in rounds) + 1) / layers
    assembled = facts.of(f.node.child)
    passes = model.input_passes - (2 * model.folds if f.node.model.grid else 0)
    reads = fits * passes + BRANCH_TABLE_COUNTS
    seconds = cluster.spread(_branch_table_read(assembled, memory, consts) * reads)
    # each layer's split and samples are counted once (physical.search), not once a fit, and
    # its bad images checked once
    seconds = seconds + BRANCH_CHECK_JOBS * consts.job_overhead_seconds
    for current in rounds:
        sample = (cluster.spread(prepare) + scaled * model.iterations) * current.fraction
        jobs = model.iterations * consts.mllib_iteration_seconds + consts.mllib_fit_seconds
        seconds = seconds + (sample + jobs + scoring) * (current.candidates / layers)
    winner = one_fit + 2 * consts.job_overhead_seconds
    return seconds + winner * (1 / layers)


def _evaluate(f: NodeFacts, facts: PlanFacts, memory: MemoryModel, cluster: _Cluster) -> Estimate:
    """Scoring the held-out rows and computing the metrics (AUC sorts the scores). The held-out
    rows are a filter of the cached branch table (physical/train.py), so scoring reads all of it
    (``evaluate_input_passes`` times)."""
    consts = cluster.consts
    node = f.node
    assert isinstance(node, Evaluate)
    trained = facts.of(node.child)
    model = trained.model
    values = model.values if model else Estimate.absent()
    rows = f.rows
    score = rows * values * (2 / consts.jvm_flops_per_core)
    sort = rows.map(lambda n: n * math.log2(max(n, 2))) * consts.sort_seconds_per_row
    read = ZERO
    if model is not None and isinstance(trained.node, Train):
        branch = _branch_table_read(facts.of(trained.node.child), memory, consts)
        read = branch * consts.evaluate_input_passes
    jobs = evaluation_jobs(rows) * consts.job_overhead_seconds
    return cluster.spread(read + score + sort) + jobs
