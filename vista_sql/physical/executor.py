"""Running a chosen plan: branch by branch, bottom layer first, caching only while needed.

For each layer's branch (Evaluate(Train(Assemble(...)))) the runner

1. materialises the Persist nodes below it that are not yet materialised, bottom-up, timing each
   (in a staged plan that is this layer's stage; in an eager plan the one shared pass);
2. builds the branch table (KEY, LABEL, FEATURES) and caches it, since training and evaluation both
   read it (MLlib would otherwise cache the training rows itself, and evaluation would recompute);
3. reports images that failed to decode (``on_bad_image``: fail names them, skip counts them);
4. trains and evaluates, then releases the branch table and every Persist node that no remaining
   branch reaches without passing through a materialised Persist node first.

With ``WITH (search = 'halving')`` step 4 waits: every layer's branch table stays cached until
the successive-halving search over all layers' (layer, parameters) candidates has run
(``physical.search``); each layer then reports the candidate of it that went furthest.

Branches run bottom layer first so that a staged plan holds at most two stages at once; results are
reported top layer first, as SPEC.md says.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from vista_sql.errors import DataError
from vista_sql.logical.plan import Assemble, Evaluate, Persist, Plan, Train, Workload
from vista_sql.logical.query import TransferQuery
from vista_sql.logical.search import Round
from vista_sql.physical.lower import ERROR, Lowering
from vista_sql.physical.prepare import SHOWN_IDS
from vista_sql.physical.progress import Progress
from vista_sql.physical.search import SearchOutcome, halving_search
from vista_sql.physical.sources import KEY
from vista_sql.physical.train import FEATURES, Trained, train

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class LayerRun:
    """What happened for one layer."""

    layer: str
    n_features: int
    trained: Trained
    inference_seconds: float
    """Seconds materialising this branch's inference (its stage, or the shared pass it came to)."""
    rows: int


@dataclass(frozen=True)
class NodeTiming:
    """Wall time spent materialising one node of the plan (a Persist node or a branch table)."""

    node: Plan
    seconds: float
    rows: int


@dataclass
class RunOutcome:
    layers: list[LayerRun] = field(default_factory=list)
    timings: list[NodeTiming] = field(default_factory=list)
    skipped_images: list[Any] = field(default_factory=list)
    search: SearchOutcome | None = None
    """The successive-halving search's fits (``WITH (search = 'halving')``)."""


LayerHook = Callable[[LayerRun, "DataFrame"], None]
"""Called after each layer with its run and its (good rows) branch table, e.g. to write INTO."""
MaterialisedHook = Callable[[Plan, "DataFrame"], None]
"""Called with each Persist node and each branch table's Assemble node just materialised (cached),
and its DataFrame (bad-image rows included), e.g. to keep its layers in the feature store."""


def branch_parts(branch: Plan) -> tuple[Evaluate, Train, Assemble]:
    if not (
        isinstance(branch, Evaluate)
        and isinstance(branch.child, Train)
        and isinstance(branch.child.child, Assemble)
    ):
        raise TypeError(f"a workload branch must be Evaluate(Train(Assemble(...))): {branch}")
    return branch, branch.child, branch.child.child


def _persists_below(node: Plan, materialised: set[int]) -> list[Persist]:
    """Persist nodes under ``node`` that must be materialised first, bottom-up, each once.

    Descent stops at a materialised Persist node: what is below it is no longer read.
    """
    found: list[Persist] = []
    seen: set[int] = set()

    def visit(current: Plan) -> None:
        if id(current) in seen:
            return
        seen.add(id(current))
        if isinstance(current, Persist) and id(current) in materialised:
            found.append(current)
            return
        for child in current.children:
            visit(child)
        if isinstance(current, Persist):
            found.append(current)

    visit(node)
    return found


