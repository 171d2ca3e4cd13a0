"""Eager inference: one pass of the CNN emits every requested layer.

Inferring each layer from the image repeats the convolutions below the lowest layer once per layer;
a multi-output model computes them once. The price is memory: all layers' features exist at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from vista_sql.logical.dag import rewrite_nodes
from vista_sql.logical.plan import Infer, LayerOut, Plan
from vista_sql.logical.rules._order import ordered_outputs
from vista_sql.logical.rules.base import RuleContext


def reuse_layers(plan: Plan, ctx: RuleContext) -> Plan:
    """Merge sibling inferences of the same CNN, weights and pooling over the same input into one
    inference emitting all their outputs; every branch then uses that one node, and the nodes above
    it that thereby become equal (the joins, before join placement) become one node too.

        Join                                Join           (one node, used by both branches)
          Infer vgg16 image -> {fc7}          Infer vgg16 image -> {fc6, fc7}
            Decode ...                          Decode ...
          TableScan f               =>        TableScan f
        Join
          Infer vgg16 image -> {fc6}
            Decode ...
          TableScan f
    """
    groups: dict[Infer, list[Infer]] = {}
    for node in plan.walk():
        if isinstance(node, Infer):
            groups.setdefault(replace(node, outputs=()), []).append(node)
    rewrites: dict[int, Callable[[Plan], Plan]] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        outputs = ordered_outputs(
            ctx.catalog, members[0].cnn, (out for member in members for out in member.outputs)
        )
        for member in members:
            # Equal results over equal inputs: rewrite_nodes makes them one shared node.
            rewrites[id(member)] = partial(_with_outputs, outputs=outputs)
    if not rewrites:
        return plan
    return rewrite_nodes(plan, rewrites, share_equal=True)


def _with_outputs(node: Plan, outputs: tuple[LayerOut, ...]) -> Plan:
    assert isinstance(node, Infer)
    return replace(node, outputs=outputs)
