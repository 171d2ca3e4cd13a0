"""Reading and writing feature-store entries with Spark (the store itself: ``physical.store``).

**Reading** a ``StoredScan``: the entry's Parquet, its values named as the inference would have
named them (the lowering repartitions it by key like an image scan, so every plan above it lowers
unchanged).
Images that failed to decode when the entry was written are stored with their error and come back
with it, so ``on_bad_image`` fails or skips them as it would have.

**Writing** costs no inference: the executor calls :class:`StoreWriter` with every DataFrame it
has just materialized (cached), and the writer stores the CNN layers in it that are not stored
yet: from a persisted inference every output (features and resume tensors), from a branch table
its layer's features (sliced out of the assembled vector: float32 -> double -> float32 is
lossless). Only tables that hold every image are stored (an entry stands for the whole image
source, whatever table a later statement joins): those below the join, and those above it when
every image has a row in the table. A failed write is reported and never fails the statement.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vista_sql.catalog import CnnInfo
from vista_sql.cost_model.constants import STORE_ROW_GROUP_BYTES
from vista_sql.errors import DataError
from vista_sql.logical.plan import (
    Assemble,
    ImageFiles,
    ImageScan,
    Infer,
    Join,
    LayerOut,
    Persist,
    Plan,
    StoredScan,
    TableScan,
    UnionAll,
)
from vista_sql.logical.stored import StoredLayer
from vista_sql.physical.sources import KEY
from vista_sql.physical.store.entries import Entry, FeatureStore, read_entry
from vista_sql.physical.store.keys import StatementKeys, key_pooling, listing_digest
from vista_sql.udfs.columns import ERROR_COLUMN, output_column

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

VALUES = "values"
"""The entry's tensor column: array<float>, one row per image (null where the image was bad)."""


class StoreWarning(UserWarning):
    """A layer could not be written to the feature store (the statement's result is unaffected)."""


def read_stored(spark: SparkSession, node: StoredScan) -> DataFrame:
    """The entry of ``node`` as (KEY, its column[, _error]), as its files hold it (the lowering
    hashes it by KEY)."""
    from pyspark.sql import functions as F

    entry = read_entry(Path(node.location))
    if entry is None:
        raise DataError(
            f"the feature store entry {node.location} was removed while this statement ran;"
            " run it again (or with WITH (cache = false))"
        )
    entry.touch()
    column = output_column(LayerOut(node.layer, node.form))
    frame = spark.read.parquet(str(entry.data))
    selected = [F.col(KEY), F.col(VALUES).alias(column)]
    if entry.errors:
        selected.append(F.col(ERROR_COLUMN))
    return frame.select(*selected)


@dataclass
class StoreWriter:
    """The executor's hook (``run_workload(on_materialised=...)``): stores the layers of each
    materialized DataFrame that the store lacks.

    ``every_image_joined``: whether every image has a row in the table (then tables above the
    join hold every image too). ``struct_size``: structured features before the CNN's in an
    assembled vector.
    """

    store: FeatureStore
    keys: StatementKeys
    cnn: CnnInfo
    pooling: str
    every_image_joined: bool
    struct_size: int
    stored: tuple[StoredLayer, ...] = ()
    """The entries the statement's plan was chosen with (how many hold each layer)."""
    written: list[Entry] = field(default_factory=list)
    seconds: float = 0.0
    """Wall time spent writing (the overhead the store adds to a statement)."""
    failures: list[str] = field(default_factory=list)
    _done: set[str] = field(default_factory=set)
    _segments: set[str] = field(default_factory=set)
    """Keys a segment was written for in this statement."""

    def __call__(self, node: Plan, frame: DataFrame) -> None:
        held = images_held(node)
        below_join = not any(isinstance(n, Join) for n in node.walk())
        if held is None or not (below_join or self.every_image_joined):
            return
        files = None if held == "all" else held
        assert files is None or isinstance(files, ImageFiles)
        if files is not None and not isinstance(node, Persist):
            return
        started = time.perf_counter()
        try:
            if isinstance(node, Persist):
                for out in _inferred_outputs(node):
                    column = output_column(out)
                    if column in frame.columns:
                        self._store(out, frame, _column(column), files)
            elif isinstance(node, Assemble):
                out = LayerOut(node.layer, "features")
                self._store(out, frame, self._sliced(node.layer), None)
        finally:
            self.seconds += time.perf_counter() - started

    def finish(self) -> None:
        """After the statement: remove the entries the whole ones it wrote supersede (the same
        layers for the images as they were before, segments included; the statement may have
        read them until now)."""
        for entry in self.written:
            if not entry.meta.get("segment"):
                self.store.supersede(entry)

    def _sliced(self, layer: str) -> Any:
        """The CNN part of the assembled FEATURES vector, as array<float>."""
        from pyspark.ml.functions import vector_to_array
        from pyspark.sql import functions as F

        from vista_sql.physical.train import FEATURES

        info = self.cnn.layer(layer)
        assert info is not None
        size = info.feature_size(self.pooling)
        vector = vector_to_array(F.col(FEATURES), "float32")
        # vector_to_array fails on null: a bad image's row (null FEATURES) stays null
        return F.when(F.col(FEATURES).isNotNull(), F.slice(vector, self.struct_size + 1, size))

    def _store(
        self, out: LayerOut, frame: DataFrame, values: Any, segment: ImageFiles | None
    ) -> None:
        """Store one layer in one form: for every image (``segment`` None), or as a segment
        holding only the images ``segment`` names, beside the entries holding the others. A
        layer gets a whole entry again once it is held by ``MAX_SEGMENTS`` entries or more."""
        from pyspark.sql import functions as F

        info = self.cnn.layer(out.layer)
        assert info is not None
        key = self.keys.key(info, out.form, self.pooling)
        key_type = frame.schema[KEY].dataType.simpleString()
        if segment is None and key in self._segments and self._holders(key) < MAX_SEGMENTS:
            return  # the segment just written completes it
        if key in self._done:
            return
        self._done.add(key)
        files = (
            dict(self.keys.files)
            if segment is None
            else {path: self.keys.files[path] for path in segment.paths if path in self.keys.files}
        )
        listing = listing_digest(files)
        existing = [
            e for e in self.store.find(key) if e.key_type == key_type and e.listing == listing
        ]
        if existing:
            existing[0].touch()
            return
        if not self.keys.still_current():
            self.failures.append(f"{out.describe()}: the images changed while the statement ran")
            return
        error = (
            F.col(ERROR_COLUMN)
            if ERROR_COLUMN in frame.columns
            else F.lit(None).cast("string").alias(ERROR_COLUMN)
        )
        staging = self.store.begin()
        try:
            table = frame.select(F.col(KEY), values.cast("array<float>").alias(VALUES), error)
            table.write.option("parquet.block.size", STORE_ROW_GROUP_BYTES).parquet(
                str(staging / "data")
            )
            rows, errors = _count(staging / "data")
            entry = self.store.commit(
                staging,
                key,
                {
                    "key_type": key_type,
                    "images": {"path": str(self.keys.images), "files": self.keys.image_count},
                    "cnn": self.cnn.name,
                    "weights": self.keys.weights.describe(),
                    "layer": out.layer,
                    "form": out.form,
                    "pooling": key_pooling(info, out.form, self.pooling),
                    "rows": rows,
                    "errors": errors,
                    "segment": segment is not None,
                },
                files,
            )
        except Exception as failure:  # Spark, Arrow and OS errors alike: the statement goes on
            self.store.abandon(staging)
            message = f"{out.describe()}: {type(failure).__name__}: {failure}"
            self.failures.append(message)
            warnings.warn(f"not stored in the feature store: {message}", StoreWarning, stacklevel=2)
            return
        if entry is not None:
            self.written.append(entry)
            if segment is not None:
                self._segments.add(key)
            self.store.evict()

    def _holders(self, key: str) -> int:
        """How many entries the plan read ``key``'s layer from, the segment written now included."""
        return 1 + sum(1 for s in self.stored if Path(s.location).name.startswith(f"{key}."))


