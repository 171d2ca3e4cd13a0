"""Staged inference: each layer is inferred from the stored output of the layer below it.

Where eager inference holds every layer's features at once, staging computes one layer at a time,
each stage resuming from the tensor the previous stage stored (the catalog's ``resume`` of that
layer), so the convolutions are still done once while only two stages' data need exist together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from vista_sql.catalog import CnnInfo
from vista_sql.logical.dag import rewrite_nodes
from vista_sql.logical.plan import Infer, LayerOut, Plan
from vista_sql.logical.rules.base import RuleContext


def stage_layers(plan: Plan, ctx: RuleContext) -> Plan:
    """Chain sibling inferences from the image (same CNN, weights, pooling and input), each emitting
    one layer's features, into stages: the first infers the lowest layer from the image, each next
    one resumes from the previous stage's stored tensor. A stage emits its layer's features and,
    when a later stage needs it, the resume tensor; it passes earlier stages' features through, and
    each branch reads the stage of its layer. A layer that stores no resume tensor shares its stage
    with the layer above it. An eager inference (one pass, several layers) is left alone.

        Infer vgg16 image -> {fc8}          Infer vgg16 fc7:resume -> {fc8}
        Infer vgg16 image -> {fc7}    =>      Infer vgg16 fc6:resume -> {fc7, fc7:resume}
        Infer vgg16 image -> {fc6}              Infer vgg16 image -> {fc6, fc6:resume}
          (each over Decode ...)                  Decode ...
    """
    groups: dict[Infer, list[Infer]] = {}
    for node in plan.walk():
        if (
            isinstance(node, Infer)
            and node.start is None
            and len(node.outputs) == 1
            and node.outputs[0].form == "features"
        ):
            groups.setdefault(replace(node, outputs=()), []).append(node)
    rewrites: dict[int, Callable[[Plan], Plan]] = {}
    for members in groups.values():
        cnn = ctx.catalog.cnn(members[0].cnn)
        if cnn is None:
            continue
        layers = sorted({member.outputs[0].layer for member in members}, key=cnn.layer_names.index)
        if len(layers) < 2:
            continue
        stage_of = _stages(members[0], cnn, layers)
        for member in members:
            rewrites[id(member)] = partial(_replaced_by, stage_of[member.outputs[0].layer])
    if not rewrites:
        return plan
    return rewrite_nodes(plan, rewrites, share_equal=True)


def _stages(template: Infer, cnn: CnnInfo, layers: list[str]) -> dict[str, Infer]:
    """The chain of stages for ``layers`` (bottom to top), and the stage that emits each layer."""
    stage_of: dict[str, Infer] = {}
    below = template.child
    start: str | None = None
    pending: list[str] = []
    for position, name in enumerate(layers):
        pending.append(name)
        info = cnn.layer(name)
        is_last = position == len(layers) - 1
        if not is_last and (info is None or info.resume_shape is None):
            continue  # nothing to resume from here: the next layer joins this stage
        outputs = tuple(LayerOut(layer, "features") for layer in pending)
        if not is_last:
            outputs += (LayerOut(name, "resume"),)
        stage = replace(template, child=below, start=start, outputs=outputs)
        for layer in pending:
            stage_of[layer] = stage
        below, start, pending = stage, name, []
    return stage_of


def _replaced_by(stage: Infer, _member: Plan) -> Plan:
    return stage
