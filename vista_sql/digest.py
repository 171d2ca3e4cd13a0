"""File digests shared by the feature store (keys) and the weights (cache names, identity)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


def file_sha256(path: Path | str) -> str:
    """A file's SHA-256, computed once per (path, size, modification time) in this process."""
    stat = Path(path).stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """The digest of the file's current content; ``size`` and ``mtime_ns`` key the memo."""
    return content_sha256(path)


def content_sha256(path: Path | str) -> str:
    """A file's SHA-256, read now (never remembered: for content that may change without its
    size or modification time changing)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