MAX_SEGMENTS = 4
"""Entries that may hold one layer together (a whole one and segments of images added since)
before a statement stores the layer whole again."""


def images_held(node: Plan) -> ImageFiles | Literal["all"] | None:
    """Which images of the directory (as the statement found them) ``node``'s rows stand for:
    ``"all"``; only some files (an inference of the images stored layers lack: stored as a
    segment); or None when that is not known (two parts of different images). A union of the
    stored and inferred parts holds them all, as a stored scan outside one does (the plan reads
    an entry alone only when it holds every image); a join holds what its image side holds."""
    match node:
        case ImageScan(files=files):
            return "all" if files is None else files
        case StoredScan() | TableScan() | UnionAll():
            return "all"
        case Join(left=left):
            return images_held(left)
    held = [images_held(child) for child in node.children]
    if not held or any(h is None for h in held):
        return None
    parts = {h for h in held if h != "all"}
    if not parts:
        return "all"
    return parts.pop() if len(parts) == 1 else None


def _column(name: str) -> Any:
    from pyspark.sql import functions as F

    return F.col(name)


def _inferred_outputs(node: Plan) -> list[LayerOut]:
    """The features and resume tensors the inferences below ``node`` compute (stored scans'
    columns are in the store already), bottom of the plan first, each once."""
    found: dict[LayerOut, None] = {}
    for below in reversed(list(node.walk())):
        if isinstance(below, Infer):
            for out in below.outputs:
                if out.form in ("features", "resume"):
                    found[out] = None
    return list(found)


def _count(data: Path) -> tuple[int, int]:
    """Rows and error rows of a written entry, from its Parquet files (footers and the small
    error column only)."""
    import pyarrow.parquet as pq

    files = sorted(p for p in data.glob("*.parquet"))
    rows = errors = 0
    for path in files:
        column = pq.read_table(path, columns=[ERROR_COLUMN]).column(ERROR_COLUMN)
        rows += len(column)
        errors += len(column) - column.null_count
    return rows, errors


def store_report(
    plan: Plan, writer: StoreWriter | None, off_reason: str | None = None
) -> dict[str, Any]:
    """``TransferResult.store``: the entries ``plan`` read and ``writer`` wrote (and, when the
    store was off although asked for, why)."""
    read = sorted(
        {
            f"{n.cnn}.{n.layer}:{n.form} {n.location}"
            for n in plan.walk()
            if isinstance(n, StoredScan)
        }
    )
    if writer is None:
        report: dict[str, Any] = {"read": read, "written": [], "write_seconds": 0.0, "failures": []}
        if off_reason is not None:
            report["off"] = off_reason
        return report
    return {
        "read": read,
        "written": [f"{e.describe()} {e.location}" for e in writer.written],
        "write_seconds": writer.seconds,
        "failures": list(writer.failures),
    }
