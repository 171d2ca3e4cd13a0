"""What the store holds for a statement (the optimizer's look-up), and ``vista-sql cache list``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from vista_sql.catalog import Catalog
from vista_sql.logical.plan import OutputForm
from vista_sql.logical.query import TransferQuery
from vista_sql.logical.stored import StoredLayer
from vista_sql.physical.store.entries import FeatureStore
from vista_sql.physical.store.keys import StatementKeys, statement_keys
from vista_sql.physical.store.settings import store_settings
from vista_sql.units import format_bytes


def stored_layers(
    query: TransferQuery,
    catalog: Catalog,
    tables: Mapping[str, Any] | None = None,
    keys: StatementKeys | None = None,
    remote_executors: bool = False,
) -> tuple[StoredLayer, ...]:
    """The store's entries for ``query``'s images, CNN and weights: every transfer layer's
    features (under the statement's pooling) and resume tensor found. Empty when the store is
    off for the statement (``remote_executors``: see ``store_settings``) or its images are not a
    directory."""
    settings = store_settings(query.options, remote_executors)
    if not settings.enabled:
        return ()
    keys = keys if keys is not None else statement_keys(query, catalog, tables)
    info = catalog.cnn(query.cnn)
    if keys is None or info is None:
        return ()
    store = FeatureStore.of(settings)
    pooling = query.options.conv_pooling
    found: list[StoredLayer] = []
    for layer in info.layers:
        forms: list[OutputForm] = ["features"]
        if layer.resume_keras is not None:
            forms.append("resume")
        for form in forms:
            for entry in store.find(keys.key(layer, form, pooling)):
                found.append(entry.stored_layer(query.weights, pooling))
    return tuple(found)


def format_entries(store: FeatureStore) -> str:
    """``vista-sql cache list``: one line per entry, most recently used first, and the total."""
    entries = list(reversed(store.entries()))
    lines = [f"feature store {store.root}: {len(entries)} entries"]
    if entries:
        header = ("entry", "layer", "rows", "size", "last used", "images")
        rows = [
            (
                entry.name[:16],
                entry.describe(),
                str(entry.rows),
                format_bytes(entry.file_bytes),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.last_used)),
                str(entry.meta["images"]["path"]),
            )
            for entry in entries
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    total = sum(entry.file_bytes for entry in entries)
    lines.append(f"total {format_bytes(total)} of at most {format_bytes(store.max_bytes)}")
    return "\n".join(lines)
