"""What a logical plan computes, sized: rows, columns and bytes per operator, and how often each
operator runs. Nothing here depends on the Spark configuration, so the optimizer computes it once
per alternative and reuses it for every configuration it tries.

Row formats follow Spark's: an image is a binary column (binaryFile's content plus its path and
metadata); a tensor is an ``array<float>`` (UnsafeArrayData: 8-byte length, a null bit per element
rounded to words, 4 bytes per float); structured features are doubles; the assembled feature vector
is an ML ``VectorUDT`` of doubles, so CNN features double in size when assembled.

How often an operator runs: Spark recomputes a DataFrame for every action that reads it unless it
is persisted. So each operator's ``passes`` is the sum of its consumers' demands, and a ``Persist``
computes its child once however many times it is read. The executor (``physical/executor.py``)
caches each branch's assembled table (MEMORY_AND_DISK) before training, so what is below a
``Train`` is computed once per branch, and the model's reads of its input (an MLlib linear model
reads it twice: the Summarizer pass, then the pass that builds its persisted blocks) and the
evaluation's read of the held-out rows are reads of that cache (``ModelFacts.input_passes``, costed
with the training).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from vista_sql.catalog import Catalog, CnnInfo
from vista_sql.cost_model.constants import CostConstants
from vista_sql.cost_model.estimate import Estimate, total
from vista_sql.cost_model.stats import DataStats
from vista_sql.logical import models
from vista_sql.logical.plan import (
    Assemble,
    Decode,
    Evaluate,
    ImageScan,
    Infer,
    Join,
    ModelSpec,
    Persist,
    Plan,
    Pool,
    StoredScan,
    TableScan,
    Train,
    UnionAll,
    Workload,
)
from vista_sql.units import DOUBLE_BYTES

FLOAT_BYTES = 4


@dataclass(frozen=True, slots=True)
class Column:
    """One column of an operator's output: its bytes per row and the numbers it holds."""

    name: str
    bytes: Estimate
    values: Estimate
    """How many numbers (floats or doubles) a row holds in this column; 0 for keys and images."""


@dataclass(frozen=True, slots=True)
class InferFacts:
    """The statistics of one inference operator, per image."""

    cnn: str
    flops: Estimate
    """From the start (image or stored layer) to the topmost output."""
    param_bytes: Estimate
    """Parameters a worker holds: every layer's from the input up to the topmost output."""
    activation_bytes: Estimate
    """Largest set of live activations while computing any segment of that range."""
    measured_rss: Estimate
    """Measured peak RSS of a worker inferring from the image to the top output (absent when
    resuming from a stored layer, or when not measured)."""
    measured_batch: int | None
    input_bytes: Estimate
    """Bytes per image crossing from the JVM into the worker (encoded image or stored tensor)."""
    output_bytes: Estimate
    """Bytes per image crossing back (every output tensor)."""
    decodes: bool
    """Whether this worker decodes images itself (its input is the encoded image)."""
    input_pixels: int
    """Pixels of the CNN's input, for the decoded batch and the resize cost."""


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """The downstream model's shape: numbers per row, classes, iterations, fits."""

    name: str
    values: Estimate
    classes: Estimate
    iterations: float
    fits: int
    """Model fits: 1, or for a grid search (combinations x folds) + the final refit."""
    folds: int
    input_passes: float
    """Reads of the cached branch table by the fits (see module docstring)."""


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """One operator's sized output and how many times it is computed (or, for Persist, read)."""

    node: Plan
    number: int
    rows: Estimate
    columns: tuple[Column, ...]
    passes: float
    infer: InferFacts | None = None
    model: ModelFacts | None = None
    branches: tuple[int, ...] = ()
    """Indices of the workload's branches (layers, in execution order) that use this operator."""
    row_bytes: Estimate = field(init=False)
    bytes: Estimate = field(init=False)
    """Bytes of the output: rows x row bytes, or the one record of Train and Evaluate (which read
    rows but output a model, the metrics)."""

    def __post_init__(self) -> None:
        row_bytes = total(column.bytes for column in self.columns)
        single = isinstance(self.node, (Train, Evaluate))
        object.__setattr__(self, "row_bytes", row_bytes)
        object.__setattr__(self, "bytes", row_bytes if single else self.rows * row_bytes)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True, slots=True)