def run_workload(
    plan: Workload,
    query: TransferQuery,
    lowering: Lowering,
    *,
    feature_sizes: dict[str, int],
    n_classes: int,
    layer_order: list[str],
    progress: Progress,
    on_layer: LayerHook | None = None,
    on_materialised: MaterialisedHook | None = None,
) -> RunOutcome:
    """Run every branch of ``plan``; ``layer_order`` is the execution order (bottom layer first)."""
    from pyspark import StorageLevel

    outcome = RunOutcome()
    materialised: set[int] = set()
    branches = {branch_parts(b)[1].layer: b for b in plan.branches}
    remaining = [branches[layer] for layer in layer_order]
    skipped: dict[Any, str] = {}
    searching = query.options.search == "halving"
    searched: dict[str, tuple[DataFrame, DataFrame, float]] = {}
    """halving: layer -> (cached branch table, its good rows, inference seconds)"""
    try:
        while remaining:
            branch = remaining.pop(0)
            _, trainer, assemble = branch_parts(branch)
            layer = trainer.layer
            started = time.perf_counter()
            for node in _persists_below(assemble, materialised):
                if id(node) in materialised:
                    continue
                progress.stage(f"{layer}: materialising {node.describe()}")
                t0 = time.perf_counter()
                rows = lowering.frame(node).count()
                outcome.timings.append(NodeTiming(node, time.perf_counter() - t0, rows))
                materialised.add(id(node))
                if on_materialised is not None:
                    on_materialised(node, lowering.frame(node))

            progress.stage(f"{layer}: inference and join")
            t0 = time.perf_counter()
            table = lowering.frame(assemble).persist(StorageLevel.MEMORY_AND_DISK)
            rows = table.count()
            outcome.timings.append(NodeTiming(assemble, time.perf_counter() - t0, rows))
            if on_materialised is not None:
                on_materialised(assemble, table)
            inference_seconds = time.perf_counter() - started

            good = _bad_images(table, query, skipped)
            if searching:  # trained together once every layer's table is there
                searched[layer] = (table, good, inference_seconds)
                _release(remaining, materialised, lowering)
                continue
            progress.stage(f"{layer}: training {trainer.model.name}")
            trained = train(
                good,
                trainer.model,
                n_features=feature_sizes[layer],
                n_classes=n_classes,
                validate=trainer.validate,
                seed=trainer.seed,
            )
            _layer_done(outcome, layer, feature_sizes[layer], trained, inference_seconds)
            if on_layer is not None:
                on_layer(outcome.layers[-1], good)
            table.unpersist()
            _release(remaining, materialised, lowering)
            progress.layer_done()
        if searching:
            outcome.search = _search(
                searched, plan, feature_sizes, n_classes, progress, outcome, on_layer
            )
    finally:
        for frame in lowering.frames.values():
            if frame.storageLevel.useMemory or frame.storageLevel.useDisk:
                frame.unpersist()
    outcome.skipped_images = sorted(skipped, key=lambda k: (str(type(k)), k))
    return outcome


def _search(
    searched: dict[str, tuple[DataFrame, DataFrame, float]],
    plan: Workload,
    feature_sizes: dict[str, int],
    n_classes: int,
    progress: Progress,
    outcome: RunOutcome,
    on_layer: LayerHook | None,
) -> SearchOutcome:
    """The successive-halving search over every layer's table; then each layer's run: the
    candidate of it that went furthest (the winner's fit on every row for the winning layer),
    its training time all of the layer's fits."""
    _, trainer, _ = branch_parts(plan.branches[0])
    goods = {layer: good for layer, (_, good, _) in searched.items()}
    rows = goods[next(iter(goods))].count()

    def on_round(current: Round) -> None:
        progress.stage(
            f"search round {current.number}: {current.candidates} candidates on"
            f" {current.fraction:.1%} of the training rows"
        )

    result = halving_search(
        goods,
        trainer.model,
        n_features=feature_sizes,
        n_classes=n_classes,
        validate=trainer.validate,
        seed=trainer.seed,
        train_rows=int(rows * (1 - trainer.validate)),
        on_round=on_round,
    )
    for layer, (table, good, inference_seconds) in searched.items():
        best = result.of_layer(layer)
        trained = replace(best.trained, train_seconds=result.layer_seconds(layer))
        _layer_done(outcome, layer, feature_sizes[layer], trained, inference_seconds)
        if on_layer is not None:
            on_layer(outcome.layers[-1], good)
        table.unpersist()
        progress.layer_done()
    return result


def _layer_done(
    outcome: RunOutcome, layer: str, n_features: int, trained: Trained, inference_seconds: float
) -> None:
    """Record one layer's run in ``outcome``."""
    outcome.layers.append(
        LayerRun(
            layer=layer,
            n_features=n_features,
            trained=trained,
            inference_seconds=inference_seconds,
            rows=trained.train_rows + trained.validation_rows,
        )
    )


def _bad_images(table: DataFrame, query: TransferQuery, skipped: dict[Any, str]) -> DataFrame:
    """The branch table's good rows; bad images fail the statement or are recorded as skipped."""
    from pyspark.sql import functions as F

    if ERROR not in table.columns:
        return table
    bad = table.filter(F.col(FEATURES).isNull()).select(KEY, ERROR)
    rows = bad.orderBy(KEY).collect()
    if rows and query.options.on_bad_image == "fail":
        shown = ", ".join(f"{r[0]!r} ({r[1]})" for r in rows[:SHOWN_IDS])
        raise DataError(
            f"{len(rows)} images could not be decoded: {shown}; fix or remove them, or add "
            "WITH (on_bad_image = 'skip') to skip and count them",
            ids=tuple(r[0] for r in rows[:SHOWN_IDS]),
            count=len(rows),
        )
    for row in rows:
        skipped.setdefault(row[0], row[1])
    return table.filter(F.col(FEATURES).isNotNull()).drop(ERROR)


def _release(remaining: list[Plan], materialised: set[int], lowering: Lowering) -> None:
    """Unpersist materialised Persist nodes that no remaining branch will read."""
    needed: set[int] = set()
    for branch in remaining:
        for node in _persists_below(branch, materialised):
            needed.add(id(node))
    for key in list(materialised):
        if key not in needed:
            lowering.frames[key].unpersist()
            materialised.discard(key)
