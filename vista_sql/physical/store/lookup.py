"""What the store holds for a statement (the optimizer's look-up), and ``vista-sql cache list``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vista_sql.catalog import Catalog
from vista_sql.logical.plan import ImageFiles, OutputForm, WeightsSpec
from vista_sql.logical.query import TransferQuery
from vista_sql.logical.stored import StoredLayer
from vista_sql.physical.store.entries import Entry, FeatureStore
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
    directory.

    An entry written before images were added, removed or changed is found too, with the
    images it lacks (``missing``: to infer) and those whose rows must not be read (``dropped``);
    one that holds none of the images as they are now is not. A layer may be held by several
    entries of one key (a whole one, and segments holding images added since: see
    ``spark_io.StoreWriter``): each image is read from one of them (``group``), those holding
    the most images first, and ``missing`` is what none holds."""
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
            by_type: dict[str, list[Entry]] = {}
            for entry in store.find(keys.key(layer, form, pooling)):
                by_type.setdefault(entry.key_type, []).append(entry)
            groups = [_group(entries, keys, query.weights, pooling) for entries in by_type.values()]
            groups.sort(key=lambda group: -sum(stored.rows for stored in group))
            for group in groups:
                found.extend(group)
    return tuple(found)


def _group(
    entries: list[Entry], keys: StatementKeys, weights: WeightsSpec, pooling: str
) -> list[StoredLayer]:
    """The entries of one key and key type as ``StoredLayer``s that together give each image
    of the statement at most once: each image from the entry holding the most images unchanged
    that holds it, the rest of every entry's rows ``dropped``; ``missing`` the images none holds.

    An entry whose list of images cannot be read counts as holding them all: the digest check
    before the run (``FeatureStore.checked``) removes it."""
    current = keys.files
    held = {entry.location: entry.files() for entry in entries}
    if any(files is None for files in held.values()):
        bad = next(entry for entry in entries if held[entry.location] is None)
        return [bad.stored_layer(weights, pooling)]

    def unchanged(entry: Entry) -> set[str]:
        files = held[entry.location] or {}
        return {path for path, identity in files.items() if current.get(path) == identity}

    assigned: set[str] = set()
    parts: list[tuple[Entry, set[str]]] = []
    for entry in sorted(entries, key=lambda e: (-len(unchanged(e)), e.name)):
        mine = unchanged(entry) - assigned
        if mine:
            parts.append((entry, mine))
            assigned |= mine
    missing = sorted(set(current) - assigned)
    group = parts[0][0].key if parts else ""
    result = []
    for entry, mine in parts:
        layer = entry.stored_layer(weights, pooling)
        dropped = sorted(set(held[entry.location] or {}) - mine)
        result.append(
            replace(
                layer,
                rows=max(0, layer.rows - len(dropped)),
                dropped=ImageFiles.of(dropped) if dropped else None,
                missing=ImageFiles.of(missing) if missing else None,
                group=f"{group}.{entry.key_type}",
            )
        )
    return result


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