class PlanFacts:
    """Every distinct operator of a plan, numbered in pre-order (the order EXPLAIN prints)."""

    plan: Plan
    nodes: tuple[NodeFacts, ...]
    stats: DataStats
    pipelines: tuple[tuple[NodeFacts, ...], ...]
    """The chains of inference operators that run in one task (``pipelines``)."""

    def of(self, node: Plan) -> NodeFacts:
        for facts in self.nodes:
            if facts.node is node:
                return facts
        raise KeyError(node.describe())

    def kind(self, cls: type[Plan]) -> tuple[NodeFacts, ...]:
        return tuple(f for f in self.nodes if isinstance(f.node, cls))


def array_bytes(values: Estimate) -> Estimate:
    """An ``array<float>`` field: 8-byte slot, 8-byte length, null bits in words, 4 B per float."""
    return values.map(lambda n: 16 + math.ceil(n / 64) * 8 + FLOAT_BYTES * n)


def analyze(plan: Plan, catalog: Catalog, stats: DataStats, consts: CostConstants) -> PlanFacts:
    """Size every operator of ``plan`` and count its passes."""
    order = list(plan.walk())
    names = [n.cnn for n in order if isinstance(n, (Infer, Decode, StoredScan))]
    cnn = catalog.cnn(names[0]) if names else None
    measured = catalog.measured or {}
    batch = measured.get("batch_size")
    context = _Context(cnn, batch if isinstance(batch, int) else None, stats, consts)
    sized: dict[int, _Sized] = {}
    for node in _bottom_up(plan):
        sized[id(node)] = _size(node, sized, context)
    passes = _passes(plan, order, sized, consts)
    branches = _branches(plan)
    numbers = plan.numbering()
    nodes = tuple(
        NodeFacts(
            node=node,
            number=numbers[id(node)],
            rows=sized[id(node)][0],
            columns=sized[id(node)][1],
            passes=passes[id(node)],
            infer=sized[id(node)][2],
            model=sized[id(node)][3],
            branches=tuple(sorted(branches.get(id(node), ()))),
        )
        for node in order
    )
    return PlanFacts(plan=plan, nodes=nodes, stats=stats, pipelines=pipelines(nodes))


def pipelines(nodes: tuple[NodeFacts, ...]) -> tuple[tuple[NodeFacts, ...], ...]:
    """The chains of inference operators that run in one task, each Python worker beside the next.

    Spark runs every ``mapInArrow`` of a pipeline in its own Python worker process, so a task
    computing a staged plan without persistence (conv5 -> fc6 -> fc7 -> fc8 in one pass over the
    images) holds four workers, each with the TensorFlow runtime and its part of the model, at
    once. A ``Persist`` ends a chain: the executor materialises it in a job of its own, and the
    operators above read the cached rows. Joins do not: which side Spark streams through the
    join's pipeline is its choice, so the chain continues below either side (the heavier one
    counts). One chain per inference operator, from it down; the top ones are the ones that run.
    """
    of = {id(f.node): f for f in nodes}
    below: dict[int, tuple[NodeFacts, ...]] = {}

    def chain(node: Plan) -> tuple[NodeFacts, ...]:
        """The heaviest chain of inference operators from ``node`` down, not crossing a Persist."""
        key = id(node)
        if key in below:
            return below[key]
        deeper = [chain(child) for child in node.children if not isinstance(child, Persist)]
        longest = max(deeper, key=len, default=())
        f = of[key]
        found = (f, *longest) if f.infer is not None and f.passes > 0 else longest
        below[key] = found
        return found

    return tuple(chain(f.node) for f in nodes if f.infer is not None and f.passes > 0)


_Sized = tuple[Estimate, tuple[Column, ...], InferFacts | None, ModelFacts | None]


def _bottom_up(plan: Plan) -> list[Plan]:
    """Every distinct node, each after all of its children (post-order, shared nodes once)."""
    done: set[int] = set()
    result: list[Plan] = []
    stack: list[tuple[Plan, bool]] = [(plan, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in done:
            continue
        if expanded:
            done.add(id(node))
            result.append(node)
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.children))
    return result


