"""Logical plan nodes: immutable values describing the feature-transfer workload.

Every node is a frozen, slotted dataclass whose fields are values or tuples, so equality and hashing
are structural: "did a rule change anything?" is ``new == old``, and two branches that need the same
work hold equal (usually identical) subtrees, which the renderer prints once and refers to.

A node describes only itself (``describe``); ``vista_sql.logical.render`` draws trees. ``origin``
(where in the statement a node came from) never takes part in equality.

Physical choices (join strategy, storage level, batch size) are fields that stay ``None`` in the
logical plan; the cost model fills them in with ``dataclasses.replace``.

The workload for layers L of a CNN, as the VISTA paper states it, is, for every l in L::

    T'_img,l(id, f_l(image))  <- Infer(Decode(ImageScan))         partial CNN inference up to l
    T'_l(id, [x, f_l])        <- Join(T'_img,l, TableScan)
    train M on T'_l           -> Evaluate(Train(Assemble(T'_l)))

and ``Workload`` holds one such branch per layer, top layer first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Literal, TypeAlias

from vista_sql.errors import Origin

Value: TypeAlias = int | float | str | bool | tuple[int, ...]
"""A literal value of a model parameter or option (a tuple of ints: MLP hidden layer sizes)."""

OutputForm = Literal["activation", "features", "resume"]
"""What an inference emits for a layer: its full activation, its feature vector (pooled per the
inference's ``pooling``; the activation itself for fc layers), or the tensor stored to resume
inference to the next transfer layer (the catalog's ``resume``)."""


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A data source: a path (string literal), a name (``tables=`` mapping, then Spark
    catalog), or a Spark SQL query (``name`` is its text, which the session's ``spark.sql``
    runs)."""

    kind: Literal["path", "table", "query"]
    name: str

    def describe(self) -> str:
        if self.kind == "query":
            return f"({self.name})"
        return f"'{self.name}'" if self.kind == "path" else self.name


@dataclass(frozen=True, slots=True)
class WeightsSpec:
    """Where a CNN's weights come from."""

    kind: Literal["imagenet", "random", "file"]
    seed: int | None = None
    path: str | None = None

    def describe(self) -> str:
        if self.kind == "random":
            return "random" if self.seed is None else f"random seed {self.seed}"
        if self.kind == "file":
            return f"file '{self.path}'"
        return "imagenet"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A downstream MLlib model: fixed parameters and, for a grid search, the values to try."""

    name: str
    params: tuple[tuple[str, Value], ...] = ()
    grid: tuple[tuple[str, tuple[Value, ...]], ...] = ()
    folds: int = 3

    def describe(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.params]
        parts += [f"{k}=({', '.join(repr(v) for v in vs)})" for k, vs in self.grid]
        if self.grid:
            parts.append(f"folds={self.folds}")
        return f"{self.name}({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class LayerOut:
    """One output of an inference: a transfer layer in one form."""

    layer: str
    form: OutputForm

    def describe(self) -> str:
        return self.layer if self.form == "features" else f"{self.layer}:{self.form}"


class Plan:
    """Base of all plan nodes. Subclasses are frozen slotted dataclasses."""

    __slots__ = ()

    @property
    def children(self) -> tuple[Plan, ...]:
        return tuple(
            value
            for f in fields(self)  # type: ignore[arg-type]
            for value in _plans_in(getattr(self, f.name))
        )

    def with_children(self, children: tuple[Plan, ...]) -> Plan:
        """The same node over new children (in ``children`` order); ``self`` if nothing changed."""
        if children == self.children and all(
            a is b for a, b in zip(children, self.children, strict=True)
        ):
            return self
        queue = iter(children)
        updates: dict[str, object] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Plan):
                updates[f.name] = next(queue)
            elif isinstance(value, tuple) and value and all(isinstance(v, Plan) for v in value):
                updates[f.name] = tuple(next(queue) for _ in value)
        return replace(self, **updates)  # type: ignore[type-var]

    def describe(self) -> str:
        raise NotImplementedError

    def walk(self) -> Iterator[Plan]:
        """Every node, pre-order, each distinct node once (shared subtrees are visited once)."""
        seen: set[int] = set()
        stack: list[Plan] = [self]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            yield node
            stack.extend(reversed(node.children))

    def numbering(self) -> dict[int, int]:
        """``id`` of every distinct node -> its operator number: its position in :meth:`walk`,
        from 1. EXPLAIN, the cost model's facts and EXPLAIN ANALYZE all number operators so."""
        return {id(node): number for number, node in enumerate(self.walk(), start=1)}


def _plans_in(value: object) -> tuple[Plan, ...]:
    if isinstance(value, Plan):
        return (value,)
    if isinstance(value, tuple) and value and all(isinstance(v, Plan) for v in value):
        return value
    return ()


@dataclass(frozen=True, slots=True)
class ImageFiles:
    """Some files of an image directory, by path relative to it: the ones an incremental read
    of the feature store infers (new or changed since an entry was written) or drops (removed
    or changed). Equal by their digest, so comparing and hashing plans stays cheap however many
    files there are."""

    digest: str
    paths: tuple[str, ...] = field(compare=False, repr=False)

    @classmethod
    def of(cls, paths: Iterable[str]) -> ImageFiles:
        ordered = tuple(sorted(paths))
        return cls(hashlib.sha256("\0".join(ordered).encode()).hexdigest(), ordered)

    @property
    def count(self) -> int:
        return len(self.paths)


@dataclass(frozen=True, slots=True)
class ImageScan(Plan):
    """Read the image source: rows of (key, image bytes or path).

    ``files``: only these files of the image directory (the images a feature-store entry lacks:
    new or changed since it was written); None reads every image."""

    source: SourceRef
    alias: str
    column: str | None = None
    origin: Origin | None = field(default=None, compare=False)
    files: ImageFiles | None = None

    def describe(self) -> str:
        column = f" ({self.column})" if self.column else ""
        only = ""
        if self.files is not None:
            only = f": only the {_count(self.files.count, 'image')} new or changed since stored"
        return f"ImageScan {self.source.describe()}{column} AS {self.alias}{only}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


@dataclass(frozen=True, slots=True)
class TableScan(Plan):
    """Read the structured source. ``features`` None: every numeric column but key and label."""

    source: SourceRef
    alias: str
    features: tuple[str, ...] | None = None
    origin: Origin | None = field(default=None, compare=False)

    def describe(self) -> str:
        features = "all numeric" if self.features is None else ", ".join(self.features)
        return f"TableScan {self.source.describe()} AS {self.alias} features=[{features}]"


@dataclass(frozen=True, slots=True)
class StoredScan(Plan):
    """Read a CNN layer that an earlier statement materialized over the same images (the feature
    store, ``vista_sql.physical.store``): rows of (key, the layer in ``form``), no image touched.

    ``form`` is what the scan provides to the plan: ``features`` (pooled per ``pooling``) for an
    Assemble, or ``resume`` for an Infer that resumes from ``layer``. ``location`` is the store
    entry's directory; ``rows`` are the rows read and ``file_bytes`` the entry's size, for the
    cost model. ``dropped``: images whose stored rows are left out (removed from the directory, or
    changed, since the entry was written); their rows are not read.
    """

    source: SourceRef
    alias: str
    cnn: str
    weights: WeightsSpec
    layer: str
    form: OutputForm
    pooling: str
    location: str
    rows: int
    file_bytes: int
    origin: Origin | None = field(default=None, compare=False)
    dropped: ImageFiles | None = None

    def describe(self) -> str:
        what = f"{self.cnn}.{self.layer}"
        what += f" pooling={self.pooling}" if self.form == "features" else ":resume"
        part = ""
        if self.dropped is not None:
            part = (
                f", {_count(self.rows, 'row')} (not the"
                f" {_count(self.dropped.count, 'image')} removed or changed since)"
            )
        return (
            f"StoredScan {self.source.describe()} AS {self.alias}: reads stored {what}"
            f" ({self.weights.describe()}) from {self.location}{part}"
        )


@dataclass(frozen=True, slots=True)
class UnionAll(Plan):
    """The rows of every input, one after the other (SQL's UNION ALL), hashed by key: a layer
    read from the feature store for the images it holds, beside the same layer inferred for the
    images it lacks. Every input has the key and the same layer in the same form."""

    inputs: tuple[Plan, ...]

    def describe(self) -> str:
        return f"UnionAll of {len(self.inputs)} inputs: stored rows, then inferred rows"


@dataclass(frozen=True, slots=True)
class Decode(Plan):
    """Decode images, convert to RGB, resize to the CNN's input, apply its preprocessing."""

    child: Plan
    cnn: str
    size: tuple[int, int]
    preprocess: str

    def describe(self) -> str:
        return f"Decode {self.size[0]}x{self.size[1]} RGB, {self.preprocess} preprocessing"


@dataclass(frozen=True, slots=True)
class Infer(Plan):
    """Partial CNN inference, from the image (``start`` None) or a stored layer, to ``outputs``.

    One pass computes every output (a multi-output model). When ``start`` is a layer, the child
    must provide that layer's ``resume`` output. Columns of the child other than the image (or the
    resumed tensor) pass through.
    """

    child: Plan
    cnn: str
    weights: WeightsSpec
    start: str | None
    outputs: tuple[LayerOut, ...]
    pooling: str = "max2x2"
    batch_size: int | None = None

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers emitted as features, in output order."""
        return tuple(o.layer for o in self.outputs if o.form == "features")

    def describe(self) -> str:
        start = "image" if self.start is None else f"{self.start}:resume"
        outs = ", ".join(o.describe() for o in self.outputs)
        batch = f" batch={self.batch_size}" if self.batch_size else ""
        return (
            f"Infer {self.cnn} ({self.weights.describe()}) {start} -> {{{outs}}}"
            f" pooling={self.pooling}{batch}"
        )


@dataclass(frozen=True, slots=True)
class Pool(Plan):
    """Pool a convolutional layer's activation into its feature vector."""

    child: Plan
    layer: str
    pooling: str

    def describe(self) -> str:
        return f"Pool {self.layer} {self.pooling}"


@dataclass(frozen=True, slots=True)
class Join(Plan):
    """Inner key-key join of the image side (left) and the structured side (right)."""

    left: Plan
    right: Plan
    left_key: str
    right_key: str
    strategy: Literal["broadcast", "shuffle"] | None = None
    origin: Origin | None = field(default=None, compare=False)

    def describe(self) -> str:
        strategy = f" {self.strategy}" if self.strategy else ""
        return f"Join inner{strategy} ON {self.left_key} = {self.right_key}"


@dataclass(frozen=True, slots=True)
class Persist(Plan):
    """Keep the child's rows for its several consumers instead of recomputing them."""

    child: Plan
    level: Literal["deserialized", "serialized", "disk"] | None = None

    def describe(self) -> str:
        return f"Persist {self.level or '(level to choose)'}"


@dataclass(frozen=True, slots=True)
class Assemble(Plan):
    """Concatenate the structured features and one layer's CNN features into one vector."""

    child: Plan
    layer: str
    features: tuple[str, ...] | None
    label: str

    def describe(self) -> str:
        features = "all numeric" if self.features is None else ", ".join(self.features)
        return f"Assemble [{features}] + {self.layer} label={self.label}"


@dataclass(frozen=True, slots=True)
class Train(Plan):
    """Fit the downstream model on the training split (``1 - validate`` of the rows, by key
    hash)."""

    child: Plan
    layer: str
    model: ModelSpec
    label: str
    validate: float = 0.2
    seed: int = 2019
    search: Literal["exhaustive", "halving"] = "exhaustive"
    """``halving``: the layer's (layer, parameters) candidates compete with every other layer's
    in a successive-halving search (``vista_sql.logical.search``)."""

    def describe(self) -> str:
        search = " search=halving" if self.search == "halving" else ""
        return (
            f"Train {self.model.describe()} on {self.layer} label={self.label}"
            f" validate={self.validate} seed={self.seed}{search}"
        )


@dataclass(frozen=True, slots=True)
class Evaluate(Plan):
    """Score the fitted model on the held-out split."""

    child: Plan
    layer: str
    metrics: tuple[str, ...] = ("accuracy", "f1", "auc")

    def describe(self) -> str:
        return f"Evaluate {self.layer} [{', '.join(self.metrics)}]"


@dataclass(frozen=True, slots=True)
class Workload(Plan):
    """The root: one branch (ending in Evaluate) per requested layer, top layer first."""

    branches: tuple[Plan, ...]
    layers: tuple[str, ...]

    def describe(self) -> str:
        return f"Workload layers=[{', '.join(self.layers)}]"


def transform_up(plan: Plan, fn: object) -> Plan:
    """Rebuild ``plan`` bottom-up with ``fn`` applied to every node; shared subtrees stay shared.

    Returns ``plan`` itself when ``fn`` changed nothing.
    """
    memo: dict[int, Plan] = {}

    def visit(node: Plan) -> Plan:
        key = id(node)
        if key not in memo:
            rebuilt = node.with_children(tuple(visit(child) for child in node.children))
            memo[key] = fn(rebuilt)  # type: ignore[operator]
        return memo[key]

    return visit(plan)
