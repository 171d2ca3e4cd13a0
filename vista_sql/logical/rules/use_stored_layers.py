"""Read layers that an earlier statement stored instead of inferring them from the images.

The feature store keeps every CNN layer a statement materialized, keyed by the images, the CNN,
its weights, the layer and the pooling (``vista_sql.physical.store``). A layer found there is a
source like a table: its features need no decoding and no convolution, and a layer above a stored
one needs only the segment of the network between them. Whether reading is cheaper than inferring
is the cost model's call: the driver offers the plans with and without this rule.

An entry written before the image directory changed still holds the images that did not change:
the rule reads those rows and infers only the images the entry lacks (added or changed since),
the two parts side by side in a ``UnionAll``; rows of images removed or changed are never read.
A layer held by several entries (one, and segments written for images added since) reads each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from vista_sql.catalog import CnnInfo
from vista_sql.logical.dag import rewrite_nodes
from vista_sql.logical.plan import (
    Decode,
    ImageScan,
    Infer,
    LayerOut,
    OutputForm,
    Plan,
    StoredScan,
    UnionAll,
)
from vista_sql.logical.rules.base import RuleContext
from vista_sql.logical.stored import StoredLayer, provides


def use_stored_layers(plan: Plan, ctx: RuleContext) -> Plan:
    """An inference from the image of one layer's features becomes a scan of that layer's stored
    features; failing that, an inference resuming from the highest stored layer below it.

        Infer vgg16 image -> {fc7}           StoredScan 'images' AS i: reads stored vgg16.fc7
          Decode ...                   =>      ... from <store>/entries/<key>
            ImageScan 'images' AS i

        Infer vgg16 image -> {fc8}           Infer vgg16 fc7:resume -> {fc8}
          Decode ...                   =>      StoredScan ...: reads stored vgg16.fc7:resume ...
            ImageScan 'images' AS i          (fc8 not stored, fc7 is)

        Infer vgg16 image -> {fc7}           UnionAll
          Decode ...                   =>      StoredScan ...: reads stored vgg16.fc7 ... 1,900
            ImageScan 'images' AS i              rows (not the 100 images removed or changed)
                                               Infer vgg16 image -> {fc7}
                                                 Decode ...
          (200 images added or changed           ImageScan 'images' AS i: only the 200 images
           since fc7 was stored)                   new or changed since stored

    Only entries of the inference's CNN, weights and pooling count; every use of one entry in
    one form is one shared scan node (and every inference of the same missing images one node,
    which the layer-reuse rules then share like any other).
    """
    if not ctx.stored:
        return plan
    scans: dict[tuple[str, OutputForm], Plan] = {}
    rewrites: dict[int, Callable[[Plan], Plan]] = {}
    for node in plan.walk():
        if not _reads_images_for_one_layer(node):
            continue
        assert isinstance(node, Infer)
        cnn = ctx.catalog.cnn(node.cnn)
        if cnn is None:
            continue
        replacement = _from_store(node, cnn, ctx.stored, scans)
        if replacement is not None:
            rewrites[id(node)] = partial(_replaced_by, replacement)
    if not rewrites:
        return plan
    return rewrite_nodes(plan, rewrites, share_equal=True)


def _reads_images_for_one_layer(node: Plan) -> bool:
    return (
        isinstance(node, Infer)
        and node.start is None
        and len(node.outputs) == 1
        and node.outputs[0].form == "features"
        and isinstance(node.child, Decode)
        and isinstance(node.child.child, ImageScan)
        and node.child.child.files is None  # not the images a stored layer lacks
    )


def _from_store(
    infer: Infer,
    cnn: CnnInfo,
    stored: tuple[StoredLayer, ...],
    scans: dict[tuple[str, OutputForm], Plan],
) -> Plan | None:
    """The stored scan (or resumed inference) that replaces ``infer``, or None."""
    assert isinstance(infer.child, Decode) and isinstance(infer.child.child, ImageScan)
    images = infer.child.child
    target = infer.outputs[0].layer
    usable = [s for s in stored if s.cnn == cnn.name and s.weights == infer.weights]

    def scan(layer: str, form: OutputForm) -> Plan | None:
        info = cnn.layer(layer)
        assert info is not None
        first = next((s for s in usable if form in provides(info, s, infer.pooling)), None)
        if first is None:
            return None
        # the entries that hold the layer together with the first (one each, unless segments)
        group = [s for s in usable if s.group == first.group] if first.group else [first]
        if any(form not in provides(info, s, infer.pooling) for s in group):
            group = [first]
        key = (layer, form)
        if key not in scans:
            parts: list[Plan] = [
                StoredScan(
                    source=images.source,
                    alias=images.alias,
                    cnn=cnn.name,
                    weights=infer.weights,
                    layer=layer,
                    form=form,
                    pooling=infer.pooling,
                    location=entry.location,
                    rows=entry.rows,
                    file_bytes=entry.file_bytes,
                    origin=images.origin,
                    dropped=entry.dropped,
                )
                for entry in group
            ]
            if first.missing is not None:
                # the images no entry holds, inferred to the same layer and form
                assert isinstance(infer.child, Decode)
                missing = replace(images, files=first.missing)
                parts.append(
                    replace(
                        infer,
                        child=replace(infer.child, child=missing),
                        start=None,
                        outputs=(LayerOut(layer, form),),
                    )
                )
            scans[key] = parts[0] if len(parts) == 1 else UnionAll(tuple(parts))
        return scans[key]

    features = scan(target, "features")
    if features is not None:
        return features
    for below in reversed(cnn.layer_names[: cnn.index(target)]):
        resume = scan(below, "resume")
        if resume is not None:
            return replace(infer, child=resume, start=below)
    return None


def _replaced_by(replacement: Plan, _node: Plan) -> Plan:
    return replacement
