"""Lowering the chosen plan to Spark DataFrames, one node at a time, shared nodes once.

Each plan node becomes a DataFrame; a node that several branches share is lowered once, so the
branches hold the same DataFrame (and, under a Persist node, the same cached data). Decode is fused
into the Infer that reads the images: decoding happens in the same Python worker as inference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vista_sql.logical.plan import (
    Assemble,
    Decode,
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
from vista_sql.physical.prepare import STRUCT
from vista_sql.physical.sources import IMAGE, KEY
from vista_sql.physical.train import FEATURES, LABEL

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

ERROR = "_error"
"""The column udfs' inference fills with a decode error (null when the image was fine)."""

STORAGE_LEVELS = {
    "deserialized": "MEMORY_AND_DISK_DESER",
    "serialized": "MEMORY_AND_DISK",
    "disk": "DISK_ONLY",
}
"""Persist levels of the plan -> Spark storage levels. Spark's DataFrame cache is columnar; its
default MEMORY_AND_DISK keeps compressed serialized column batches, _DESER keeps them as objects."""


@dataclass(frozen=True)
class LoweringSettings:
    """Physical settings the lowering needs that the plan nodes do not carry."""

    partitions: int
    batch_size: int
    threads: int | None = None


@dataclass
class Lowering:
    """Memoised node -> DataFrame translation for one run."""

    images: DataFrame
    table: DataFrame
    settings: LoweringSettings
    frames: dict[int, DataFrame] = field(default_factory=dict)
    name_key_type: str = "string"
    """The type image file names were cast to as ids (``run.Prepared.name_key_type``)."""
    inferred: Any = None
    """A Spark accumulator of the images inferred from their bytes, every pass counted (None
    where the session has none: Spark Connect); see :meth:`count_inferred`."""

    def count_inferred(self) -> None:
        """Count the images that inferences from the image bytes infer, from now on (not on
        Spark Connect, which has no accumulators)."""
        spark = self.images.sparkSession
        if type(spark).__module__.startswith("pyspark.sql.connect"):
            return
        self.inferred = spark.sparkContext.accumulator(0)

    def frame(self, node: Plan) -> DataFrame:
        key = id(node)
        if key not in self.frames:
            self.frames[key] = self._lower(node)
        return self.frames[key]

    def _lower(self, node: Plan) -> DataFrame:
        match node:
            case ImageScan(files=files):
                images = self.images
                if files is not None:  # the images a stored layer lacks
                    images = images.join(self.ids(files), KEY, "left_semi")
                return images.repartition(self.settings.partitions, KEY)
            case TableScan():
                return self.table
            case StoredScan():
                return self._stored(node).repartition(self.settings.partitions, KEY)
            case UnionAll(inputs=inputs):
                # a stored part is hashed with the rest, not once more before
                parts = [
                    self._stored(part) if isinstance(part, StoredScan) else self.frame(part)
                    for part in inputs
                ]
                return self._union(parts)
            case Decode(child=child):
                return self.frame(child)
            case Infer():
                return self._infer(node)
            case Join(left=left, right=right, strategy=strategy):
                from pyspark.sql import functions as F

                right_frame = self.frame(right)
                if strategy == "broadcast":
                    right_frame = F.broadcast(right_frame)
                elif strategy == "shuffle":
                    right_frame = right_frame.hint("shuffle_hash")
                return self.frame(left).join(right_frame, KEY, "inner")
            case Persist(child=child, level=level):
                from pyspark import StorageLevel

                name = STORAGE_LEVELS[level or "serialized"]
                return self.frame(child).persist(getattr(StorageLevel, name))
            case Assemble(child=child, layer=layer):
                return self._assemble(self.frame(child), layer)
        raise NotImplementedError(f"cannot lower {node.describe()}: not a physical operator")

    def _stored(self, node: StoredScan) -> DataFrame:
        """A feature-store entry's rows (less those of images removed or changed since)."""
        from vista_sql.physical.store.spark_io import read_stored

        stored = read_stored(self.images.sparkSession, node)
        if node.dropped is not None:
            stored = stored.join(self.ids(node.dropped), KEY, "left_anti")
        return stored

    def ids(self, files: ImageFiles) -> DataFrame:
        """The ids of some files of the image directory, as one KEY column of the images' key
        type (a broadcast side for a semi or anti join): each file name less its extension, cast
        as the image source casts it (``sources``), then as the keys were aligned."""
        from pyspark.sql import functions as F

        stems = [path.rsplit("/", 1)[-1].rsplit(".", 1)[0] for path in files.paths]
        spark = self.images.sparkSession
        final = self.images.schema[KEY].dataType.simpleString()
        # Built in the JVM from one string literal, split at "/" (never part of a file name):
        # a DataFrame of Python rows would start a Python worker task to check them (measured:
        # 1.3 s of a 200-image incremental statement, on cold workers).
        listed = F.split(F.lit("/".join(stems)), "/")
        names = spark.range(1).select(F.explode(listed).alias("name"))
        key = F.col("name").try_cast(self.name_key_type).cast(final)
        return F.broadcast(names.select(key.alias(KEY)).filter(F.col(KEY).isNotNull()))

    def _union(self, parts: list[DataFrame]) -> DataFrame:
        """Rows of every part (the columns all have, an error column where any has one), hashed
        by key into the plan's partitions as a scan is."""
        from pyspark.sql import functions as F

        shared = [c for c in parts[0].columns if c != ERROR and all(c in p.columns for p in parts)]
        errors = any(ERROR in part.columns for part in parts)
        union = None
        for part in parts:
            columns = [F.col(c) for c in shared]
            if errors:
                error = F.col(ERROR) if ERROR in part.columns else F.lit(None).cast("string")
                columns.append(error.alias(ERROR))
            selected = part.select(*columns)
            union = selected if union is None else union.unionByName(selected)
        assert union is not None
        return union.repartition(self.settings.partitions, KEY)

    def _in_plan_partitions(self, joined: DataFrame) -> DataFrame:
        """A join's rows hashed by key into the plan's partitions before inference.

        vista_sql's own session shuffles into the plan's partitions already. A user's session (a
        Connect server's, a notebook's) keeps its spark.sql.shuffle.partitions, 200 by default,
        and Spark shuffles both sides of a join into that many partitions even when they are
        hashed into fewer: the inference after the join would run 200 Python tasks (measured on
        a Connect server: about 0.4 s each for 12 images in all). Inference is what costs per
        task; the joined rows (images and structured features, not CNN features) are shuffled
        once more instead."""
        count = self.settings.partitions
        shuffle = joined.sparkSession.conf.get("spark.sql.shuffle.partitions")
        if shuffle is None or int(shuffle) == count:
            return joined
        return joined.repartition(count, KEY)

    def _infer(self, node: Infer) -> DataFrame:
        from vista_sql.udfs.columns import output_column
        from vista_sql.udfs.inference import InferenceSpec
        from vista_sql.udfs.spark_infer import infer

        child = self.frame(node.child)
        source = node.child.child if isinstance(node.child, Decode) else node.child
        if isinstance(source, Join):
            child = self._in_plan_partitions(child)
        if node.start is None:
            input_column = IMAGE
        else:
            input_column = output_column(LayerOut(node.start, "resume"))
            if ERROR in child.columns:  # a bad image has no tensor to resume from
                from pyspark.sql import functions as F

                child = child.filter(F.col(ERROR).isNull()).drop(ERROR)
        passthrough = [c for c in child.columns if c != input_column]
        spec = InferenceSpec(
            cnn=node.cnn,
            weights=node.weights,
            start=node.start,
            outputs=node.outputs,
            pooling=node.pooling,
        )
        return infer(
            child,
            spec,
            input_column=input_column,
            passthrough=passthrough,
            batch_size=node.batch_size or self.settings.batch_size,
            threads=self.settings.threads,
            counter=self.inferred if node.start is None else None,
        )

    def _assemble(self, frame: DataFrame, layer: str) -> DataFrame:
        """(KEY, LABEL, FEATURES = [structured, CNN layer], ERROR when images may be bad).

        FEATURES is null on a row whose image failed to decode; the runner reports those rows.
        """
        from pyspark.ml.functions import array_to_vector
        from pyspark.sql import functions as F

        from vista_sql.udfs.columns import output_column

        cnn = F.col(output_column(LayerOut(layer, "features"))).cast("array<double>")
        # array_to_vector fails on null (a JVM NullPointerException), so a bad image's row keeps
        # a null vector explicitly
        vector = array_to_vector(F.concat(F.col(STRUCT), cnn))
        features = F.when(cnn.isNotNull(), vector).alias(FEATURES)
        errors = [ERROR] if ERROR in frame.columns else []
        # A shuffle join leaves spark.sql.shuffle.partitions partitions (200 in a session left at
        # Spark's defaults), and the cached branch table keeps them: every training iteration
        # would then run that many tasks. The plan's partition count holds for training too.
        # vista_sql's own session shuffles into the plan's partitions already, so a coalesce
        # changes nothing there. A user's session is not reconfigured, and there a coalesce
        # would be wrong: it runs ~50 shuffled hash join partitions in one task, and the join
        # frees each partition's hash map (at least a memory page) only when the task ends, so
        # 500 VGG16 rows read from the feature store failed a 4 GiB heap with
        # UNABLE_TO_ACQUIRE_MEMORY. Hashing the branch table into the plan's partitions costs
        # one shuffle of it and keeps every join partition its own task.
        assembled = frame.select(KEY, LABEL, features, *errors)
        count = self.settings.partitions
        shuffle = frame.sparkSession.conf.get("spark.sql.shuffle.partitions")
        if shuffle is not None and int(shuffle) != count:
            return assembled.repartition(count, KEY)
        return assembled.coalesce(count)
