"""The feature store: CNN layers that statements materialized, kept on disk and read again.

Model selection transfers the same images again and again, with other layers, other structured
features, other downstream models. Every CNN layer a statement materializes anyway (a persisted
inference, a layer's branch table) is kept here as Parquet, and a later statement over the same
images, CNN and weights reads it instead of decoding and inferring (the optimizer decides, see
``vista_sql.logical.rules.use_stored_layers``), like a database's materialized view.

Nothing here imports Spark (``store_io`` reads and writes the Parquet with Spark): EXPLAIN, the
optimizer's look-up and ``vista-sql cache list | clear`` use this module alone.

**Where.** ``WITH (cache_dir = '...')``, else ``$VISTA_SQL_CACHE_DIR``, else
``$XDG_CACHE_HOME/vista_sql``, else ``~/.cache/vista_sql``. ``WITH (cache = false)`` turns the store
off for one statement; ``VISTA_SQL_CACHE=0`` makes off the default (``cache = true`` still turns
it on). Its size is bounded by ``$VISTA_SQL_CACHE_SIZE`` (a size like ``'10g'``, default 10 GiB):
after each write the least recently used entries are removed until it fits.

**Layout.** ::

    <cache_dir>/store/v1/
        entries/<key>.<key type>/entry.json      what the entry holds (see ``Entry``)
        entries/<key>.<key type>/data/*.parquet  (_vista_key, values array<float>, _error string)
        entries/<key>.<key type>/used            its modification time is the entry's last use
        tmp/<random>/                            entries being written
        lock                                     flock(2) held while evicting or clearing

An entry is written under ``tmp/`` and renamed into ``entries/`` when complete (``entry.json`` is
written last, inside it), so a reader sees a whole entry or none, and two processes writing the
same entry cannot mix their files: the second rename fails and its copy is dropped. Removal renames
the entry out of ``entries/`` first. The key type (the Spark type of the image ids, cast from file
names to the structured key's type) is part of the name because it changes the ids themselves.

**Key.** SHA-256 of: the store format; the image source's fingerprint; the CNN's identity; the
weights' identity; the layer; the form (``features`` or ``resume``); the pooling (features only).

- *Images*: the directory's image files as Spark reads them (recursive; names starting with ``.``
  or ``_`` skipped; jpg/jpeg/png), each by relative path, size and modification time in
  nanoseconds. Chosen over content hashes: a statement costs one ``stat`` per file instead of
  reading every image (a 10,000-image directory is listed in ~50 ms; hashing 1 GB takes seconds),
  and editing, replacing, adding or removing a file changes it. A file rewritten with the same
  size and the same nanosecond mtime (``touch -d`` to its old time) is not noticed. Only image
  directories have a fingerprint: a statement whose images are a DataFrame or a table neither
  reads nor writes the store.
- *CNN*: the catalog entry (input size, preprocessing, layers and shapes), plus the SHA-256 of the
  source of the code that computes features (decoding, inference, pooling, weight drawing, the
  CNN's module), so entries made by another version of that code are not used. A registered CNN
  (``vista_sql.register_cnn``) is identified by its architecture and weights digest.
- *Weights*: ``random seed n`` by its seed; a weights file (ImageNet or ``WEIGHTS '<file>'``) by the
  SHA-256 of its content; ImageNet weights packaged in a Python package by the SHA-256 of the
  package's file (``udfs.weights.source_file``).

Stale entries (changed images, weights or code) are never read, since their key is never asked
for again; they age out by least-recent use.
"""

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

from vista_sql.catalog import Catalog, CnnInfo, LayerInfo
from vista_sql.digest import file_sha256
from vista_sql.errors import VistaError
from vista_sql.logical.plan import OutputForm, SourceRef, WeightsSpec
from vista_sql.logical.query import Options, TransferQuery
from vista_sql.logical.stored import StoredLayer
from vista_sql.logical.values import parse_memory