def _branches(plan: Plan) -> dict[int, set[int]]:
    """For each operator, the branches of the workload whose subtree contains it."""
    result: dict[int, set[int]] = {}
    roots = plan.branches if isinstance(plan, Workload) else (plan,)
    for index, branch in enumerate(roots):
        for node in branch.walk():
            result.setdefault(id(node), set()).add(index)
    result[id(plan)] = set(range(len(roots)))
    return result


@dataclass(frozen=True, slots=True)
class _Context:
    cnn: CnnInfo | None
    """The statement's CNN (one per statement)."""
    measured_batch: int | None
    """The batch size the catalog's peak RSS figures were measured at."""
    stats: DataStats
    consts: CostConstants


def _key(consts: CostConstants) -> Column:
    return Column("key", Estimate.exact(consts.key_bytes), Estimate.exact(0))


def _size(node: Plan, sized: dict[int, _Sized], context: _Context) -> _Sized:
    stats, consts = context.stats, context.consts

    def child(of: Plan) -> _Sized:
        return sized[id(of)]

    match node:
        case ImageScan():
            image = Column(
                "image",
                stats.average_image_bytes + consts.binary_file_row_bytes,
                Estimate.exact(0),
            )
            rows = stats.image_rows if node.files is None else Estimate.exact(node.files.count)
            return rows, (_key(consts), image), None, None
        case TableScan():
            struct = Column("struct", stats.feature_columns * DOUBLE_BYTES, stats.feature_columns)
            label = Column("label", Estimate.exact(DOUBLE_BYTES), Estimate.exact(1))
            return stats.table_rows, (_key(consts), struct, label), None, None
        case StoredScan(layer=layer, form=form):
            # The store's Parquet rows, exactly as many as the entry holds; the tensor is the
            # same array<float> an inference emits in that form.
            values = _stored_values(context.cnn, layer, form, node.pooling)
            stored = Column(f"{layer}:{form}", array_bytes(values), values)
            return Estimate.exact(node.rows), (_key(consts), stored), None, None
        case Decode(child=inner, size=size):
            rows, columns, _, _ = child(inner)
            values = Estimate.exact(size[0] * size[1] * 3)
            decoded = Column("decoded", array_bytes(values), values)
            return rows, _replace(columns, "image", decoded), None, None
        case Infer():
            rows, columns, _, _ = child(node.child)
            # The worker decodes the images itself (udfs.spark_infer): what crosses into it is
            # the Decode's input, the encoded image, not a decoded tensor.
            crossing = child(node.child.child)[1] if isinstance(node.child, Decode) else columns
            facts, consumed, produced = _infer(node, columns, crossing, context)
            kept = tuple(c for c in columns if c.name != consumed)
            return rows, kept + produced, facts, None
        case Pool(child=inner, layer=layer, pooling=pooling):
            rows, columns, _, _ = child(inner)
            values = _pooled_values(context.cnn, layer, pooling)
            pooled = Column(f"{layer}:features", array_bytes(values), values)
            return rows, _replace(columns, f"{layer}:activation", pooled), None, None
        case Join(left=left, right=right):
            left_rows, left_columns, _, _ = child(left)
            right_rows, right_columns, _, _ = child(right)
            rows = _join_rows(left_rows, right_rows)
            columns = left_columns + tuple(c for c in right_columns if c.name != "key")
            return rows, columns, None, None
        case Persist(child=inner):
            rows, columns, _, _ = child(inner)
            return rows, columns, None, None
        case UnionAll(inputs=inputs):
            parts = [child(part) for part in inputs]
            rows = total([part[0] for part in parts])
            # what every input has (the stored part has only the key and the layer)
            names = set.intersection(*({c.name for c in part[1]} for part in parts))
            return rows, tuple(c for c in parts[0][1] if c.name in names), None, None
        case Assemble(child=inner, layer=layer):
            rows, columns, _, _ = child(inner)
            values = _struct_values(columns) + _layer_values(columns, layer)
            vector = Column(
                "features", values * DOUBLE_BYTES + consts.vector_overhead_bytes, values
            )
            label = Column("label", Estimate.exact(DOUBLE_BYTES), Estimate.exact(1))
            return rows, (_key(consts), label, vector), None, None
        case Train(child=inner, model=model, validate=validate):
            rows, columns, _, _ = child(inner)
            assembled = next((c for c in columns if c.name == "features"), None)
            values = assembled.values if assembled else Estimate.absent()
            model_facts = _model(model, values, stats.label_classes, consts)
            sets = model_facts.classes.map(models.model(model.name).coefficient_sets)
            coefficients = (values + 1) * sets * DOUBLE_BYTES
            return (
                rows * (1 - validate),
                (Column("model", coefficients, Estimate.exact(0)),),
                None,
                model_facts,
            )
        case Evaluate(child=inner):
            rows = _evaluated_rows(inner, sized)
            return rows, (Column("metrics", Estimate.exact(64), Estimate.exact(0)),), None, None
        case Workload(branches=branches):
            return Estimate.exact(len(branches)), (), None, None
    return Estimate.absent(), (), None, None


