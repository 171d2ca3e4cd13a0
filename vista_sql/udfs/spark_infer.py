"""Partial CNN inference as a Spark DataFrame transformation (``mapInArrow``).

``infer`` adds one ``array<float>`` column per requested output and an ``_error`` column to the
passthrough columns. Inside each Python worker the function decodes (or reads stored tensors) and
infers in batches of ``batch_size`` with a runner kept in a module-global cache
(:func:`vista_sql.udfs.inference.runner_for`), so a reused worker
(``spark.python.worker.reuse``, Spark's default) builds its model once, not once per task.

Why ``mapInArrow``: it hands the worker Arrow record batches and takes them back, so a batch of
features becomes a list column by wrapping the (n, size) float32 result with offsets, without
a Python object per row; a bad row keeps its place with null outputs and an error
(``predict_batch_udf`` has no per-row error channel). Measured on 64 rows of 100,352 floats (a
VGG16 conv5 resume tensor): 0.6 ms to wrap as Arrow, 36 ms through a pandas column of arrays as
``mapInPandas`` needs. For AlexNet's top 3 layers (small outputs, inference-bound) the three ways
were within noise of each other end to end (256 images, local[2], 1 thread per task: 87.5,
80.7 and 75.7 images/s for mapInArrow, mapInPandas and predict_batch_udf).

Weights reach executors without a shared file system: random weights are regenerated from the
seed (bit-identical everywhere, see :mod:`vista_sql.udfs.weights`); an ImageNet or user file is
shipped with ``SparkContext.addFile`` (on Spark Connect: ``addArtifacts(..., file=True)``) and
opened with ``SparkFiles.get`` (local mode and clusters alike).

Spark cuts the input into Arrow batches of ``spark.sql.execution.arrow.maxRecordsPerBatch`` rows
(10,000 by default) before this code sees them; with images of ~100 KB, set it near
``batch_size`` to bound a worker's memory.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vista_sql.errors import SemanticError
from vista_sql.udfs.columns import ERROR_COLUMN
from vista_sql.udfs.decode import ImageError
from vista_sql.udfs.inference import InferenceSpec, limit_threads, prepare_batch, runner_for
from vista_sql.udfs.weights import weights_file

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession


def infer(
    df: DataFrame,
    spec: InferenceSpec,
    *,
    input_column: str,
    passthrough: Sequence[str],
    batch_size: int,
    threads: int | None = None,
    counter: Any = None,
) -> DataFrame:
    """``df``'s ``passthrough`` columns + one ``array<float>`` per output of ``spec`` + ``_error``.

    ``input_column`` holds encoded images (binary) or image file paths (string, read on the
    worker) when ``spec.start`` is None, else the stored resume tensor of ``spec.start`` (an
    array of floats, as a previous ``infer`` wrote it). Every input row gives one output row: a
    bad one has null outputs and the reason in ``_error``. Output columns are named by
    :func:`vista_sql.udfs.columns.output_column`.

    ``threads`` caps TensorFlow's threads per Python worker; None means ``spark.task.cpus`` (1
    unless configured), the cores Spark gives each task. Letting every task's TensorFlow use
    every core oversubscribes them: VGG16 in local[2] with 2 tasks ran at 0.57 of in-process
    TensorFlow's speed with TensorFlow's default threads, 0.90 with 1 thread per task.

    ``counter``: a Spark accumulator that counts the rows inferred (every pass: a task run again
    counts again).
    """
    from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

    if batch_size < 1:
        raise SemanticError(f"batch_size must be at least 1, got {batch_size}")
    columns = list(df.columns)
    missing = [c for c in (input_column, *passthrough) if c not in columns]
    if missing:
        raise SemanticError(f"infer: no column {missing[0]!r}; columns: {', '.join(columns)}")
    clashes = [c for c in (*spec.columns, ERROR_COLUMN) if c in passthrough]
    if clashes:
        raise SemanticError(f"infer: passthrough column {clashes[0]!r} would be overwritten")
    input_type = df.schema[input_column].dataType.simpleString()
    expected = ("binary", "string") if spec.start is None else ("array<float>", "array<double>")
    if input_type not in expected:
        raise SemanticError(
            f"infer: input column {input_column!r} is {input_type};"
            f" expected {' or '.join(expected)}"
        )
    if threads is None:
        threads = int(df.sparkSession.conf.get("spark.task.cpus", "1") or 1)
    path = weights_file(spec.cnn, spec.weights)
    shipped = ship_file(df.sparkSession, path) if path is not None else None
    schema = StructType(
        [df.schema[c] for c in passthrough]
        + [StructField(c, ArrayType(FloatType(), containsNull=False)) for c in spec.columns]
        + [StructField(ERROR_COLUMN, StringType())]
    )
    function = functools.partial(
        infer_partition,
        spec=spec,
        shipped=shipped,
        input_column=input_column,
        passthrough=tuple(passthrough),
        batch_size=batch_size,
        threads=threads,
        schema_json=schema.json(),
    )
    if counter is not None:
        function = functools.partial(_counted, function=function, counter=counter)
    return df.select(*passthrough, input_column).mapInArrow(function, schema)


def _counted(
    batches: Iterator[pa.RecordBatch], *, function: Any, counter: Any
) -> Iterator[pa.RecordBatch]:
    """``function`` over ``batches``, adding the rows it is given to the Spark accumulator
    ``counter`` (``infer``'s: how many inputs were inferred, counting every pass)."""

    def counting() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            counter.add(batch.num_rows)
            yield batch

    return function(counting())


_shipped: dict[tuple[str, str], str] = {}
"""(Spark application id or Connect session, shipped name) -> the local file added to it."""
_ship_lock = threading.Lock()


def ship_file(spark: SparkSession, path: str) -> str:
    """Make ``path`` available to every executor; returns the name for ``SparkFiles.get``.

    The name carries a digest of the path, size and modification time: two different files with
    the same base name never collide in the executors' flat ``SparkFiles`` directory, and a file
    changed since it was shipped ships again.
    """
    stat = os.stat(path)
    identity = f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}"
    name = f"vista-{hashlib.sha256(identity.encode()).hexdigest()[:16]}-{os.path.basename(path)}"
    if type(spark).__module__.startswith("pyspark.sql.connect"):
        # Spark Connect has no SparkContext: a file artifact lands in the session's directory,
        # which is what SparkFiles.get reads in that session's Python workers.
        connect: Any = spark
        owner = f"connect:{connect.session_id}"
        add: Callable[[str], None] = functools.partial(connect.addArtifacts, file=True)
    else:
        context = spark.sparkContext
        owner, add = context.applicationId, context.addFile
    with _ship_lock:
        key = (owner, name)
        if key not in _shipped:
            directory = Path(tempfile.mkdtemp(prefix="vista-weights-"))
            link = directory / name
            try:  # a hard link, not a symlink: Spark resolves symlinks and ships the target's name
                os.link(path, link)
            except OSError:  # another file system: copy
                shutil.copyfile(path, link)
            add(str(link))
            _shipped[key] = str(link)
    return name


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's stderr silenced.

    TensorFlow's native code prints start-up notices (oneDNN, CPU features) to file descriptor 2
    while it is imported, before its logging can be configured; in every Python worker they would
    reach the user's terminal. Python errors raised by the import still propagate.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def infer_partition(
    batches: Iterator[pa.RecordBatch],
    *,
    spec: InferenceSpec,
    shipped: str | None,
    input_column: str,
    passthrough: tuple[str, ...],
    batch_size: int,
    threads: int | None,
    schema_json: str,
) -> Iterator[pa.RecordBatch]:
    """The function each Python worker runs over its partition's Arrow batches."""
    import json

    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    arrow_schema = to_arrow_schema(StructType.fromJson(json.loads(schema_json)))
    runner = None
    for batch in batches:
        for begin in range(0, batch.num_rows, batch_size):
            chunk = batch.slice(begin, batch_size)
            if runner is None:
                import_tensorflow_quietly()
                limit_threads(threads)
                path = None
                if shipped is not None:
                    from pyspark import SparkFiles

                    path = SparkFiles.get(shipped)
                runner = runner_for(spec, path)
            inputs = _inputs(chunk.column(input_column), spec)
            rows, model_inputs, errors = prepare_batch(spec, inputs)
            results = runner.run(model_inputs)
            ok = np.zeros(chunk.num_rows, dtype=bool)
            ok[rows] = True
            arrays = [chunk.column(name) for name in passthrough]
            arrays += [_list_array(results[column], ok) for column in spec.columns]
            arrays.append(_string_array(errors))
            yield _record_batch(arrays, arrow_schema)


