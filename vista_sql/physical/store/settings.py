"""The store's settings: its format, where it is, whether a statement uses it, how large it
may grow.

Where it is: ``WITH (cache_dir = ...)``, else ``$VISTA_SQL_CACHE_DIR``, else the user's cache
directory. Executors write the store's entries, so on a cluster whose executors run on other hosts
the directory must be mounted at the same path on every host. A plain path cannot say so: on such
a cluster the store is off for the statement (with the reason), unless the directory is given as a
``file://`` URI, which declares it shared. The store keeps its index with local file locks, so
other file systems (``hdfs://``, ``s3a://``) are refused with a StoreError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from vista_sql.errors import VistaError
from vista_sql.logical.query import Options
from vista_sql.units import parse_size

FORMAT = 2
"""Version of the layout and of the entries' contents; part of every key."""
DIR_ENV = "VISTA_SQL_CACHE_DIR"
SHARED_ENV = "VISTA_SQL_CACHE_SHARED"
"""Set to 1 to use a store directory owned by another user (trusting that user's entries)."""
PRIVATE_MODE = 0o700
"""Every directory of the store: only its owner reads, lists or writes entries."""
SWITCH_ENV = "VISTA_SQL_CACHE"
SIZE_ENV = "VISTA_SQL_CACHE_SIZE"
DEFAULT_MAX_BYTES = 10 * 2**30


class StoreError(VistaError):
    """The feature store cannot be used as configured (a bad size or directory)."""


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Whether a statement uses the store, where it is, and how large it may grow."""

    enabled: bool
    directory: Path
    max_bytes: int
    shared: bool = False
    """Declared mounted at the same path on every host (given as a ``file://`` URI)."""
    off_reason: str | None = None
    """Why the store is off although asked for (executors on other hosts, a private path)."""


def default_directory() -> Path:
    """``$VISTA_SQL_CACHE_DIR``, else the user's cache directory (XDG) + ``vista_sql``."""
    return store_directory(None)[0]


def store_directory(given: str | None) -> tuple[Path, bool]:
    """The store's directory from ``given`` (``cache_dir``), else ``$VISTA_SQL_CACHE_DIR``, else
    the user's cache directory (XDG) + ``vista_sql``; and whether it was declared shared by every
    host (a ``file://`` URI)."""
    text = given or os.environ.get(DIR_ENV)
    if not text:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base).expanduser() / "vista_sql", False
    parsed = urlparse(text)
    if len(parsed.scheme) < 2:  # a path (one letter: a Windows drive)
        return Path(text).expanduser(), False
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path)), True
    raise StoreError(
        f"feature store directory '{text}': only a local directory, or a file:// URI of one"
        " mounted at the same path on every host, can hold the store (it keeps its index with"
        " local file locks)"
    )


def max_bytes_from_env() -> int:
    """``$VISTA_SQL_CACHE_SIZE`` in bytes (default 10 GiB)."""
    text = os.environ.get(SIZE_ENV)
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        return parse_size(text)
    except ValueError as error:
        raise StoreError(f"{SIZE_ENV}={text!r}: {error}") from error


def store_settings(options: Options, remote_executors: bool = False) -> StoreSettings:
    """The store settings of a statement (see the module docstring for the order of sources).

    ``remote_executors``: the statement runs on executors that may be on other hosts (a
    cluster's master, a Spark Connect server); the store is then off unless its directory is
    declared shared."""
    if "cache" in options.origins:
        enabled = options.cache
    else:
        enabled = options.cache and os.environ.get(SWITCH_ENV, "1").lower() not in (
            "0",
            "false",
            "off",
            "no",
        )
    if not enabled:
        given = options.cache_dir or os.environ.get(DIR_ENV)
        directory = Path(given).expanduser() if given else default_directory()
        return StoreSettings(False, directory, max_bytes_from_env())
    directory, shared = store_directory(options.cache_dir)
    reason = None
    if remote_executors and not shared:
        reason = (
            f"its directory {directory} is on this machine, and executors on other hosts would"
            f" write their parts of each entry to their own disks; give WITH (cache_dir ="
            f" 'file://{directory}') if it is mounted at that path on every host"
        )
    return StoreSettings(reason is None, directory, max_bytes_from_env(), shared, reason)
