"""The entries on disk: finding, publishing, removing and evicting them (layout: the package
docstring)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vista_sql.logical.plan import WeightsSpec
from vista_sql.logical.stored import StoredLayer
from vista_sql.physical.store.settings import DEFAULT_MAX_BYTES, FORMAT, StoreSettings

ABANDONED_SECONDS = 24 * 3600
"""A write still in ``tmp/`` after this long was abandoned (its process died): eviction removes it.
No statement writes one layer for a day."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored layer: where it is and what ``entry.json`` says of it."""

    location: Path
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return self.location.name

    @property
    def key(self) -> str:
        return str(self.meta["key"])

    @property
    def rows(self) -> int:
        return int(self.meta["rows"])

    @property
    def errors(self) -> int:
        return int(self.meta.get("errors", 0))

    @property
    def file_bytes(self) -> int:
        return int(self.meta["file_bytes"])

    @property
    def key_type(self) -> str:
        return str(self.meta["key_type"])

    @property
    def data(self) -> Path:
        return self.location / "data"

    @property
    def last_used(self) -> float:
        """Seconds since the epoch of the last read or write (0 if the entry vanished)."""
        try:
            return (self.location / "used").stat().st_mtime
        except OSError:
            return 0.0

    def describe(self) -> str:
        meta = self.meta
        form = ":resume" if meta["form"] == "resume" else ""
        form += f" pooling={meta['pooling']}" if meta["pooling"] else ""
        return f"{meta['cnn']}.{meta['layer']}{form} ({meta['weights']})"

    def touch(self) -> None:
        """Mark the entry used now (for least-recently-used eviction)."""
        with contextlib.suppress(OSError):
            (self.location / "used").touch()

    def stored_layer(self, weights: WeightsSpec, pooling: str) -> StoredLayer:
        """The entry as the optimizer sees it, for a statement with this ``pooling`` (that of the
        entry when it depends on one, else the statement's)."""
        meta = self.meta
        return StoredLayer(
            cnn=str(meta["cnn"]),
            weights=weights,
            layer=str(meta["layer"]),
            form=meta["form"],
            pooling=str(meta["pooling"] or pooling),
            location=str(self.location),
            rows=self.rows,
            file_bytes=self.file_bytes,
            key_type=self.key_type,
            errors=self.errors,
        )


class FeatureStore:
    """The entries under one cache directory, with the size limit that bounds them."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES):
        self.root = Path(directory).expanduser() / "store" / f"v{FORMAT}"
        self.max_bytes = max_bytes

    @classmethod
    def of(cls, settings: StoreSettings) -> FeatureStore:
        return cls(settings.directory, settings.max_bytes)

    @property
    def entries_dir(self) -> Path:
        return self.root / "entries"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def find(self, key: str) -> list[Entry]:
        """The complete entries of ``key`` (one per key type it was written under)."""
        if not self.entries_dir.is_dir():
            return []
        found = []
        for location in sorted(self.entries_dir.glob(f"{key}.*")):
            entry = read_entry(location)
            if entry is not None:
                found.append(entry)
        return found

    def entries(self) -> list[Entry]:
        """Every complete entry, least recently used first (then by name)."""
        if not self.entries_dir.is_dir():
            return []
        found = [read_entry(p) for p in sorted(self.entries_dir.iterdir()) if p.is_dir()]
        return sorted((e for e in found if e is not None), key=lambda e: (e.last_used, e.name))

    def total_bytes(self) -> int:
        return sum(entry.file_bytes for entry in self.entries())

    def begin(self) -> Path:
        """A new empty directory to write an entry into (then :meth:`commit` it)."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        staging = self.tmp_dir / f"{uuid.uuid4().hex}"
        staging.mkdir()
        return staging

    def commit(self, staging: Path, key: str, meta: dict[str, Any]) -> Entry | None:
        """Publish the entry written in ``staging`` (its ``data/``) under ``key``: sizes it,
        writes ``entry.json`` last and renames the whole into place. None (and ``staging``
        removed) when another process published the same entry first."""
        data = staging / "data"
        file_bytes = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        meta = {**meta, "format": FORMAT, "key": key, "file_bytes": file_bytes}
        meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        (staging / "used").touch()
        partial = staging / "entry.json.partial"
        partial.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        partial.rename(staging / "entry.json")
        self.entries_dir.mkdir(parents=True, exist_ok=True)
        target = self.entries_dir / f"{key}.{meta['key_type']}"
        try:
            staging.rename(target)
        except OSError:  # published meanwhile by another process (the target is not empty)
            shutil.rmtree(staging, ignore_errors=True)
            return None
        return read_entry(target)

    def abandon(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def remove(self, entry: Entry) -> bool:
        """Remove one entry: renamed out of ``entries/`` first, so no reader sees half of it."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        trash = self.tmp_dir / f"removed-{uuid.uuid4().hex}"
        try:
            entry.location.rename(trash)
        except OSError:  # already removed by someone else
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def evict(self, max_bytes: int | None = None) -> list[Entry]:
        """Remove least recently used entries until the store holds at most ``max_bytes``, and
        what writers that died left in ``tmp/`` more than ``ABANDONED_SECONDS`` ago."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        removed: list[Entry] = []
        with self._locked():
            if self.tmp_dir.is_dir():
                for leftover in self.tmp_dir.iterdir():
                    with contextlib.suppress(OSError):
                        if time.time() - leftover.stat().st_mtime > ABANDONED_SECONDS:
                            shutil.rmtree(leftover, ignore_errors=True)
            entries = self.entries()
            size = sum(entry.file_bytes for entry in entries)
            for entry in entries:
                if size <= limit:
                    break
                if self.remove(entry):
                    removed.append(entry)
                size -= entry.file_bytes
        return removed

    def clear(self) -> int:
        """Remove every entry and every leftover of an interrupted write; how many entries."""
        with self._locked():
            count = sum(1 for entry in self.entries() if self.remove(entry))
            if self.tmp_dir.is_dir():
                for leftover in self.tmp_dir.iterdir():
                    shutil.rmtree(leftover, ignore_errors=True)
        return count

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def read_entry(location: Path) -> Entry | None:
    """The entry at ``location``, or None when it is not a complete entry (or just vanished)."""
    try:
        meta = json.loads((location / "entry.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return None
    return Entry(location, meta)
