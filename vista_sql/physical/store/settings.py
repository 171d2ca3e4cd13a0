"""The store's settings: its format, where it is, whether a statement uses it, how large it
may grow."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vista_sql.errors import VistaError
from vista_sql.logical.query import Options
from vista_sql.units import parse_size

FORMAT = 1
"""Version of the layout and of the entries' contents; part of every key."""
DIR_ENV = "VISTA_SQL_CACHE_DIR"
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
        return parse_size(text)
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