def _replace(columns: tuple[Column, ...], name: str, new: Column) -> tuple[Column, ...]:
    if not any(c.name == name for c in columns):
        return (*columns, new)
    return tuple(new if c.name == name else c for c in columns)


def _join_rows(left: Estimate, right: Estimate) -> Estimate:
    """A key-key join of unique ids: at most the smaller side; assumed all match (inexact)."""
    if left.value is None or right.value is None:
        return Estimate.absent()
    return Estimate.inexact(min(left.value, right.value))


def _evaluated_rows(train: Plan, sized: dict[int, _Sized]) -> Estimate:
    if isinstance(train, Train):
        rows = sized[id(train.child)][0]
        return rows * train.validate
    return sized[id(train)][0]


def _struct_values(columns: tuple[Column, ...]) -> Estimate:
    struct = next((c for c in columns if c.name == "struct"), None)
    return struct.values if struct else Estimate.exact(0)


def _layer_values(columns: tuple[Column, ...], layer: str) -> Estimate:
    for form in ("features", "activation"):
        column = next((c for c in columns if c.name == f"{layer}:{form}"), None)
        if column is not None:
            return column.values
    return Estimate.absent()


def _pooled_values(cnn: CnnInfo | None, layer: str, pooling: str) -> Estimate:
    info = cnn.layer(layer) if cnn is not None else None
    if info is None:
        return Estimate.absent()
    return Estimate.exact(info.feature_size(pooling))


def _infer(
    node: Infer, columns: tuple[Column, ...], crossing: tuple[Column, ...], context: _Context
) -> tuple[InferFacts, str, tuple[Column, ...]]:
    """The inference's statistics, the input column it consumes, and the columns it adds.

    ``crossing`` are the columns sent to the worker (those below a fused Decode).
    """
    names = {c.name for c in columns}
    if node.start is not None:
        consumed = f"{node.start}:resume"
    else:
        consumed = "decoded" if "decoded" in names else "image"
    sent = "image" if consumed == "decoded" else consumed
    source = next((c for c in crossing if c.name == sent), None)
    input_bytes = source.bytes if source is not None else Estimate.absent()
    decodes = sent == "image"
    cnn = context.cnn
    if cnn is None or cnn.name != node.cnn.lower():
        absent = Estimate.absent()
        produced = tuple(Column(f"{o.layer}:{o.form}", absent, absent) for o in node.outputs)
        facts = InferFacts(
            node.cnn, absent, absent, absent, absent, None, input_bytes, absent,
            decodes, 0,
        )  # fmt: skip
        return facts, consumed, produced
    produced_list = []
    for output in node.outputs:
        info = cnn.layer(output.layer)
        if info is None:
            values = Estimate.absent()
        elif output.form == "activation":
            values = Estimate.exact(info.activation_size)
        elif output.form == "resume":
            values = Estimate.exact(info.resume_size)
        else:
            values = Estimate.exact(info.feature_size(node.pooling))
        produced_list.append(Column(f"{output.layer}:{output.form}", array_bytes(values), values))
    produced = tuple(produced_list)
    first = cnn.index(node.start) + 1 if node.start in cnn.layer_names else 0
    tops = [cnn.index(o.layer) for o in node.outputs if o.layer in cnn.layer_names]
    top = max(tops) if tops else first - 1
    segment = cnn.layers[first : top + 1]
    flops = _sum_known(s.flops for s in segment)
    # Workers materialize a CNN's variables on demand and keep them (udfs.models.WeightedModel),
    # and a reused worker has usually run the earlier stages: it holds every parameter below the
    # top output, not only this segment's.
    params = _sum_known(s.param_bytes for s in cnn.layers[: top + 1])
    activations = (
        Estimate.inexact(max(s.activation_bytes or 0 for s in segment))
        if segment and all(s.activation_bytes is not None for s in segment)
        else Estimate.absent()
    )
    measured_batch = None
    measured = Estimate.absent()
    top_rss = segment[-1].peak_rss_bytes if segment else None
    if node.start is None and top_rss is not None and context.measured_batch is not None:
        measured = Estimate.inexact(top_rss)
        measured_batch = context.measured_batch
    output_bytes = total(c.bytes for c in produced)
    facts = InferFacts(
        cnn=node.cnn,
        flops=flops,
        param_bytes=params,
        activation_bytes=activations,
        measured_rss=measured,
        measured_batch=measured_batch,
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        decodes=decodes,
        input_pixels=cnn.input_size[0] * cnn.input_size[1],
    )
    return facts, consumed, produced


