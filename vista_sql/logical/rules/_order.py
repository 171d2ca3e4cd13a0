"""The order of inference outputs: bottom layer first; features, then activation, then resume."""

from __future__ import annotations

from collections.abc import Iterable

from vista_sql.catalog import Catalog
from vista_sql.logical.plan import LayerOut

_FORM_RANK = {"features": 0, "activation": 1, "resume": 2}


def ordered_outputs(
    catalog: Catalog, cnn: str, outputs: Iterable[LayerOut]
) -> tuple[LayerOut, ...]:
    """``outputs`` without repeats, in the order the network computes them."""
    info = catalog.cnn(cnn)
    names = info.layer_names if info is not None else ()

    def position(output: LayerOut) -> tuple[int, int, str]:
        index = names.index(output.layer) if output.layer in names else len(names)
        return index, _FORM_RANK[output.form], output.layer

    return tuple(sorted(set(outputs), key=position))
