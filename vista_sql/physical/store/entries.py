"""The entries on disk: finding, publishing, removing and evicting them (layout: the package
docstring)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Any

from vista_sql.logical.plan import WeightsSpec
from vista_sql.logical.stored import StoredLayer
from vista_sql.physical.store.keys import listing_digest
from vista_sql.physical.store.settings import (
    DEFAULT_MAX_BYTES,
    DIR_ENV,
    FORMAT,
    PRIVATE_MODE,
    SHARED_ENV,
    StoreError,
    StoreSettings,
)

FILES = "files.json"
"""An entry's images: relative path -> identity (``keys.image_listing``), beside ``data/``."""
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

    @property
    def listing(self) -> str:
        """``listing_digest`` of the images the entry holds (``files.json``)."""
        return str(self.meta["images"]["listing"])

    def files(self) -> dict[str, str] | None:
        """The images the entry holds (relative path -> identity, as ``keys.image_listing``
        gives them when it was written); None when ``files.json`` is unreadable or not the one
        the entry recorded."""
        try:
            files = json.loads((self.location / FILES).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            return None
        return files if listing_digest(files) == self.listing else None

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
        self.directory = Path(directory).expanduser()
        self.root = self.directory / "store" / f"v{FORMAT}"
        self.max_bytes = max_bytes
        check_owner(self.directory, self.root)

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
        self._private(self.tmp_dir)
        staging = self.tmp_dir / f"{uuid.uuid4().hex}"
        staging.mkdir(mode=PRIVATE_MODE)
        return staging

    def _private(self, directory: Path) -> None:
        """Create ``directory`` and the store's directories above it, each 0700.

        The cache directory itself is made 0700 only when the store creates it: a directory the
        user named (``/tmp``, a home directory) keeps its mode; ``store/`` below it is private.
        """
        if not self.directory.is_dir():
            self.directory.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
        for path in (self.directory / "store", self.root, directory):
            if not path.is_dir():
                path.mkdir(mode=PRIVATE_MODE, exist_ok=True)
            if path.stat().st_uid == os.geteuid():  # a shared store's owner keeps its modes
                path.chmod(PRIVATE_MODE)

    def commit(
        self, staging: Path, key: str, meta: dict[str, Any], files: Mapping[str, str]
    ) -> Entry | None:
        """Publish the entry written in ``staging`` (its ``data/``) under ``key``, holding the
        images ``files`` (relative path -> identity): sizes it, writes ``files.json`` and
        ``entry.json`` last and renames the whole into place (entries of the key for other images
        stay until :meth:`supersede`). None (and ``staging`` removed) when another process
        published the same entry first."""
        data = staging / "data"
        (staging / FILES).write_text(json.dumps(dict(sorted(files.items()))))
        images = {**meta.get("images", {}), "listing": listing_digest(files), "files": len(files)}
        file_bytes = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        meta = {
            **meta,
            "images": images,
            "format": FORMAT,
            "key": key,
            "file_bytes": file_bytes,
            "data_sha256": data_digest(data),
        }
        meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        (staging / "used").touch()
        partial = staging / "entry.json.partial"
        partial.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        partial.rename(staging / "entry.json")
        self._private(self.entries_dir)
        target = self.entries_dir / f"{key}.{meta['key_type']}.{images['listing'][:16]}"
        try:
            staging.rename(target)
        except OSError:  # published meanwhile by another process (the target is not empty)
            shutil.rmtree(staging, ignore_errors=True)
            return None
        return read_entry(target)

    def supersede(self, entry: Entry) -> list[Entry]:
        """Remove the entries of ``entry``'s key and key type written before it (for the images
        as they were then): called when the statement that wrote ``entry`` has ended, since it
        may have read them until then."""
        removed = []
        for older in self.find(entry.key):
            same_ids = older.key_type == entry.key_type
            if older.location != entry.location and same_ids and self.remove(older):
                removed.append(older)
        return removed

    def abandon(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def remove(self, entry: Entry) -> bool:
        """Remove one entry: renamed out of ``entries/`` first, so no reader sees half of it."""
        self._private(self.tmp_dir)
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

    def verify(self, entry: Entry) -> str | None:
        """Why ``entry``'s data is not what was written (its files' digest differs from the one
        ``entry.json`` recorded, or it recorded none), or None when it is."""
        recorded = entry.meta.get("data_sha256")
        if not isinstance(recorded, str):
            return "it records no digest of its data"
        if entry.files() is None:
            return f"its list of images ({FILES}) is missing or not the one written"
        try:
            found = data_digest(entry.data)
        except (OSError, ValueError) as error:
            return f"its data cannot be checked: {error}"
        if found != recorded:
            return (
                f"its data files have SHA-256 {found[:16]}..., not the {recorded[:16]}... written"
            )
        return None

    def checked(self, stored: tuple[StoredLayer, ...]) -> tuple[tuple[StoredLayer, ...], list[str]]:
        """``stored`` less the entries that fail :meth:`verify`, which are removed (a statement
        then recomputes those layers); and what was wrong with each removed entry."""
        kept: list[StoredLayer] = []
        dropped: list[str] = []
        for layer in stored:
            entry = read_entry(Path(layer.location))
            reason = "it vanished" if entry is None else self.verify(entry)
            if reason is None:
                kept.append(layer)
                continue
            if entry is not None:
                self.remove(entry)
            dropped.append(
                f"{layer.cnn}.{layer.layer} ({layer.form}) at {layer.location}: {reason}"
            )
        return tuple(kept), dropped

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._private(self.root)
        with open(self.root / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def data_digest(data: Path) -> str:
    """SHA-256 over an entry's data files, each by relative path and content, in path order.

    Only regular files count; a symbolic link (or anything else) in the data is an error, never
    followed.
    """
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(data):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if not S_ISREG(path.lstat().st_mode):
                raise ValueError(f"{path} is not a regular file")
            digest.update(f"{path.relative_to(data)}\0{path.lstat().st_size}\0".encode())
            with open(path, "rb", opener=_no_follow) as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


def check_owner(*directories: Path) -> None:
    """Refuse a store directory owned by another user (its entries would be features that user
    chose), unless ``$VISTA_SQL_CACHE_SHARED`` says to trust it."""
    if os.environ.get(SHARED_ENV, "").lower() in ("1", "true", "yes", "on"):
        return
    for directory in directories:
        try:
            owner = directory.lstat().st_uid
        except OSError:
            continue  # not there yet: created private
        if owner != os.geteuid():
            raise StoreError(
                f"the feature store directory {directory} belongs to user id {owner}, not to you"
                f" ({os.geteuid()}); its entries would be features another user chose. Use"
                f" another cache_dir (WITH (cache_dir = '...') or ${DIR_ENV}), or set"
                f" {SHARED_ENV}=1 to trust it"
            )


def read_entry(location: Path) -> Entry | None:
    """The entry at ``location``, or None when it is not a complete entry (or just vanished)."""
    try:
        meta = json.loads((location / "entry.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return None
    return Entry(location, meta)
