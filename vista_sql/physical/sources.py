"""Reading the statement's two sources into Spark DataFrames with vista_sql's internal column names.

Image side: (KEY, IMAGE) where IMAGE holds the encoded image bytes. Structured side: KEY plus the
user's columns. SPEC.md's rules: an identifier is looked up in ``tables=`` first, then the Spark
catalog; a string is a path: a directory of ``<id>.<ext>`` images, or a .csv/.parquet/.json file
or a Parquet directory; a parenthesized query runs with the session's ``spark.sql`` (so it sees the
session's catalog: tables and temporary views).

An image column holds encoded image bytes (binary), image file paths (string), or Spark's ``image``
data source struct (``spark.read.format("image")``: origin, height, width, nChannels, mode, data
with BGR(A) pixels), which is encoded losslessly as PNG for the decoder, so every image reaches the
CNN through the same decode and resize.

An image directory is read recursively, as Spark's ``binaryFile`` source lists it: files and folders
whose names start with ``.`` or ``_`` are hidden, and only ``<id>.jpg|jpeg|png`` files (extension
all lower or all upper case) are images. Nothing in the directory is dropped silently: zero-byte
image files (which Spark's file scan skips) are read as empty images, so they are reported as
undecodable; image files whose name is not an id of the structured key's type are
``unnamed_files``; everything else is ``other_files``. Errors about a source point at it in the
statement.

A path that is a Hadoop file-system URI (``hdfs://``, ``s3a://``, ``file://``) goes to Spark as it
is; its existence and its listing come from the Hadoop file system in the driver's JVM
(``physical.hadoop``), not from this machine's disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vista_sql.errors import DataError, SemanticError, VistaError, did_you_mean
from vista_sql.logical.plan import SourceRef
from vista_sql.logical.query import TransferQuery
from vista_sql.physical.hadoop import HadoopPath, is_uri

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
    other_files: tuple[str, ...] = ()
    """Files in the directory that are not images: another extension, or hidden."""


def source_error(
    query: TransferQuery | None, clause: str, message: str, cls: type[VistaError] = SemanticError
) -> VistaError:
    """An error about the source of ``clause`` ('images', 'table', 'on', ...), pointing at it."""
    if query is None:
        return cls(message)
    return cls.at(message, query.sql, query.origins.get(clause))


def resolve(
    spark: SparkSession,
    ref: SourceRef,
    tables: Mapping[str, Any] | None,
    query: TransferQuery | None = None,
    clause: str = "",
) -> Any:
    """A DataFrame for a name (tables=, then the Spark catalog), or the path string for a path.

    ``query`` and ``clause`` ('images' or 'table') let an unknown name point at the text.
    """
    if ref.kind == "path":
        return ref.name
    if ref.kind == "query":
        return run_query_source(spark, ref, query, clause)
    tables = tables or {}
    for name, value in tables.items():
        if name.lower() == ref.name.lower():
            return value
    if spark.catalog.tableExists(ref.name):
        return spark.table(ref.name)
    known = sorted({*tables, *(t.name for t in spark.catalog.listTables())})
    raise source_error(
        query, clause, f"unknown table {ref.name}; {did_you_mean(ref.name, known or ['(none)'])}"
    )


def run_query_source(
    spark: SparkSession, ref: SourceRef, query: TransferQuery | None, clause: str
) -> DataFrame:
    """The DataFrame of a Spark SQL query source; Spark's analysis errors point at the query."""
    from pyspark.errors import PySparkException

    try:
        return spark.sql(ref.name)
    except PySparkException as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise source_error(query, clause, f"Spark cannot run the query source: {reason}") from error


def read_table(
    spark: SparkSession, query: TransferQuery, tables: Mapping[str, Any] | None
) -> DataFrame:
    """The structured source with its key column renamed to KEY."""
    source = resolve(spark, query.table_source, tables, query, "table")
    frame = source if not isinstance(source, str) else _read_structured_path(spark, source, query)
    columns = {c.lower(): c for c in frame.columns}
    key = columns.get(query.table_key.lower())
    if key is None:
        raise source_error(
            query,
            "on",
            f"the structured source has no column {query.table_key}; "
            f"{did_you_mean(query.table_key, frame.columns)}",
        )
    return frame.withColumnRenamed(key, KEY)