FORMAT = 1
"""Version of the layout and of the entries' contents; part of every key."""
DIR_ENV = "VISTA_SQL_CACHE_DIR"
SHARED_ENV = "VISTA_SQL_CACHE_SHARED"
"""Set to 1 to use a store directory owned by another user (trusting that user's entries)."""
PRIVATE_MODE = 0o700
"""Every directory of the store: only its owner reads, lists or writes entries."""
SWITCH_ENV = "VISTA_SQL_CACHE"
SIZE_ENV = "VISTA_SQL_CACHE_SIZE"
DEFAULT_MAX_BYTES = 10 * 2**30
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
"""As ``physical.sources`` reads an image directory (its glob: each extension lower or upper)."""
ABANDONED_SECONDS = 24 * 3600
"""A write still in ``tmp/`` after this long was abandoned (its process died): eviction removes it.
No statement writes one layer for a day."""
FEATURE_CODE = ("decode.py", "inference.py", "layers.py", "weights.py")
"""Modules of ``vista_sql.udfs`` whose code decides the values of features (part of the key)."""


class StoreError(VistaError):
    """The feature store cannot be used as configured (a bad size or directory)."""


# ------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Whether a statement uses the store, where it is, and how large it may grow."""

    enabled: bool
    directory: Path
    max_bytes: int


def default_directory() -> Path:
    """``$VISTA_SQL_CACHE_DIR``, else the user's cache directory (XDG) + ``vista_sql``."""
    given = os.environ.get(DIR_ENV)
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "vista_sql"


def max_bytes_from_env() -> int:
    """``$VISTA_SQL_CACHE_SIZE`` in bytes (default 10 GiB)."""
    text = os.environ.get(SIZE_ENV)
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        return parse_memory(text)
    except ValueError as error:
        raise StoreError(f"{SIZE_ENV}={text!r}: {error}") from error


def store_settings(options: Options) -> StoreSettings:
    """The store settings of a statement (see the module docstring for the order of sources)."""
    if "cache" in options.origins:
        enabled = options.cache
    else:
        enabled = options.cache and os.environ.get(SWITCH_ENV, "1").lower() not in (
            "0",
            "false",
            "off",
            "no",
        )
    directory = Path(options.cache_dir).expanduser() if options.cache_dir else default_directory()
    return StoreSettings(enabled, directory, max_bytes_from_env())


# ------------------------------------------------------------------------------------------------
# Keys
# ------------------------------------------------------------------------------------------------


def image_directory(source: SourceRef, tables: Mapping[str, Any] | None) -> Path | None:
    """The image directory a statement reads, or None when its images are not a directory."""
    if source.kind == "path":
        path = Path(source.name)
    else:
        given = next(
            (v for k, v in (tables or {}).items() if k.lower() == source.name.lower()), None
        )
        if not isinstance(given, str | os.PathLike):
            return None
        path = Path(given)
    return path.resolve() if path.is_dir() else None


def image_files(directory: Path) -> Iterator[tuple[str, os.stat_result]]:
    """The image files Spark's binaryFile source reads from ``directory``, by relative path."""
    extensions = {e for x in IMAGE_EXTENSIONS for e in (x, x.upper())}
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            if name.startswith((".", "_")) or name.rsplit(".", 1)[-1] not in extensions:
                continue
            path = Path(root) / name
            yield str(path.relative_to(directory)), path.stat()


def image_fingerprint(directory: Path) -> tuple[str, int]:
    """SHA-256 of the images' relative paths, sizes and nanosecond mtimes; and how many."""
    digest = hashlib.sha256()
    count = 0
    for relative, stat in image_files(directory):
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        count += 1
    return digest.hexdigest(), count


def cnn_identity(info: CnnInfo) -> str:
    """What decides a CNN's features besides its weights (see the module docstring)."""
    from vista_sql.udfs import registry

    described = json.dumps(
        {
            "name": info.name,
            "input_size": info.input_size,
            "preprocess": info.preprocess,
            "layers": [
                (layer.name, layer.keras, layer.kind, layer.shape, layer.resume_keras)
                for layer in info.layers
            ],
        },
        sort_keys=True,
    )
    udfs = Path(__file__).resolve().parents[1] / "udfs"
    code = [udfs / name for name in FEATURE_CODE]
    module = udfs / "cnns" / f"{info.name}.py"
    if module.is_file():
        code.append(module)
    digests = [file_sha256(path) for path in code]
    found = registry.registered(info.name)
    if found is not None:
        digests.append(found.digest)
    return hashlib.sha256("\n".join([described, *digests]).encode()).hexdigest()


