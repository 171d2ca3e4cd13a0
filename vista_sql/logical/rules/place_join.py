"""Join placement: join the images with the table before inference, or after it.

Inferring before the join (the lazy plan's form) computes features for images that have no row in
the table, and joins wide feature rows; joining first infers only the matched rows and joins narrow
rows (keys, image bytes, structured columns), then carries the structured columns through decoding
and inference. Which is faster depends on the match rate and the feature sizes: the cost model
decides.
"""

from __future__ import annotations

from dataclasses import replace

from vista_sql.logical.plan import (
    Decode,
    ImageScan,
    Infer,
    Join,
    Persist,
    Plan,
    Pool,
    transform_up,
)
from vista_sql.logical.rules.base import RuleContext

_PIPELINE = (Decode, Infer, Pool, Persist)
"""Nodes with one input that an image pipeline is made of, from the scan up to the join."""


def place_join(plan: Plan, ctx: RuleContext) -> Plan:
    """With ``placement = after_join``, move every join below the image pipeline on its left: the
    images are joined with the table once (one join node, shared by every branch), and each branch's
    decode and inference run over the joined rows. ``before_join`` is the lazy plan's form: the plan
    is returned unchanged.

        Join ON i.id = f.id                 Infer vgg16 image -> {fc6}
          Infer vgg16 image -> {fc6}          Decode ...
            Decode ...               =>         Join ON i.id = f.id
              ImageScan i                         ImageScan i
          TableScan f                             TableScan f
    """
    if ctx.placement != "after_join":
        return plan
    rebuilt: dict[tuple[int, Plan, str, str], Plan] = {}
    joins: dict[Join, Join] = {}

    def over_joined_rows(node: Plan, join: Join) -> Plan:
        """``node`` (part of ``join``'s image pipeline) rebuilt over the joined rows."""
        key = (id(node), join.right, join.left_key, join.right_key)
        if key not in rebuilt:
            if isinstance(node, ImageScan):
                joined = replace(join, left=node)
                rebuilt[key] = joins.setdefault(joined, joined)
            else:
                rebuilt[key] = node.with_children((over_joined_rows(node.children[0], join),))
        return rebuilt[key]

    def push_below_pipeline(node: Plan) -> Plan:
        if isinstance(node, Join) and _is_image_pipeline(node.left):
            return over_joined_rows(node.left, node)
        return node

    return transform_up(plan, push_below_pipeline)


def _is_image_pipeline(node: Plan) -> bool:
    """A chain of decode/inference/pooling/persist, with a decode, down to an image scan."""
    decoded = False
    while isinstance(node, _PIPELINE):
        decoded = decoded or isinstance(node, Decode)
        node = node.child
    return decoded and isinstance(node, ImageScan)
