"""The cost model's entry point for one statement: statistics, resources, alternatives, choice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vista_sql.catalog import Catalog
from vista_sql.cost_model.optimizer import Decision, choose
from vista_sql.cost_model.resources import Resources, detect_resources
from vista_sql.cost_model.stats import DataStats, gather_stats
from vista_sql.logical.driver import alternatives
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
) -> Decision:
    """Every alternative of ``query`` estimated and the fastest that fits chosen.

    Statistics default to what file listings and metadata tell (``gather_stats``); resources to
    the WITH options, then the machine (``detect_resources``). ``stored``: the feature-store
    entries matching the statement (``vista_sql.physical.store.stored_layers``), which add the
    plans that read them. Raises ``ResourceError`` when no plan fits.
    """
    stats = stats if stats is not None else gather_stats(query, tables)
    resources = resources if resources is not None else detect_resources(query.options)
    options = alternatives(query, catalog, stored=stored)
    return choose(query, options, catalog, stats, resources)
