"""Reading the statement's two sources into Spark DataFrames with vista_sql's internal column names.

Image side: (KEY, IMAGE) where IMAGE holds the encoded image bytes. Structured side: KEY plus the
user's columns. SPEC.md's rules: an identifier is looked up in ``tables=`` first, then the Spark
catalog; a string is a path: a directory of ``<id>.<ext>`` images, or a .csv/.parquet/.json file
or a Parquet directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vista_sql.errors import SemanticError, VistaError, did_you_mean
from vista_sql.logical.plan import SourceRef
from vista_sql.logical.query import TransferQuery

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

KEY = "_vista_key"
IMAGE = "_vista_image"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
STRUCTURED_EXTENSIONS = (".csv", ".parquet", ".json")


@dataclass(frozen=True)
class ImageSource:
    """The image side, and what of the source could not become a row (never dropped silently)."""

    frame: DataFrame
    unnamed_files: tuple[str, ...] = ()
    """Image files whose name is not an id of the structured side's key type."""
    other_files: int = 0
    """Files in the directory that are not images by extension (jpg, jpeg, png)."""


def resolve(spark: SparkSession, ref: SourceRef, tables: Mapping[str, Any] | None) -> Any:
    """A DataFrame for a name (tables=, then the Spark catalog), or the path string for a path."""
    if ref.kind == "path":
        return ref.name
    tables = tables or {}
    for name, value in tables.items():
        if name.lower() == ref.name.lower():
            return value
    if spark.catalog.tableExists(ref.name):
        return spark.table(ref.name)
    known = sorted({*tables, *(t.name for t in spark.catalog.listTables())})
    raise SemanticError(f"unknown table {ref.name}; {did_you_mean(ref.name, known or ['(none)'])}")


def read_table(
    spark: SparkSession, query: TransferQuery, tables: Mapping[str, Any] | None
) -> DataFrame:
    """The structured source with its key column renamed to KEY."""
    source = resolve(spark, query.table_source, tables)
    frame = source if not isinstance(source, str) else _read_structured_path(spark, source)
    columns = {c.lower(): c for c in frame.columns}
    key = columns.get(query.table_key.lower())
    if key is None:
        raise SemanticError(
            f"the structured source has no column {query.table_key}; "
            f"{did_you_mean(query.table_key, frame.columns)}"
        )
    return frame.withColumnRenamed(key, KEY)


def _read_structured_path(spark: SparkSession, path: str) -> DataFrame:
    if not os.path.exists(path):
        raise SemanticError(f"no such file or directory: '{path}'")
    lowered = path.lower().rstrip("/")
    if lowered.endswith(".csv"):
        return spark.read.csv(path, header=True, inferSchema=True)
    if lowered.endswith(".json"):
        frame = spark.read.json(path)
        if "_corrupt_record" in frame.columns:  # one JSON document (an array), not JSON Lines
            frame = spark.read.option("multiLine", "true").json(path)
        return frame
    if lowered.endswith(".parquet") or os.path.isdir(path):
        return spark.read.parquet(path)
    raise SemanticError(
        f"cannot read '{path}' as a structured source: expected a "
        f"{', '.join(STRUCTURED_EXTENSIONS)} file or a Parquet directory"
    )


def read_images(
    spark: SparkSession,
    query: TransferQuery,
    tables: Mapping[str, Any] | None,
    key_type: str,
) -> ImageSource:
    """The image side as (KEY, IMAGE); file-name ids are cast to the structured key's type."""
    source = resolve(spark, query.image_source, tables)
    if isinstance(source, str):
        return _read_image_directory(spark, source, key_type)
    return ImageSource(frame=_image_table(source, query))


def _read_image_directory(spark: SparkSession, path: str, key_type: str) -> ImageSource:
    from pyspark.sql import functions as F

    if not os.path.isdir(path):
        raise SemanticError(f"the image source '{path}' is not a directory")
    names = _list_files(path)
    images = [n for n in names if n.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS]
    if not images:
        raise SemanticError(
            f"the image directory '{path}' holds no {'/'.join(IMAGE_EXTENSIONS)} files"
        )
    pattern = "*.{" + ",".join(e for x in IMAGE_EXTENSIONS for e in (x, x.upper())) + "}"
    raw = (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", pattern)
        .option("recursiveFileLookup", "true")
        .load(path)
    )
    stem = F.regexp_extract(F.col("path"), r"([^/]+)\.[A-Za-z]+$", 1)
    frame = raw.select(stem.cast(key_type).alias(KEY), F.col("content").alias(IMAGE), "path")
    unnamed = tuple(
        sorted(row["path"] for row in frame.filter(F.col(KEY).isNull()).select("path").collect())
    )
    return ImageSource(
        frame=frame.filter(F.col(KEY).isNotNull()).drop("path"),
        unnamed_files=unnamed,
        other_files=len(names) - len(images),
    )


def _list_files(path: str) -> list[str]:
    found: list[str] = []
    for root, _dirs, files in os.walk(path):
        found.extend(os.path.join(root, f) for f in files if not f.startswith("."))
    return found


def _image_table(frame: DataFrame, query: TransferQuery) -> DataFrame:
    """A table of images: the named column, else its single binary column, else path/image paths."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType, StringType

    columns = {c.lower(): c for c in frame.columns}
    key = columns.get(query.image_key.lower())
    if key is None:
        raise SemanticError(
            f"the image source has no column {query.image_key}; "
            f"{did_you_mean(query.image_key, frame.columns)}"
        )
    types = {f.name: f.dataType for f in frame.schema.fields}
    if query.image_column is not None:
        column = columns.get(query.image_column.lower())
        if column is None:
            raise SemanticError(
                f"the image source has no column {query.image_column}; "
                f"{did_you_mean(query.image_column, frame.columns)}"
            )
    else:
        binary = [name for name, t in types.items() if isinstance(t, BinaryType)]
        paths = [columns[c] for c in ("path", "image") if c in columns]
        if len(binary) == 1:
            column = binary[0]
        elif not binary and paths and isinstance(types[paths[0]], StringType):
            column = paths[0]
        else:
            raise SemanticError(
                "cannot tell which column holds the images: name it in parentheses after the "
                f"source, e.g. OF images (picture); columns: {', '.join(frame.columns)}"
            )
    kind = types[column]
    if isinstance(kind, BinaryType):
        image = F.col(column)
    elif isinstance(kind, StringType):
        image = _read_bytes(F.col(column))
    else:
        raise SemanticError(
            f"the image column {column} is {kind.simpleString()}: expected binary image bytes or "
            "a string path"
        )
    return frame.select(F.col(key).alias(KEY), image.alias(IMAGE))


def _read_bytes(paths: Any) -> Any:
    """A column of the bytes of the files named by a column of paths (null when unreadable)."""
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("binary")  # type: ignore[call-overload]
    def read(batch: pd.Series) -> pd.Series:
        def one(path: str | None) -> bytes | None:
            if path is None:
                return None
            try:
                with open(path, "rb") as handle:
                    return handle.read()
            except OSError:
                return None

        return batch.map(one)

    return read(paths)


def check_source_exists(ref: SourceRef) -> None:
    """Fail early and clearly on a path that is not there."""
    if ref.kind == "path" and not os.path.exists(ref.name):
        raise VistaError(f"no such file or directory: '{ref.name}'")