def _inputs(column: pa.Array, spec: InferenceSpec) -> list[Any]:
    """The inputs of one chunk: bytes (read from paths if need be) or flat float arrays."""
    import pyarrow as pa

    if spec.start is not None:
        offsets = column.offsets.to_numpy()
        values = column.values.to_numpy(zero_copy_only=False)
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        return [
            values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(column))
        ]
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return [_read(path) for path in column.to_pylist()]
    return list(column.to_pylist())


def _read(path: str | None) -> bytes | ImageError | None:
    """A file's bytes, or the error that decoding will report for its row."""
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        return ImageError(f"cannot read image file {path}: {error.strerror}")


def _list_array(values: np.ndarray, ok: np.ndarray) -> pa.Array:
    """(ok.sum(), size) float32 values as a list array with a null row where ``ok`` is False."""
    import pyarrow as pa

    size = values.shape[1] if values.ndim == 2 else 0
    lengths = np.where(ok, size, 0).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError(
            f"a batch of {len(ok)} rows of {size} floats is too large for one Arrow batch;"
            " use a smaller batch_size"
        )
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1), pa.float32())
    return pa.ListArray.from_arrays(
        pa.array(offsets.astype(np.int32), pa.int32()), flat, mask=pa.array(~ok)
    )


def _string_array(errors: list[str | None]) -> pa.Array:
    import pyarrow as pa

    return pa.array(errors, pa.string())


def _record_batch(arrays: list[pa.Array], schema: pa.Schema) -> pa.RecordBatch:
    """The output batch, each array cast to the exact type Spark expects for its column."""
    import pyarrow as pa

    cast = [array.cast(field.type) for array, field in zip(arrays, schema, strict=True)]
    return pa.RecordBatch.from_arrays(cast, schema=schema)
