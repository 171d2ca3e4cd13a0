"""The rule driver: batches of rewrites, invariant checks, recorded steps, and the alternatives.

A batch applies its rules in order, ``Once`` or to a ``FixedPoint`` (until a whole pass changes
nothing, at most ``max_iterations`` passes), as Spark's ``RuleExecutor`` does. After every rule the
driver checks the invariants every rewrite must keep: the workload still trains and evaluates the
same (layer, model) pairs, and the plan is well formed (``columns.problems``: every Assemble's layer
is produced below it, every resumed inference reads a stored resume tensor, ...). A violation is a
bug in a rule, raised as :class:`RuleError`.

Under tests (``strict``, default from the environment variable ``VISTA_SQL_STRICT_RULES=1``, which
``tests/conftest.py`` sets) the driver also proves what it otherwise assumes: a fixed-point batch
that does not converge raises, a ``Once`` batch is run a second time and must change nothing, and
a rule that rebuilds an identical plan instead of returning the same object raises.

:func:`alternatives` is what the cost model consumes: every combination of the three knobs of the
VISTA paper (inference lazy / eager / staged, join placement, persist or recompute of shared work),
rewritten from the lazy plan, with combinations that give the same plan reported once; when the
feature store holds layers of the statement, every combination once more with them read from the
store (``use_stored_layers``), named with a ``/stored`` suffix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from vista_sql.catalog import Catalog, current
from vista_sql.logical.columns import problems, workload_outputs
from vista_sql.logical.dag import sharing_key
from vista_sql.logical.lazy import lazy_plan
from vista_sql.logical.plan import ModelSpec, Plan, Workload
from vista_sql.logical.query import Inference, Placement, TransferQuery
from vista_sql.logical.rules import (
    Rule,
    RuleContext,
    fuse_pooling,
    persist_shared,
    place_join,
    reuse_layers,
    stage_layers,
    use_stored_layers,
)
from vista_sql.logical.stored import StoredLayer

STRICT_ENV = "VISTA_SQL_STRICT_RULES"


class RuleError(RuntimeError):
    """A rewrite broke an invariant, or (strict mode) a batch did not converge or was not
    idempotent. Always a bug in vista_sql, never in the statement."""


@dataclass(frozen=True, slots=True)
class Once:
    """Apply each rule of the batch one time."""

    def describe(self) -> str:
        return "once"


@dataclass(frozen=True, slots=True)
class FixedPoint:
    """Repeat the batch until a whole pass changes nothing, at most ``max_iterations`` passes."""

    max_iterations: int = 100

    def describe(self) -> str:
        return f"fixed point (at most {self.max_iterations} passes)"


Strategy = Once | FixedPoint


@dataclass(frozen=True, slots=True)
class Batch:
    """A named group of rules applied with one strategy."""

    name: str
    strategy: Strategy
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Step:
    """One application of one rule: what EXPLAIN VERBOSE prints."""

    batch: str
    rule: str
    iteration: int
    """The pass of the batch, from 1 (always 1 for a ``Once`` batch)."""
    before: Plan
    after: Plan

    @property
    def changed(self) -> bool:
        return self.after is not self.before


def strict_default() -> bool:
    """Whether the driver checks convergence and idempotence (tests turn it on)."""
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def run_batches(
    plan: Plan, batches: tuple[Batch, ...], ctx: RuleContext, *, strict: bool | None = None
) -> tuple[Plan, tuple[Step, ...]]:
    """Apply ``batches`` in order to ``plan``; the rewritten plan and every step taken."""
    strict = strict_default() if strict is None else strict
    outputs = workload_outputs(plan)
    _check("the plan given to the driver", plan, plan, outputs, ctx)
    steps: list[Step] = []
    for batch in batches:
        if isinstance(batch.strategy, Once):
            plan = _one_pass(plan, batch, 1, ctx, outputs, steps, strict)
            if strict:
                again = _one_pass(plan, batch, 2, ctx, outputs, [], strict)
                if again is not plan:
                    raise RuleError(f"batch {batch.name!r} is not idempotent: a second run changed")
            continue
        for iteration in range(1, batch.strategy.max_iterations + 1):
            rewritten = _one_pass(plan, batch, iteration, ctx, outputs, steps, strict)
            converged = rewritten is plan
            plan = rewritten
            if converged:
                break
        else:
            if strict:
                raise RuleError(
                    f"batch {batch.name!r} did not reach a fixed point in "
                    f"{batch.strategy.max_iterations} passes"
                )
    return plan, tuple(steps)


def _one_pass(
    plan: Plan,
    batch: Batch,
    iteration: int,
    ctx: RuleContext,
    outputs: frozenset[tuple[str, ModelSpec]],
    steps: list[Step],
    strict: bool,
) -> Plan:
    for rule in batch.rules:
        name = getattr(rule, "__name__", repr(rule))
        rewritten = rule(plan, ctx)
        if rewritten is not plan:
            _check(f"rule {name} (batch {batch.name!r})", plan, rewritten, outputs, ctx)
            if strict and sharing_key(rewritten) == sharing_key(plan):
                raise RuleError(
                    f"rule {name} returned a new but identical plan: return the same object "
                    "when nothing changes"
                )
        steps.append(Step(batch.name, name, iteration, plan, rewritten))
        plan = rewritten
    return plan


def _check(
    who: str, before: Plan, after: Plan, outputs: frozenset[tuple[str, ModelSpec]], ctx: RuleContext
) -> None:
    found = problems(after, ctx.catalog)
    if found:
        raise RuleError(f"{who} made a malformed plan: " + "; ".join(found))
    if workload_outputs(after) != outputs:
        kept = sorted(layer for layer, _ in workload_outputs(after))
        wanted = sorted(layer for layer, _ in workload_outputs(before))
        raise RuleError(f"{who} changed the workload's outputs from {wanted} to {kept}")


INFERENCES: tuple[Inference, ...] = ("lazy", "eager", "staged")
PLACEMENTS: tuple[Placement, ...] = ("before_join", "after_join")
PERSISTS: tuple[bool, ...] = (False, True)


def batches_for(inference: Inference, persist: bool, stored: bool = False) -> tuple[Batch, ...]:
    """The batches that rewrite the lazy plan into the plan with these knobs (the third knob, join
    placement, is the ``RuleContext``'s; ``stored`` reads the store entries the context holds)."""
    batches = [Batch("normalize", FixedPoint(10), (fuse_pooling,))]
    if stored:
        batches.append(Batch("feature store", Once(), (use_stored_layers,)))
    if inference == "eager":
        batches.append(Batch("layer reuse", Once(), (reuse_layers,)))
    elif inference == "staged":
        batches.append(Batch("layer reuse", Once(), (stage_layers,)))
    batches.append(Batch("join placement", Once(), (place_join,)))
    if persist:
        batches.append(Batch("persistence", Once(), (persist_shared,)))
    return tuple(batches)


def alternative_name(
    inference: Inference, placement: Placement, persist: bool, stored: bool = False
) -> str:
    """E.g. ``eager/after_join/persist``, or ``lazy/before_join/recompute/stored``."""
    name = f"{inference}/{placement}/{'persist' if persist else 'recompute'}"
    return f"{name}/stored" if stored else name


@dataclass(frozen=True, slots=True)
class Knobs:
    """One setting of the driver's knobs: what an alternative's name spells, typed."""

    inference: Inference
    placement: Placement
    persist: bool
    stored: bool = False

    @property
    def name(self) -> str:
        return alternative_name(self.inference, self.placement, self.persist, self.stored)


@dataclass(frozen=True, slots=True)
class Alternative:
    """One rewritten plan and the knob settings that produce it.

    ``persist`` says whether the plan persists shared work (it has ``Persist`` nodes to be given a
    storage level); ``equivalents`` names the other knob settings that gave this very plan (for
    the lazy plan before the join nothing is shared, so persisting changes nothing), so filtering
    alternatives by a WITH override should consider them too.
    """

    inference: Inference
    placement: Placement
    persist: bool
    plan: Workload
    steps: tuple[Step, ...]
    equivalent_knobs: tuple[Knobs, ...] = ()
    """The other knob settings that gave this very plan, in the driver's order."""
    stored: bool = False
    """Whether the plan was rewritten to read layers from the feature store."""

    @property
    def knobs(self) -> tuple[Knobs, ...]:
        """This alternative's knob setting and its equivalents'."""
        own = Knobs(self.inference, self.placement, self.persist, self.stored)
        return (own, *self.equivalent_knobs)

    @property
    def name(self) -> str:
        return alternative_name(self.inference, self.placement, self.persist, self.stored)

    @property
    def equivalents(self) -> tuple[str, ...]:
        return tuple(knobs.name for knobs in self.equivalent_knobs)

    @property
    def names(self) -> tuple[str, ...]:
        """This alternative's name and its equivalents'."""
        return tuple(knobs.name for knobs in self.knobs)


def alternatives(
    query: TransferQuery,
    catalog: Catalog | None = None,
    *,
    strict: bool | None = None,
    stored: tuple[StoredLayer, ...] = (),
) -> list[Alternative]:
    """Every distinct plan for ``query``, rewritten from its lazy plan, in a fixed order: inference
    lazy, eager, staged; then placement before, after the join; then recompute, persist; then, when
    ``stored`` (the feature-store entries matching the statement) is not empty, the same again
    reading them.

    Plans equal in structure and in sharing are one alternative (the first setting in that order,
    with the others in ``equivalents``). Every alternative trains and evaluates the same (layer,
    model) pairs as the lazy plan (the driver checks it after every rule).
    """
    catalog = catalog if catalog is not None else current()
    start = lazy_plan(query, catalog)
    found: dict[object, Alternative] = {}
    for from_store in (False, True) if stored else (False,):
        for inference in INFERENCES:
            for placement in PLACEMENTS:
                for persist in PERSISTS:
                    knobs = Knobs(inference, placement, persist, from_store)
                    ctx = RuleContext(catalog=catalog, placement=placement, stored=stored)
                    plan, steps = run_batches(
                        start, batches_for(inference, persist, from_store), ctx, strict=strict
                    )
                    assert isinstance(plan, Workload)
                    key = sharing_key(plan)
                    if key in found:
                        first = found[key]
                        found[key] = replace(
                            first, equivalent_knobs=(*first.equivalent_knobs, knobs)
                        )
                    else:
                        found[key] = Alternative(
                            inference, placement, persist, plan, steps, stored=from_store
                        )
    return list(found.values())
