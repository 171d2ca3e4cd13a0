"""The cost model's entry point for one statement: statistics, resources, alternatives, choice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vista_sql.catalog import Catalog
from vista_sql.cost_model.constants import CostConstants
from vista_sql.cost_model.optimizer import Decision, choose
from vista_sql.cost_model.resources import Resources, detect_resources
from vista_sql.cost_model.stats import DataStats, gather_stats
from vista_sql.logical.driver import Alternative, alternatives
from vista_sql.logical.query import TransferQuery
from vista_sql.logical.stored import StoredLayer


def decide(
    query: TransferQuery,
    catalog: Catalog,
    tables: Mapping[str, Any] | None = None,
    *,
    stats: DataStats | None = None,
    resources: Resources | None = None,
    stored: tuple[StoredLayer, ...] = (),
    alternative: str | None = None,
    consts: CostConstants | None = None,
) -> Decision:
    """Every alternative of ``query`` estimated and the fastest that fits chosen.

    Statistics default to what file listings and metadata tell (``gather_stats``); resources to
    the WITH options, then the machine (``detect_resources``). ``stored``: the feature-store
    entries matching the statement (``vista_sql.physical.store.stored_layers``), which add the
    plans that read them. Raises ``ResourceError`` when no plan fits.

    ``alternative`` (internal, not part of the statement language): consider only the logical
    alternative of that name (``eager/after_join/persist``, or any knob setting equivalent to it),
    its physical choices still searched as usual. The calibration benchmark uses it to measure
    every plan the optimizer compares, including the ``recompute`` ones, which WITH cannot force
    (WITH ``persist`` names a storage level, so it implies persisting). ``ValueError`` when no
    alternative has that name.

    ``consts``: the cost constants (default ``constants()``; a re-plan after a run out of memory
    passes them corrected, ``physical.oom``).
    """
    stats = stats if stats is not None else gather_stats(query, tables)
    resources = resources if resources is not None else detect_resources(query.options)
    options = alternatives(query, catalog, stored=stored)
    if alternative is not None:
        options = only(options, alternative)
    return choose(query, options, catalog, stats, resources, consts)


def only(options: list[Alternative], name: str) -> list[Alternative]:
    """The alternative named ``name`` (or with ``name`` among its equivalents), as a list."""
    named = [a for a in options if name in a.names]
    if not named:
        known = ", ".join(n for a in options for n in a.names)
        raise ValueError(f"no plan alternative {name!r}; the statement has: {known}")
    return named
