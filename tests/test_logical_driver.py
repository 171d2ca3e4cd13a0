"""The rule driver: strict-mode proofs, invariant checks, recorded steps, and the alternatives."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import pytest

from vista_sql.catalog import roster
from vista_sql.grammar.dialect import parse_one
from vista_sql.logical.builder import build
from vista_sql.logical.dag import sharing_key
from vista_sql.logical.driver import (
    Batch,
    FixedPoint,
    Once,
    RuleError,
    alternatives,
    batches_for,
    run_batches,
    strict_default,
)
from vista_sql.logical.lazy import lazy_plan
from vista_sql.logical.plan import (
    Assemble,
    Decode,
    Infer,
    LayerOut,
    Persist,
    Plan,
    Workload,
    transform_up,
)
from vista_sql.logical.query import TransferQuery
from vista_sql.logical.rules import RuleContext, fuse_pooling

CATALOG = roster()
CTX = RuleContext(catalog=CATALOG)


def query(layers: str = "fc6, fc7, fc8", cnn: str = "vgg16") -> TransferQuery:
    sql = (
        f"TRANSFER FEATURES OF 'images' AS i FROM CNN {cnn} LAYERS ({layers}) "
        "JOIN 'foods.csv' AS f ON i.id = f.id TRAIN LOGREG (max_iter = 5) LABEL healthy"
    )
    statement = build(parse_one(sql), sql, CATALOG)
    assert isinstance(statement, TransferQuery)
    return statement


def bump_batch_size(plan: Plan, ctx: RuleContext) -> Plan:
    """Never converges: every run changes every inference's batch size."""

    def bump(node: Plan) -> Plan:
        if isinstance(node, Infer):
            return replace(node, batch_size=(node.batch_size or 0) + 1)
        return node

    return transform_up(plan, bump)


def bump_batch_size_below_two(plan: Plan, ctx: RuleContext) -> Plan:
    """Not idempotent: a first run sets batch size 1, a second run 2, then it stops."""
    sizes = {node.batch_size or 0 for node in plan.walk() if isinstance(node, Infer)}
    return bump_batch_size(plan, ctx) if max(sizes) < 2 else plan


def rebuild_everything(plan: Plan, ctx: RuleContext) -> Plan:
    """Changes nothing but returns new objects: a rule that breaks 'same object when unchanged'."""
    return transform_up(plan, lambda node: replace(node))


def drop_a_branch(plan: Plan, ctx: RuleContext) -> Plan:
    assert isinstance(plan, Workload)
    return replace(plan, branches=plan.branches[1:], layers=plan.layers[1:])


def swap_inferred_layer(plan: Plan, ctx: RuleContext) -> Plan:
    """Makes the fc8 branch infer fc7: its Assemble no longer finds fc8 below it."""

    def swap(node: Plan) -> Plan:
        if isinstance(node, Infer) and node.outputs == (LayerOut("fc8", "features"),):
            return replace(node, outputs=(LayerOut("fc7", "features"),))
        return node

    return transform_up(plan, swap)


def fused_plan() -> Plan:
    plan, _ = run_batches(lazy_plan(query(), CATALOG), batches_for("lazy", False), CTX)
    return plan


def test_tests_run_the_driver_in_strict_mode() -> None:
    assert strict_default()


def test_a_fixed_point_batch_that_does_not_converge_raises_in_strict_mode() -> None:
    batch = Batch("bump", FixedPoint(max_iterations=5), (bump_batch_size,))
    with pytest.raises(RuleError, match="did not reach a fixed point in 5 passes"):
        run_batches(fused_plan(), (batch,), CTX, strict=True)


def test_a_fixed_point_batch_stops_at_its_limit_outside_strict_mode() -> None:
    batch = Batch("bump", FixedPoint(max_iterations=5), (bump_batch_size,))
    plan, steps = run_batches(fused_plan(), (batch,), CTX, strict=False)
    assert [step.iteration for step in steps] == [1, 2, 3, 4, 5]
    assert {node.batch_size for node in plan.walk() if isinstance(node, Infer)} == {5}


def test_a_once_batch_that_is_not_idempotent_raises_in_strict_mode() -> None:
    batch = Batch("bump", Once(), (bump_batch_size_below_two,))
    with pytest.raises(RuleError, match="not idempotent"):
        run_batches(fused_plan(), (batch,), CTX, strict=True)
    _, steps = run_batches(fused_plan(), (batch,), CTX, strict=False)
    assert len(steps) == 1 and steps[0].changed


def test_a_rule_rebuilding_an_identical_plan_raises_in_strict_mode() -> None:
    batch = Batch("noise", Once(), (rebuild_everything,))
    with pytest.raises(RuleError, match="rebuild_everything returned a new but identical plan"):
        run_batches(fused_plan(), (batch,), CTX, strict=True)