def weights_identity(cnn: str, weights: WeightsSpec) -> str | None:
    """``random seed n``, or the SHA-256 of the weights file; None when the file is not here.

    Packaged ImageNet weights are known by their package's file, so that no statement converts
    them (nor imports TensorFlow) just to make a key.
    """
    from vista_sql.udfs.weights import DEFAULT_SEED, source_file

    if weights.kind == "random":
        return f"random seed {weights.seed if weights.seed is not None else DEFAULT_SEED}"
    try:
        path = source_file(cnn, weights)
    except VistaError:
        return None
    return None if path is None else f"file sha256 {file_sha256(path)}"


@dataclass(frozen=True, slots=True)
class StatementKeys:
    """Everything a statement's store keys are made of, computed once per statement."""

    images: Path
    fingerprint: str
    image_count: int
    cnn: str
    cnn_identity: str
    weights: WeightsSpec
    weights_identity: str

    def key(self, layer: LayerInfo, form: OutputForm, pooling: str) -> str:
        """The key of one layer in one form (the pooling counts for conv features only)."""
        parts = {
            "format": FORMAT,
            "images": self.fingerprint,
            "cnn": self.cnn_identity,
            "weights": self.weights_identity,
            "layer": layer.name,
            "form": form,
            "pooling": key_pooling(layer, form, pooling),
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]

    def still_current(self) -> bool:
        """Whether the images are unchanged since the keys were made (checked before a write)."""
        return image_fingerprint(self.images)[0] == self.fingerprint


def key_pooling(layer: LayerInfo, form: OutputForm, pooling: str) -> str | None:
    """The pooling an entry depends on: a conv layer's features' only (fc layers are not
    pooled, and a resume tensor never is)."""
    return pooling if form == "features" and layer.kind == "conv" else None


def statement_keys(
    query: TransferQuery, catalog: Catalog, tables: Mapping[str, Any] | None
) -> StatementKeys | None:
    """The keys' parts for ``query``, or None when its images or weights cannot be fingerprinted."""
    directory = image_directory(query.image_source, tables)
    info = catalog.cnn(query.cnn)
    if directory is None or info is None:
        return None
    weights = weights_identity(info.name, query.weights)
    if weights is None:
        return None
    fingerprint, count = image_fingerprint(directory)
    return StatementKeys(
        images=directory,
        fingerprint=fingerprint,
        image_count=count,
        cnn=info.name,
        cnn_identity=cnn_identity(info),
        weights=query.weights,
        weights_identity=weights,
    )


# ------------------------------------------------------------------------------------------------
# Entries
# ------------------------------------------------------------------------------------------------


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
        """Create ``directory`` and the store's directories above it, each 0700."""
        for path in (self.directory, self.directory / "store", self.root, directory):
            if not path.is_dir():
                path.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
            if path.stat().st_uid == os.geteuid():  # a shared store's owner keeps its modes
                path.chmod(PRIVATE_MODE)

    def commit(self, staging: Path, key: str, meta: dict[str, Any]) -> Entry | None:
        """Publish the entry written in ``staging`` (its ``data/``) under ``key``: sizes it,
        writes ``entry.json`` last and renames the whole into place. None (and ``staging``
        removed) when another process published the same entry first."""
        data = staging / "data"
        file_bytes = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        meta = {
            **meta,
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


# ------------------------------------------------------------------------------------------------
# Look-up for the optimizer
# ------------------------------------------------------------------------------------------------


def stored_layers(
    query: TransferQuery,
    catalog: Catalog,
    tables: Mapping[str, Any] | None = None,
    keys: StatementKeys | None = None,
) -> tuple[StoredLayer, ...]:
    """The store's entries for ``query``'s images, CNN and weights: every transfer layer's
    features (under the statement's pooling) and resume tensor found. Empty when the store is
    off for the statement or its images are not a directory."""
    settings = store_settings(query.options)
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
                _size(entry.file_bytes),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.last_used)),
                str(entry.meta["images"]["path"]),
            )
            for entry in entries
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    total = sum(entry.file_bytes for entry in entries)
    lines.append(f"total {_size(total)} of at most {_size(store.max_bytes)}")
    return "\n".join(lines)


def _size(value: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    index = 0
    while value >= 1024 and index < len(units) - 1:
        value, index = value / 1024, index + 1
    return f"{value:.0f} {units[index]}" if index == 0 else f"{value:.1f} {units[index]}"