def _read_structured_path(spark: SparkSession, path: str, query: TransferQuery) -> DataFrame:
    from pyspark.errors import PySparkException

    if is_uri(path):
        target = HadoopPath(spark, path)
        exists, is_dir = target.exists(), target.is_dir()
    else:
        exists, is_dir = os.path.exists(path), os.path.isdir(path)
    if not exists:
        raise source_error(query, "table", f"no such file or directory: '{path}'")
    lowered = path.lower().rstrip("/")
    try:
        if lowered.endswith(".csv"):
            return spark.read.csv(path, header=True, inferSchema=True)
        if lowered.endswith(".json"):
            frame = spark.read.json(path)
            if "_corrupt_record" in frame.columns:  # one JSON document (an array), not JSON Lines
                frame = spark.read.option("multiLine", "true").json(path)
            return frame
        if lowered.endswith(".parquet") or is_dir:
            return spark.read.parquet(path)
    except PySparkException as error:  # unreadable: not Parquet, no files, a broken footer ...
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise source_error(
            query, "table", f"cannot read '{path}' as a structured source: {reason}", DataError
        ) from error
    raise source_error(
        query,
        "table",
        f"cannot read '{path}' as a structured source: expected a "
        f"{', '.join(STRUCTURED_EXTENSIONS)} file or a Parquet directory",
    )


def read_images(
    spark: SparkSession,
    query: TransferQuery,
    tables: Mapping[str, Any] | None,
    key_type: str,
) -> ImageSource:
    """The image side as (KEY, IMAGE); file-name ids are cast to the structured key's type."""
    source = resolve(spark, query.image_source, tables, query, "images")
    if isinstance(source, str):
        return _read_image_directory(spark, source, key_type, query)
    return ImageSource(frame=_image_table(source, query))


@dataclass(frozen=True)
class DirectoryListing:
    """An image directory as vista_sql sees it (paths relative to the directory, sorted)."""

    images: tuple[str, ...]
    """Image files Spark's binaryFile source reads (not empty)."""
    empty_images: tuple[str, ...]
    """Zero-byte image files: Spark's file scan skips them, vista_sql reports them."""
    other_files: tuple[str, ...]


def list_image_directory(path: str) -> DirectoryListing:
    """Every file under ``path``, sorted into images, empty images and other files."""
    entries = []
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            entries.append(
                (os.path.relpath(full, path).replace(os.sep, "/"), os.path.getsize(full))
            )
    return classify_files(entries)


def classify_files(entries: list[tuple[str, int]]) -> DirectoryListing:
    """(relative path, size) of every file of a directory, sorted as Spark's binaryFile source
    reads them: under a hidden folder or hidden themselves, or not images: other files."""
    extensions = {e for x in IMAGE_EXTENSIONS for e in (x, x.upper())}
    images: list[str] = []
    empty: list[str] = []
    other: list[str] = []
    for relative, size in entries:
        *folders, name = relative.split("/")
        hidden = any(part.startswith((".", "_")) for part in [*folders, name])
        if hidden or name.rsplit(".", 1)[-1] not in extensions:
            other.append(relative)
        elif size == 0:
            empty.append(relative)
        else:
            images.append(relative)
    return DirectoryListing(tuple(sorted(images)), tuple(sorted(empty)), tuple(sorted(other)))


def _read_image_directory(
    spark: SparkSession, path: str, key_type: str, query: TransferQuery
) -> ImageSource:
    from pyspark.sql import functions as F

    remote = HadoopPath(spark, path) if is_uri(path) else None
    is_dir = remote.is_dir() if remote is not None else os.path.isdir(path)
    if not is_dir:
        exists = remote.exists() if remote is not None else os.path.exists(path)
        problem = "is not a directory" if exists else "does not exist"
        raise source_error(query, "images", f"the image source '{path}' {problem}")
    if remote is not None:
        listing = classify_files([(e.path, e.size) for e in remote.walk()])
        prefix = remote.qualified.rstrip("/") + "/"
    else:
        listing = list_image_directory(path)
        prefix = ""
    if not listing.images and not listing.empty_images:
        raise source_error(
            query,
            "images",
            f"the image directory '{path}' holds no images (<id>.{'|'.join(IMAGE_EXTENSIONS)}"
            f" files); {len(listing.other_files)} other files",
            DataError,
        )
    raw = spark.createDataFrame([], "path string, content binary")
    if listing.images:
        pattern = "*.{" + ",".join(e for x in IMAGE_EXTENSIONS for e in (x, x.upper())) + "}"
        raw = (
            spark.read.format("binaryFile")
            .option("pathGlobFilter", pattern)
            .option("recursiveFileLookup", "true")
            .load(path)
            .select("path", "content")
        )
    if listing.empty_images:
        empty = [(_file_uri(prefix, path, name), b"") for name in listing.empty_images]
        raw = raw.unionByName(spark.createDataFrame(empty, "path string, content binary"))
    stem = F.regexp_extract(F.col("path"), r"([^/]+)\.[A-Za-z]+$", 1)
    frame = raw.select(stem.try_cast(key_type).alias(KEY), F.col("content").alias(IMAGE), "path")
    unnamed = sorted(
        row["path"].removeprefix(prefix) if remote else _local_path(row["path"], path)
        for row in frame.filter(F.col(KEY).isNull()).select("path").collect()
    )
    return ImageSource(
        frame=frame.filter(F.col(KEY).isNotNull()).drop("path"),
        unnamed_files=tuple(unnamed),
        other_files=listing.other_files,
    )