def test_a_rule_that_changes_the_outputs_is_caught() -> None:
    batch = Batch("broken", Once(), (drop_a_branch,))
    with pytest.raises(RuleError, match=r"changed the workload's outputs"):
        run_batches(fused_plan(), (batch,), CTX, strict=False)


def test_a_rule_that_makes_a_malformed_plan_is_caught() -> None:
    batch = Batch("broken", Once(), (swap_inferred_layer,))
    with pytest.raises(RuleError, match=r"Assemble \[all numeric\] \+ fc8.*needs fc8:features"):
        run_batches(fused_plan(), (batch,), CTX, strict=False)


def test_steps_record_every_rule_application() -> None:
    plan, steps = run_batches(lazy_plan(query(), CATALOG), batches_for("eager", True), CTX)
    assert [(s.batch, s.rule, s.iteration, s.changed) for s in steps] == [
        ("normalize", "fuse_pooling", 1, True),
        ("normalize", "fuse_pooling", 2, False),
        ("layer reuse", "reuse_layers", 1, True),
        ("join placement", "place_join", 1, False),
        ("persistence", "persist_shared", 1, True),
    ]
    assert steps[-1].after is plan
    assert all(a.after is b.before for a, b in pairwise(steps))


def test_three_layers_give_eleven_alternatives_in_a_fixed_order() -> None:
    found = alternatives(query(), CATALOG)
    assert [(a.name, a.equivalents) for a in found] == [
        ("lazy/before_join/recompute", ("lazy/before_join/persist",)),
        ("lazy/after_join/recompute", ()),
        ("lazy/after_join/persist", ()),
        ("eager/before_join/recompute", ()),
        ("eager/before_join/persist", ()),
        ("eager/after_join/recompute", ()),
        ("eager/after_join/persist", ()),
        ("staged/before_join/recompute", ()),
        ("staged/before_join/persist", ()),
        ("staged/after_join/recompute", ()),
        ("staged/after_join/persist", ()),
    ]
    for alternative in found:
        has_persist = any(isinstance(node, Persist) for node in alternative.plan.walk())
        assert has_persist == alternative.persist, alternative.name
        assert alternative.name.split("/") == [
            alternative.inference,
            alternative.placement,
            "persist" if alternative.persist else "recompute",
        ]


def test_one_layer_leaves_only_the_join_placement_to_choose() -> None:
    found = alternatives(query("fc7"), CATALOG)
    assert [(a.name, a.equivalents) for a in found] == [
        (
            "lazy/before_join/recompute",
            (
                "lazy/before_join/persist",
                "eager/before_join/recompute",
                "eager/before_join/persist",
                "staged/before_join/recompute",
                "staged/before_join/persist",
            ),
        ),
        (
            "lazy/after_join/recompute",
            (
                "lazy/after_join/persist",
                "eager/after_join/recompute",
                "eager/after_join/persist",
                "staged/after_join/recompute",
                "staged/after_join/persist",
            ),
        ),
    ]


def test_shared_work_is_one_object_and_unshared_work_is_not() -> None:
    by_name = {a.name: a.plan for a in alternatives(query(), CATALOG)}
    assemblies = [n for n in by_name["eager/before_join/persist"].walk() if isinstance(n, Assemble)]
    assert len({id(assemble.child) for assemble in assemblies}) == 1
    assert isinstance(assemblies[0].child, Persist)
    lazy_decodes = [
        n for n in by_name["lazy/before_join/recompute"].walk() if isinstance(n, Decode)
    ]
    assert len(lazy_decodes) == 3  # walk() yields each distinct object once: three decodes
    staged = by_name["staged/after_join/recompute"]
    inferences = [node for node in staged.walk() if isinstance(node, Infer)]
    assert [node.start for node in inferences] == ["fc7", "fc6", None]
    assert inferences[0].child is inferences[1] and inferences[1].child is inferences[2]


def test_alternatives_are_deterministic_and_fixed_points() -> None:
    first, second = alternatives(query(), CATALOG), alternatives(query(), CATALOG)
    assert [sharing_key(a.plan) for a in first] == [sharing_key(a.plan) for a in second]
    for alternative in first:
        ctx = RuleContext(catalog=CATALOG, placement=alternative.placement)
        batches = batches_for(alternative.inference, alternative.persist)
        again, steps = run_batches(alternative.plan, batches, ctx)
        assert again is alternative.plan, alternative.name
        assert not any(step.changed for step in steps)


def test_fuse_pooling_alone_is_the_lazy_alternative() -> None:
    lazy = alternatives(query("conv5_3, fc6"), CATALOG)[0].plan
    assert lazy == fuse_pooling(lazy_plan(query("conv5_3, fc6"), CATALOG), CTX)
