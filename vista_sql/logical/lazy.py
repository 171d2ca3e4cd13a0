"""The lazy logical plan: the workload exactly as the VISTA paper states it, before any rewrite.

For every requested layer l, top layer first::

    Evaluate l
      Train M on l
        Assemble [x] + l
          Join                      (image side left, table right)
            Pool l                  (conv layers, unless conv_pooling = none)
              Infer image -> {l:activation}
                Decode
                  ImageScan
            TableScan

Each layer is inferred from the image on its own (the paper's Naive plan): the decode and the
convolutions are repeated per layer, in equal but distinct nodes, so nothing computed is shared.
Only the two scans are shared objects (a source is the same source for every branch). The
rewrites in ``vista_sql.logical.rules`` turn this into the other plans.
"""

from __future__ import annotations

from vista_sql.catalog import Catalog, current
from vista_sql.errors import SemanticError
from vista_sql.logical.plan import (
    Assemble,
    Decode,
    Evaluate,
    ImageScan,
    Infer,
    Join,
    LayerOut,
    Plan,
    Pool,
    TableScan,
    Train,
    Workload,
)
from vista_sql.logical.query import TransferQuery


def lazy_plan(query: TransferQuery, catalog: Catalog | None = None) -> Workload:
    """The lazy (one full inference per layer, infer then join) plan of a checked statement."""
    catalog = catalog if catalog is not None else current()
    cnn = catalog.cnn(query.cnn)
    if cnn is None:
        raise SemanticError.at(
            f"Unknown CNN {query.cnn}", query.sql, query.origins.get("cnn")
        )  # the builder checked it against the catalog of its time; the catalog changed since
    pooling = query.options.conv_pooling
    images = ImageScan(
        source=query.image_source,
        alias=query.image_alias,
        column=query.image_column,
        origin=query.origins.get("images"),
    )
    table = TableScan(
        source=query.table_source,
        alias=query.table_alias,
        features=query.features,
        origin=query.origins.get("table"),
    )
    branches: list[Plan] = []
    for name in query.layers:
        layer = cnn.layer(name)
        if layer is None:
            raise SemanticError.at(
                f"Unknown layer {name} of CNN {cnn.name}", query.sql, query.origins.get("layers")
            )
        decoded = Decode(child=images, cnn=cnn.name, size=cnn.input_size, preprocess=cnn.preprocess)
        image_side: Plan = Infer(
            child=decoded,
            cnn=cnn.name,
            weights=query.weights,
            start=None,
            outputs=(LayerOut(layer.name, "activation"),),
            pooling=pooling,
        )
        if layer.kind == "conv" and pooling != "none":
            image_side = Pool(child=image_side, layer=layer.name, pooling=pooling)
        joined = Join(
            left=image_side,
            right=table,
            left_key=f"{query.image_alias}.{query.image_key}",
            right_key=f"{query.table_alias}.{query.table_key}",
            origin=query.origins.get("on"),
        )
        assembled = Assemble(
            child=joined, layer=layer.name, features=query.features, label=query.label
        )
        trained = Train(
            child=assembled,
            layer=layer.name,
            model=query.model,
            label=query.label,
            validate=query.validate,
            seed=query.validate_seed,
            search=query.options.search,
        )
        branches.append(Evaluate(child=trained, layer=layer.name))
    return Workload(branches=tuple(branches), layers=query.layers)