def _file_uri(prefix: str, directory: str, name: str) -> str:
    """The URI Spark's binaryFile source gives a file of the directory (``prefix``: the
    directory's qualified URI and a slash, empty for a local path)."""
    if prefix:
        return prefix + name
    return f"file:{os.path.abspath(os.path.join(directory, name))}"


def _local_path(uri: str, directory: str) -> str:
    """A binaryFile ``path`` (a file: URI) as a path relative to the image directory."""
    from urllib.parse import unquote, urlparse

    local = unquote(urlparse(uri).path) if uri.startswith("file:") else uri
    return os.path.relpath(local, os.path.abspath(directory))


def _image_table(frame: DataFrame, query: TransferQuery) -> DataFrame:
    """A table of images: the named column, else its single binary column, else path/image paths."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType, StringType

    columns = {c.lower(): c for c in frame.columns}
    key = columns.get(query.image_key.lower())
    if key is None:
        raise source_error(
            query,
            "on",
            f"the image source has no column {query.image_key}; "
            f"{did_you_mean(query.image_key, frame.columns)}",
        )
    types = {f.name: f.dataType for f in frame.schema.fields}
    structs = [name for name, t in types.items() if is_image_struct(t)]
    if query.image_column is not None:
        column = columns.get(query.image_column.lower())
        if column is None:
            raise source_error(
                query,
                "image_column",
                f"the image source has no column {query.image_column}; "
                f"{did_you_mean(query.image_column, frame.columns)}",
            )
    else:
        binary = [name for name, t in types.items() if isinstance(t, BinaryType)]
        paths = [columns[c] for c in ("path", "image") if c in columns]
        if len(binary) == 1:
            column = binary[0]
        elif not binary and len(structs) == 1:
            column = structs[0]
        elif not binary and paths and isinstance(types[paths[0]], StringType):
            column = paths[0]
        else:
            raise source_error(
                query,
                "images",
                "cannot tell which column holds the images: name it in parentheses after the "
                f"source, e.g. OF images (picture); columns: {', '.join(frame.columns)}",
            )
    kind = types[column]
    if isinstance(kind, BinaryType):
        image = F.col(column)
    elif isinstance(kind, StringType):
        image = _read_bytes(F.col(column))
    elif is_image_struct(kind):
        image = encode_image_struct(F.col(column))
    else:
        raise source_error(
            query,
            "image_column" if query.image_column is not None else "images",
            f"the image column {column} is {kind.simpleString()}: expected binary image bytes, "
            "a string path or Spark's image struct (spark.read.format('image'))",
        )
    return frame.select(F.col(key).alias(KEY), image.alias(IMAGE))


IMAGE_STRUCT_FIELDS = ("origin", "height", "width", "nChannels", "mode", "data")
"""The fields of Spark's image data source column (``pyspark.ml.image.ImageSchema``)."""


def is_image_struct(kind: Any) -> bool:
    """Whether a Spark type is the ``image`` data source's struct (field names as Spark's)."""
    from pyspark.sql.types import StructType

    return isinstance(kind, StructType) and set(IMAGE_STRUCT_FIELDS) <= set(kind.fieldNames())


def encode_image_struct(images: Any) -> Any:
    """A column of PNG bytes for a column of Spark image structs (null stays null).

    Spark stores ``data`` as rows of ``width * nChannels`` bytes, channels in OpenCV's order
    (BGR or BGRA; one channel is grey); PNG is lossless, so decoding gives these pixels back.
    An image Spark could not read (``spark.read.format("image")`` with ``dropInvalid`` false)
    has no data: it becomes an empty image, reported like any undecodable one.
    """
    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    def encode(structs: pd.DataFrame) -> pd.Series:
        columns = (structs[name] for name in ("height", "width", "nChannels", "data"))
        return pd.Series([_png(*image) for image in zip(*columns, strict=True)])

    # pandas_udf reads the type hints to pick the UDF's kind; as strings (postponed annotations)
    # naming a local import they cannot be resolved, so they are given as the types themselves.
    encode.__annotations__ = {"structs": pd.DataFrame, "return": pd.Series}
    udf: Any = pandas_udf(encode, "binary")  # type: ignore[call-overload]
    return F.when(images.isNotNull(), udf(images))


def _png(height: int, width: int, channels: int, data: bytes | None) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    if data is None or height <= 0 or width <= 0 or channels not in (1, 3, 4):
        return b""
    pixels = np.frombuffer(data, dtype=np.uint8)
    if pixels.size != height * width * channels:
        return b""
    pixels = pixels.reshape(height, width, channels)
    if channels == 1:
        picture = Image.fromarray(pixels[:, :, 0], "L")
    else:
        order = [2, 1, 0, 3][:channels]  # BGR(A) -> RGB(A)
        picture = Image.fromarray(np.ascontiguousarray(pixels[:, :, order]))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


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