def _stored_values(cnn: CnnInfo | None, layer: str, form: str, pooling: str) -> Estimate:
    info = cnn.layer(layer) if cnn is not None else None
    if info is None:
        return Estimate.absent()
    return Estimate.exact(info.resume_size if form == "resume" else info.feature_size(pooling))


def _sum_known(values: Iterable[float | None]) -> Estimate:
    items = list(values)
    known = [v for v in items if v is not None]
    if len(known) < len(items):
        return Estimate.absent()
    return Estimate.inexact(sum(known))


def _param(model: ModelSpec, name: str, default: float) -> float:
    for key, value in model.params:
        if key == name and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return default


def _model(
    model: ModelSpec, values: Estimate, classes: Estimate, consts: CostConstants
) -> ModelFacts:
    name = model.name.lower()
    entry = models.model(name)
    iterations = entry.iterations(lambda param, default: _param(model, param, default), consts)
    passes = entry.input_passes(consts)
    combinations = math.prod(len(v) for _, v in model.grid) if model.grid else 1
    if model.grid:
        # CrossValidator caches each fold's training and validation split (one read of the
        # input per fold each), then refits the best parameters on everything.
        fits = combinations * model.folds + 1
        input_passes = 2 * model.folds + passes
    else:
        fits = 1
        input_passes = passes
    return ModelFacts(name, values, classes, iterations, fits, model.folds, input_passes)


def _passes(
    root: Plan, order: list[Plan], sized: dict[int, _Sized], consts: CostConstants
) -> dict[int, float]:
    """How many times each operator is computed (Persist: read), from its consumers' demands."""
    demands: dict[int, list[tuple[Plan, float, bool]]] = {id(n): [] for n in order}
    for node in order:
        for child_node, factor, once in _demands(node):
            demands[id(node)].append((child_node, factor, once))
    indegree: dict[int, int] = {id(n): 0 for n in order}
    for node in order:
        for child_node, _, _ in demands[id(node)]:
            indegree[id(child_node)] += 1
    passes: dict[int, float] = {id(n): 0.0 for n in order}
    passes[id(root)] = 1.0
    ready = deque([root])
    while ready:
        node = ready.popleft()
        for child_node, factor, once in demands[id(node)]:
            if once:
                passes[id(child_node)] += 1.0 if passes[id(node)] > 0 else 0.0
            else:
                passes[id(child_node)] += passes[id(node)] * factor
            indegree[id(child_node)] -= 1
            if indegree[id(child_node)] == 0:
                ready.append(child_node)
    return passes


def _demands(node: Plan) -> list[tuple[Plan, float, bool]]:
    """(child, reads per computation of ``node``, computed once however often node is read)."""
    match node:
        case Persist(child=inner):
            return [(inner, 1.0, True)]
    return [(child, 1.0, False) for child in node.children]
