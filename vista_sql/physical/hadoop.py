"""Paths that are Hadoop file-system URIs (``hdfs://``, ``s3a://``, ``file:///shared/...``).

Spark reads and writes such URIs itself; what vista_sql does around the reads and writes (does it
exist, is it a directory, list an image directory with sizes, stage and publish INTO) goes through
the same Hadoop ``FileSystem`` in the driver's JVM, with the session's Hadoop configuration, never
through ``os.path``, which only knows this machine's disk. A failure there (no namenode, no
credentials, an unknown scheme) becomes a :class:`~vista_sql.errors.DataError` that names the URI
and the Java exception's first line, not a Java stack trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vista_sql.errors import DataError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
"""A path with a scheme: ``hdfs://nn/x``, ``s3a://bucket/x``, ``file:///x``, ``file:/x``."""


def is_uri(path: str) -> bool:
    """Whether ``path`` names a Hadoop file-system URI rather than a path on this machine."""
    return URI.match(path) is not None and not re.match(r"[A-Za-z]:[\\/]", path)


@dataclass(frozen=True)
class FileEntry:
    path: str
    """Relative to the listed directory, '/'-separated."""
    size: int


@contextmanager
def _java_errors(uri: str, doing: str) -> Iterator[None]:
    from py4j.protocol import Py4JJavaError
    from pyspark.errors.exceptions.captured import CapturedException

    try:
        yield
    except Py4JJavaError as error:
        java = error.java_exception
        message = str(java.toString()) if java is not None else str(error)
        raise DataError(f"cannot {doing} '{uri}': {_first_line(message)}") from None
    except CapturedException as error:  # what PySpark makes of the common Java exceptions
        raise DataError(f"cannot {doing} '{uri}': {_first_line(str(error))}") from None


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "unknown error"


class HadoopPath:
    """One URI and its file system, as the driver's JVM sees it."""

    def __init__(self, spark: SparkSession, uri: str) -> None:
        self.uri = uri
        jvm: Any = spark.sparkContext._jvm
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._jvm = jvm
        self._path = jvm.org.apache.hadoop.fs.Path(uri)
        with _java_errors(uri, "reach"):
            self._fs = self._path.getFileSystem(conf)
            self.qualified = str(self._fs.makeQualified(self._path).toString())

    def child(self, name: str) -> HadoopPath:
        return self._on_same_fs(f"{self.qualified.rstrip('/')}/{name}")

    def sibling(self, name: str) -> HadoopPath:
        return self._on_same_fs(f"{self.qualified.rstrip('/').rpartition('/')[0]}/{name}")

    def _on_same_fs(self, qualified: str) -> HadoopPath:
        """The path ``qualified`` (already qualified) on this path's file system."""
        made = object.__new__(HadoopPath)
        made.uri = made.qualified = qualified
        made._jvm, made._fs = self._jvm, self._fs
        made._path = self._jvm.org.apache.hadoop.fs.Path(qualified)
        return made

    @property
    def name(self) -> str:
        return self.qualified.rstrip("/").rpartition("/")[2]

    def exists(self) -> bool:
        with _java_errors(self.uri, "reach"):
            return bool(self._fs.exists(self._path))

    def is_dir(self) -> bool:
        with _java_errors(self.uri, "reach"):
            return bool(
                self._fs.exists(self._path) and self._fs.getFileStatus(self._path).isDirectory()
            )

    def walk(self) -> list[FileEntry]:
        """Every file under this directory, recursively, with its size."""
        prefix = self.qualified.rstrip("/") + "/"
        entries = []
        with _java_errors(self.uri, "list"):
            files = self._fs.listFiles(self._path, True)
            while files.hasNext():
                status = files.next()
                full = str(status.getPath().toString())
                entries.append(FileEntry(full.removeprefix(prefix), int(status.getLen())))
        return sorted(entries, key=lambda e: e.path)

    def mkdirs(self) -> None:
        with _java_errors(self.uri, "create"):
            self._fs.mkdirs(self._path)

    def delete(self) -> None:
        with _java_errors(self.uri, "delete"):
            self._fs.delete(self._path, True)

    def rename(self, target: HadoopPath) -> None:
        with _java_errors(self.uri, f"rename to '{target.uri}'"):
            if not self._fs.rename(self._path, target._path):
                raise DataError(f"cannot rename '{self.uri}' to '{target.uri}'")

    def upload(self, local: str) -> None:
        """Copy the local file or directory ``local`` to this path."""
        source = self._jvm.org.apache.hadoop.fs.Path(local)
        with _java_errors(self.uri, "write"):
            self._fs.copyFromLocalFile(False, True, source, self._path)


def stage(spark: SparkSession, into: str, overwrite: bool) -> tuple[HadoopPath, HadoopPath]:
    """(target, a fresh temporary sibling to write into) for INTO a URI; refuses to clobber the
    target unless ``overwrite``. Readers never see a half-written target: it appears by one
    rename of the finished sibling (:func:`publish`)."""
    import os

    from vista_sql.errors import VistaError
    from vista_sql.physical.result import OUTPUT_MARKER

    target = HadoopPath(spark, into)
    if target.exists() and not overwrite:
        raise VistaError(
            f"INTO '{into}' already exists; choose a new directory or add "
            "WITH (overwrite = true) to replace it"
        )
    if target.exists() and not (
        target.child(OUTPUT_MARKER).exists() and target.child("report.json").exists()
    ):
        raise VistaError(
            f"INTO '{into}' exists and is not a directory vista_sql wrote (it has no "
            f"{OUTPUT_MARKER} beside a report.json); overwrite = true replaces only an earlier "
            "INTO's output: choose a new directory in INTO, or remove this one yourself"
        )
    staging = target.sibling(f".{target.name}.partial-{os.getpid()}")
    staging.delete()
    staging.mkdirs()
    return target, staging


def publish(staging: HadoopPath, target: HadoopPath) -> None:
    """Move the finished ``staging`` directory to ``target`` (replacing it when allowed)."""
    import os

    if target.exists():
        backup = target.sibling(f"{target.name}.old-{os.getpid()}")
        target.rename(backup)
        staging.rename(target)
        backup.delete()
    else:
        staging.rename(target)
