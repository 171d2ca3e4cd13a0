"""What each plan node's rows carry, and the checks that a plan is well formed.

The logical plan does not track real column names (the physical planner names columns); it tracks
what matters to the rewrites: which CNN outputs are present at every node. Column tokens:

- ``image`` (undecoded image bytes or path), ``pixels`` (a decoded, preprocessed image tensor),
  ``structured`` (the structured features and the label), ``key`` (every row carries its key);
- ``<layer>:activation``, ``<layer>:features``, ``<layer>:resume`` (see ``plan.OutputForm``);
- ``vector:<layer>`` (assembled), ``model:<layer>`` (trained), ``metrics:<layer>`` (evaluated).

Inference, decoding and pooling pass through the columns they do not consume, so structured columns
joined before inference ride along, and a staged inference keeps the features of earlier stages.
"""

from __future__ import annotations

from vista_sql.catalog import Catalog, CnnInfo
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


class Columns:
    """Computes, once per distinct node, the columns it provides and the problems it has."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._provided: dict[int, frozenset[str]] = {}
        self.problems: list[str] = []

    def of(self, node: Plan) -> frozenset[str]:
        """The columns ``node`` provides (problems found on the way are added to ``problems``)."""
        key = id(node)
        if key not in self._provided:
            self._provided[key] = self._compute(node)
        return self._provided[key]

    def _need(self, node: Plan, available: frozenset[str], wanted: str, where: str = "") -> None:
        if wanted not in available:
            have = ", ".join(sorted(available)) or "nothing"
            self.problems.append(
                f"{node.describe()}: needs {wanted}{where}, but its input has {have}"
            )

    def _cnn(self, node: Plan, name: str) -> CnnInfo | None:
        cnn = self.catalog.cnn(name)
        if cnn is None:
            self.problems.append(f"{node.describe()}: unknown CNN {name}")
        return cnn

    def _compute(self, node: Plan) -> frozenset[str]:
        match node:
            case ImageScan():
                return frozenset({"key", "image"})
            case TableScan():
                return frozenset({"key", "structured"})
            case StoredScan(cnn=name, layer=layer, form=form):
                cnn = self._cnn(node, name)
                if cnn is not None and cnn.layer(layer) is None:
                    self.problems.append(f"{node.describe()}: {layer} is not a layer")
                return frozenset({"key", f"{layer}:{form}"})
            case Decode(child=child):
                below = self.of(child)
                self._need(node, below, "image")
                return below - {"image"} | {"pixels"}
            case Infer():
                return self._infer(node)
            case Pool(child=child, layer=layer):
                below = self.of(child)
                self._need(node, below, f"{layer}:activation")
                return below - {f"{layer}:activation"} | {f"{layer}:features"}
            case Join(left=left, right=right):
                left_columns, right_columns = self.of(left), self.of(right)
                self._need(node, right_columns, "structured", " on its right (table) side")
                if "structured" in left_columns:
                    self.problems.append(
                        f"{node.describe()}: its left (image) side already has the table's columns"
                    )
                return left_columns | right_columns
            case Persist(child=child):
                return self.of(child)
            case UnionAll(inputs=inputs):
                each = [self.of(part) for part in inputs]
                if len(each) < 2:
                    self.problems.append(f"{node.describe()}: needs at least two inputs")
                for part, columns in zip(inputs, each, strict=True):
                    self._need(node, columns, "key", f" from {part.describe()}")
                # what every input has (a staged inference passes earlier layers through)
                return frozenset.intersection(*each) if each else frozenset()
            case Assemble(child=child, layer=layer):
                below = self.of(child)
                self._need(node, below, "structured")
                self._need(node, below, f"{layer}:features")
                return frozenset({"key", f"vector:{layer}"})
            case Train(child=child, layer=layer):
                below = self.of(child)
                self._need(node, below, f"vector:{layer}")
                return frozenset({f"model:{layer}"})
            case Evaluate(child=child, layer=layer):
                self._need(node, self.of(child), f"model:{layer}")
                return frozenset({f"metrics:{layer}"})
            case Workload(branches=branches, layers=layers):
                provided = frozenset().union(*(self.of(branch) for branch in branches))
                for layer in layers:
                    self._need(node, provided, f"metrics:{layer}")
                return provided
        self.problems.append(f"{type(node).__name__}: not a logical plan node")
        return frozenset()

    def _infer(self, node: Infer) -> frozenset[str]:
        below = self.of(node.child)
        consumed = "pixels" if node.start is None else f"{node.start}:resume"
        self._need(node, below, consumed)
        cnn = self._cnn(node, node.cnn)
        produced: set[str] = set()
        if cnn is not None:
            names = cnn.layer_names
            start_index = -1
            if node.start is not None:
                if node.start not in names:
                    self.problems.append(f"{node.describe()}: {node.start} is not a layer")
                else:
                    start_index = names.index(node.start)
            for output in node.outputs:
                layer = cnn.layer(output.layer)
                if layer is None or layer.name != output.layer:
                    self.problems.append(f"{node.describe()}: {output.layer} is not a layer")
                    continue
                if names.index(layer.name) <= start_index:
                    self.problems.append(
                        f"{node.describe()}: {layer.name} is not above {node.start}"
                    )
                if output.form == "resume" and layer.resume_shape is None:
                    self.problems.append(f"{node.describe()}: {layer.name} stores no resume")
                produced.add(f"{layer.name}:{output.form}")
                if output.form == "activation" and (layer.kind != "conv" or node.pooling == "none"):
                    # An fc layer's activation, or an unpooled conv activation, is its feature.
                    produced.add(f"{layer.name}:features")
        if len(set(node.outputs)) != len(node.outputs) or not node.outputs:
            self.problems.append(f"{node.describe()}: outputs must be distinct and non-empty")
        return below - {consumed} | produced


def problems(plan: Plan, catalog: Catalog) -> list[str]:
    """Every way ``plan`` is malformed (empty when it is well formed), in a deterministic order."""
    checker = Columns(catalog)
    checker.of(plan)
    return checker.problems


def workload_outputs(plan: Plan) -> frozenset[tuple[str, ModelSpec]]:
    """The (layer, model) pairs the plan trains and evaluates: what every rewrite must keep."""
    found: set[tuple[str, ModelSpec]] = set()
    for node in plan.walk():
        if isinstance(node, Evaluate) and isinstance(node.child, Train):
            found.add((node.layer, node.child.model))
    return frozenset(found)
