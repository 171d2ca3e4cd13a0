"""Data statistics: how many images and rows, how big, how many structured features.

Gathered cheaply, never by scanning the data: an image directory is listed (``os.scandir``: file
count and sizes, exact), a Parquet source's row count is read from its footers (exact), and a CSV or
JSON file's row count is estimated from its size and the lines in its first 64 KiB (inexact unless
the whole file fits in the sample). Sources that are DataFrames or catalog tables are unknown here;
``DataStats.of`` lets the executor, which holds them, supply the numbers.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from vista_sql.cost_model.estimate import Estimate, Precision
from vista_sql.errors import DataError, SemanticError
from vista_sql.logical.plan import SourceRef
from vista_sql.logical.query import TransferQuery

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
"""Files an image directory source reads (SPEC.md: ``<id>.<ext>``, jpg, jpeg, png)."""

SAMPLE_BYTES = 64 * 1024
"""How much of a CSV or JSON file is read to estimate its rows and column types."""

ASSUMED_CLASSES = 2
"""Label classes assumed when they cannot be counted cheaply (a binary label, as in the paper)."""

QUERY_UNKNOWN = "a Spark SQL query: its statistics come from Spark's plan when the statement runs"

_ASSUMED_CLASSES = Estimate(float(ASSUMED_CLASSES), Precision.INEXACT)


@dataclass(frozen=True, slots=True)
class DataStats:
    """What the cost model knows about the two inputs, each number with its precision."""

    image_rows: Estimate
    image_bytes: Estimate
    """Total size of the encoded images (file sizes)."""
    table_rows: Estimate
    feature_columns: Estimate
    """Structured features used: FEATURES, else every numeric column but the key and the label."""
    table_bytes: Estimate
    """Size of the structured source as stored (what a scan reads)."""
    label_classes: Estimate = _ASSUMED_CLASSES
    table_format: str = "parquet"
    """'parquet', 'csv', 'json' or 'memory' (a DataFrame or catalog table): sets the scan cost."""
    key_unique: bool | None = None
    """Whether the join key is known to be unique on both sides (None: not checked)."""
    notes: tuple[str, ...] = ()
    """How each statistic was obtained, for EXPLAIN COST."""

    @property
    def average_image_bytes(self) -> Estimate:
        if not self.image_rows.known or self.image_rows.value == 0:
            return Estimate.absent() if not self.image_rows.known else Estimate.exact(0)
        return self.image_bytes / self.image_rows

    @classmethod
    def of(
        cls,
        *,
        image_rows: int | None,
        image_bytes: int | None,
        table_rows: int | None,
        feature_columns: int | None,
        table_bytes: int | None = None,
        label_classes: int | None = None,
        table_format: str = "memory",
        exact: bool = True,
        key_unique: bool | None = None,
        note: str = "given by the caller",
    ) -> DataStats:
        """Statistics from numbers the caller has (e.g. counts of Spark DataFrames).

        ``None`` means unknown. ``table_bytes`` defaults to 8 bytes per feature value (doubles).
        ``exact`` says whether the numbers are counts (True) or estimates.
        """
        precision = Precision.EXACT if exact else Precision.INEXACT
        if table_bytes is None and table_rows is not None and feature_columns is not None:
            table_bytes = table_rows * (feature_columns + 2) * 8
        classes = (
            Estimate.of(label_classes, precision)
            if label_classes is not None
            else Estimate.inexact(ASSUMED_CLASSES)
        )
        return cls(
            image_rows=Estimate.of(image_rows, precision),
            image_bytes=Estimate.of(image_bytes, precision),
            table_rows=Estimate.of(table_rows, precision),
            feature_columns=Estimate.of(feature_columns, precision),
            table_bytes=Estimate.of(table_bytes, precision),
            label_classes=classes,
            table_format=table_format,
            key_unique=key_unique,
            notes=(note,),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "image_rows": self.image_rows.to_json(),
            "image_bytes": self.image_bytes.to_json(),
            "table_rows": self.table_rows.to_json(),
            "feature_columns": self.feature_columns.to_json(),
            "table_bytes": self.table_bytes.to_json(),
            "label_classes": self.label_classes.to_json(),
            "table_format": self.table_format,
            "key_unique": self.key_unique,
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class _ImageListing:
    rows: Estimate
    bytes: Estimate
    note: str


@dataclass(frozen=True, slots=True)
class _TableProfile:
    rows: Estimate
    feature_columns: Estimate
    bytes: Estimate
    label_classes: Estimate
    table_format: str
    note: str


def gather_stats(query: TransferQuery, tables: Mapping[str, Any] | None = None) -> DataStats:
    """Statistics of the query's two sources, from listings and file metadata only.

    A source named in ``tables`` that maps to a path is profiled like a path; one that maps to
    anything else (a DataFrame) is unknown here, as are Spark catalog tables.
    """
    image_path = _path_of(query.image_source, tables)
    table_path = _path_of(query.table_source, tables)
    for path, clause, missing in (
        (image_path, "images", "the image source '{}' does not exist"),
        (table_path, "table", "no such file or directory: '{}'"),
    ):
        if path is not None and not path.exists():
            raise SemanticError.at(missing.format(path), query.sql, query.origins.get(clause))
    try:
        images = _list_images(image_path)
    except OSError as error:
        raise DataError.at(
            f"cannot list the image source '{image_path}': {error.strerror or error}",
            query.sql,
            query.origins.get("images"),
        ) from error
    try:
        table = (
            _unknown_table(QUERY_UNKNOWN, query)
            if query.table_source.kind == "query"
            else _profile_table(table_path, query)
        )
    except (OSError, ValueError, csv.Error) as error:  # pyarrow's errors are OSError/ValueError
        raise DataError.at(
            f"cannot read '{table_path}' as a structured source: {error}",
            query.sql,
            query.origins.get("table"),
        ) from error
    if query.image_source.kind == "query":
        images = _ImageListing(
            Estimate.absent(), Estimate.absent(), f"images: unknown ({QUERY_UNKNOWN})"
        )
    return DataStats(
        image_rows=images.rows,
        image_bytes=images.bytes,
        table_rows=table.rows,
        feature_columns=table.feature_columns,
        table_bytes=table.bytes,
        label_classes=table.label_classes,
        table_format=table.table_format,
        notes=(images.note, table.note),
    )


def _path_of(source: SourceRef, tables: Mapping[str, Any] | None) -> Path | None:
    if source.kind == "path":
        return _local(source.name)
    given = (tables or {}).get(source.name)
    if isinstance(given, (str, os.PathLike)):
        return _local(os.fspath(given))
    return None


def _local(path: str) -> Path | None:
    """A path or ``file:`` URI as a path on this machine; None for other file-system URIs
    (``hdfs://``, ``s3a://``: listed by Spark at run time, unknown to the plan)."""
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", path)
    if scheme is None or re.match(r"[A-Za-z]:[\\/]", path):
        return Path(path)
    if scheme.group(1).lower() == "file":
        return Path(unquote(urlparse(path).path))
    return None


def _list_images(path: Path | None) -> _ImageListing:
    if path is None or not path.is_dir():
        where = "not a directory" if path is not None else "not a path"
        return _ImageListing(Estimate.absent(), Estimate.absent(), f"images: unknown ({where})")
    count = 0
    size = 0
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
                count += 1
                size += entry.stat().st_size
    return _ImageListing(
        Estimate.exact(count),
        Estimate.exact(size),
        f"images: {count} files, {size} bytes listed in {path}",
    )


def _unknown_table(reason: str, query: TransferQuery) -> _TableProfile:
    features = (
        Estimate.exact(len(query.features)) if query.features is not None else Estimate.absent()
    )
    return _TableProfile(
        Estimate.absent(),
        features,
        Estimate.absent(),
        Estimate.inexact(ASSUMED_CLASSES),
        "memory",
        f"table: unknown ({reason})",
    )


def _profile_table(path: Path | None, query: TransferQuery) -> _TableProfile:
    if path is None:
        return _unknown_table("a DataFrame or catalog table", query)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".parquet":
        return _profile_parquet(path, query)
    if suffix == ".csv":
        return _profile_text(path, query, "csv")
    if suffix == ".json":
        return _profile_text(path, query, "json")
    return _unknown_table(f"unrecognised source {path}", query)


def _count_features(columns: list[tuple[str, bool]], query: TransferQuery) -> Estimate:
    """FEATURES when given, else the numeric columns but the key and the label."""
    if query.features is not None:
        return Estimate.exact(len(query.features))
    excluded = {query.table_key.lower(), query.label.lower()}
    return Estimate.exact(
        sum(1 for name, numeric in columns if numeric and name.lower() not in excluded)
    )


def _profile_parquet(path: Path, query: TransferQuery) -> _TableProfile:
    import pyarrow.parquet as pq
    import pyarrow.types as pt

    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        return _unknown_table(f"no Parquet files in {path}", query)
    rows = 0
    size = 0
    for file in files:
        rows += pq.read_metadata(file).num_rows
        size += file.stat().st_size
    schema = pq.read_schema(files[0])
    columns = [
        (f.name, pt.is_integer(f.type) or pt.is_floating(f.type) or pt.is_decimal(f.type))
        for f in schema
    ]
    classes = Estimate.inexact(ASSUMED_CLASSES)
    label = next((f.name for f in schema if f.name.lower() == query.label.lower()), None)
    if label is not None and rows <= 10_000_000:
        distinct: set[Any] = set()
        for file in files:
            distinct.update(pq.read_table(file, columns=[label]).column(0).unique().to_pylist())
        classes = Estimate.exact(len(distinct))
    return _TableProfile(
        Estimate.exact(rows),
        _count_features(columns, query),
        Estimate.exact(size),
        classes,
        "parquet",
        f"table: {rows} rows from Parquet footers of {len(files)} file(s)",
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _profile_text(path: Path, query: TransferQuery, kind: str) -> _TableProfile:
    size = path.stat().st_size
    with path.open("rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    whole = len(sample) == size
    lines = sample.decode("utf-8", errors="replace").splitlines()
    if not whole and lines:
        lines = lines[:-1]
    columns: list[tuple[str, bool]] = []
    records: list[dict[str, Any]] = []
    header_bytes = 0
    if kind == "csv" and lines:
        reader = list(csv.reader(io.StringIO("\n".join(lines))))
        header, body = reader[0], reader[1:]
        header_bytes = len(lines[0].encode()) + 1
        columns = [
            (name, all(_is_number(row[i]) for row in body if i < len(row) and row[i] != ""))
            for i, name in enumerate(header)
        ]
        records = [dict(zip(header, row, strict=False)) for row in body]
        data_lines = lines[1:]
    else:
        data_lines = [line for line in lines if line.strip()]
        records = [json.loads(line) for line in data_lines]
        names = sorted({key for record in records for key in record})
        columns = [
            (
                name,
                all(
                    isinstance(r.get(name), (int, float)) and not isinstance(r.get(name), bool)
                    for r in records
                    if r.get(name) is not None
                ),
            )
            for name in names
        ]
    if not data_lines:
        return _unknown_table(f"no rows in the first {SAMPLE_BYTES} bytes of {path}", query)
    if whole:
        rows = Estimate.exact(len(data_lines))
        note = f"table: {len(data_lines)} rows counted in {path}"
    else:
        per_line = sum(len(line.encode()) + 1 for line in data_lines) / len(data_lines)
        rows = Estimate.inexact(round((size - header_bytes) / per_line))
        note = f"table: rows estimated from {size} bytes and {len(data_lines)} sampled lines"
    labels = {str(r.get(query.label)) for r in records if query.label in r}
    if whole and labels:
        classes = Estimate.exact(len(labels))
    else:
        classes = Estimate.inexact(max(ASSUMED_CLASSES, len(labels)))
    return _TableProfile(
        rows, _count_features(columns, query), Estimate.exact(size), classes, kind, note
    )
