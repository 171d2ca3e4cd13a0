"""Fold pooling into the inference, so that every inference emits the features its consumers use.

Pooling inside the inference pass (one TensorFlow graph ending in the pooling) never materializes a
convolutional layer's full activation, which is often far larger than its pooled feature; and once
every inference emits features, inferences that differ only in their outputs can be merged
(``reuse_layers``) or chained (``stage_layers``).
"""

from __future__ import annotations

from dataclasses import replace

from vista_sql.logical.plan import Infer, LayerOut, Plan, Pool, transform_up
from vista_sql.logical.rules.base import RuleContext


def fuse_pooling(plan: Plan, ctx: RuleContext) -> Plan:
    """Pool over an inference becomes the inference emitting the pooled features; an activation
    that already is the feature (an fc layer, or ``conv_pooling = none``) is named a feature.

        Pool conv5 max2x2                 Infer alexnet image -> {conv5} pooling=max2x2
          Infer alexnet image       =>      Decode ...
              -> {conv5:activation}
            Decode ...

        Infer alexnet image -> {fc6:activation}   =>   Infer alexnet image -> {fc6}
    """

    def fuse(node: Plan) -> Plan:
        match node:
            case Pool(
                child=Infer(outputs=(LayerOut(layer=layer, form="activation"),)) as infer,
                layer=pooled,
                pooling=pooling,
            ) if layer == pooled and infer.pooling == pooling:
                return replace(infer, outputs=(LayerOut(layer, "features"),))
            case Infer(outputs=outputs) if any(
                _activation_is_feature(ctx, node, output) for output in outputs
            ):
                renamed = (
                    LayerOut(output.layer, "features")
                    if _activation_is_feature(ctx, node, output)
                    else output
                    for output in outputs
                )
                return replace(node, outputs=tuple(dict.fromkeys(renamed)))
        return node

    return transform_up(plan, fuse)


def _activation_is_feature(ctx: RuleContext, infer: Infer, output: LayerOut) -> bool:
    if output.form != "activation":
        return False
    cnn = ctx.catalog.cnn(infer.cnn)
    layer = cnn.layer(output.layer) if cnn is not None else None
    return layer is not None and (layer.kind != "conv" or infer.pooling == "none")
