"""A finished statement's features as Spark DataFrames: ``result.features(layer)`` and INTO TABLE.

Every layer's frame has the same columns: ``id`` (the join key), ``label`` (its original values),
the structured feature columns by name, and ``features``, the layer's CNN features alone as an ML
vector (doubles; the CNN computes float32, and float32 -> double is exact). Its rows are the
statement's training rows: the images that joined a table row and decoded.

The frame is read from what the run left behind, first found first, and inference runs again only
when nothing was kept:

1. the layer's table written by ``INTO TABLE <name>`` (``<name>_<layer>``);
2. the layer's ``features.parquet`` written by ``INTO '<dir>'`` (its vector split back into the
   structured columns and the CNN part);
3. the feature store's entry of the layer's features (``WITH (cache = true)``, an image
   directory), joined with the structured side again;
4. otherwise the layer's inference, in one pass from the images, joined the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vista_sql.catalog import CnnInfo
from vista_sql.errors import VistaError
from vista_sql.logical.plan import LayerOut, WeightsSpec
from vista_sql.physical.prepare import STRUCT, sql_name
from vista_sql.physical.sources import IMAGE, KEY
from vista_sql.physical.train import FEATURES, LABEL

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from vista_sql.physical.store import FeatureStore, StatementKeys

ID = "id"
LABEL_COLUMN = "label"
VECTOR = "features"
"""The output columns: the key, the original label, and the layer's CNN features."""


def table_name(prefix: str, layer: str) -> str:
    """INTO TABLE's table of one layer: ``<prefix>_<layer>`` (a database prefix kept)."""
    return f"{prefix}_{layer}"


def _labels(labels: Sequence[Any]) -> Column:
    """The original label of the indexed LABEL column (LABEL = i means labels[i])."""
    from pyspark.sql import functions as F

    originals = F.array(*[F.lit(value) for value in labels])
    return F.element_at(originals, F.col(LABEL).cast("int") + 1)


def split_assembled(
    frame: DataFrame,
    *,
    key: str,
    label: Column,
    vector: str,
    columns: Sequence[str],
    size: int,
) -> DataFrame:
    """(id, label, structured columns, CNN vector) from an assembled [structured, CNN] vector."""
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import functions as F

    values = vector_to_array(F.col(vector))
    return frame.select(
        F.col(key).alias(ID),
        label.alias(LABEL_COLUMN),
        *[values[i].alias(name) for i, name in enumerate(columns)],
        array_to_vector(F.slice(values, len(columns) + 1, size)).alias(VECTOR),
    )


def from_assembled(
    frame: DataFrame, columns: Sequence[str], labels: Sequence[Any], size: int
) -> DataFrame:
    """The output frame of a branch table (KEY, LABEL, FEATURES), as the executor caches it."""
    return split_assembled(
        frame, key=KEY, label=_labels(labels), vector=FEATURES, columns=columns, size=size
    )


def _joined(table: DataFrame, cnn: DataFrame, columns: Sequence[str], labels: Any) -> DataFrame:
    """The output frame of (KEY, values: array<float>) joined with the structured side."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    joined = table.join(cnn, KEY, "inner")
    return joined.select(
        F.col(KEY).alias(ID),
        _labels(labels).alias(LABEL_COLUMN),
        *[F.col(STRUCT)[i].alias(name) for i, name in enumerate(columns)],
        array_to_vector(F.col("values").cast("array<double>")).alias(VECTOR),
    )


@dataclass
class LayerFeatures:
    """Everything ``result.features(layer)`` needs once the statement has run."""

    images: DataFrame
    """The image side (KEY, IMAGE), keys aligned with the table's."""
    table: DataFrame
    """The structured side (KEY, LABEL, STRUCT)."""
    columns: tuple[str, ...]
    labels: tuple[Any, ...]
    cnn: CnnInfo
    weights: WeightsSpec
    pooling: str
    batch_size: int
    threads: int | None = None
    into: str | None = None
    into_table: str | None = None
    store: FeatureStore | None = None
    keys: StatementKeys | None = None

    def frame(self, layer: str) -> DataFrame:
        """The layer's frame from the first place that holds it (see the module's docstring)."""
        info = self.cnn.layer(layer)
        assert info is not None, "the caller checked the layer"
        size = info.feature_size(self.pooling)
        spark = self.images.sparkSession
        if self.into_table is not None:
            name = quoted(table_name(self.into_table, layer))
            if spark.catalog.tableExists(name):
                return spark.table(name)
        if self.into is not None:
            path = os.path.join(self.into, layer, "features.parquet")
            if os.path.isdir(path):
                from pyspark.sql import functions as F

                written = spark.read.parquet(path)
                return split_assembled(
                    written,
                    key=ID,
                    label=F.col(LABEL_COLUMN),
                    vector=VECTOR,
                    columns=self.columns,
                    size=size,
                )
        stored = self._stored(layer)
        if stored is not None:
            return _joined(self.table, stored, self.columns, self.labels)
        return _joined(self.table, self._inferred(layer), self.columns, self.labels)

    def _stored(self, layer: str) -> DataFrame | None:
        """The store's entry of the layer's features as (KEY, values), good images only."""
        from pyspark.sql import functions as F

        from vista_sql.physical.store.spark_io import VALUES
        from vista_sql.udfs.columns import ERROR_COLUMN

        if self.store is None or self.keys is None:
            return None
        info = self.cnn.layer(layer)
        assert info is not None
        key_type = self.images.schema[KEY].dataType.simpleString()
        entries = [
            e
            for e in self.store.find(self.keys.key(info, "features", self.pooling))
            if e.key_type == key_type
        ]
        if not entries:
            return None
        data = self.images.sparkSession.read.parquet(str(entries[0].data))
        return data.filter(F.col(ERROR_COLUMN).isNull()).select(KEY, F.col(VALUES))

    def _inferred(self, layer: str) -> DataFrame:
        """The layer's features inferred again from the images, as (KEY, values)."""
        from pyspark.sql import functions as F

        from vista_sql.udfs.columns import ERROR_COLUMN, output_column
        from vista_sql.udfs.inference import InferenceSpec
        from vista_sql.udfs.spark_infer import infer

        out = LayerOut(layer, "features")
        spec = InferenceSpec(
            cnn=self.cnn.name,
            weights=self.weights,
            start=None,
            outputs=(out,),
            pooling=self.pooling,
        )
        inferred = infer(
            self.images,
            spec,
            input_column=IMAGE,
            passthrough=[KEY],
            batch_size=self.batch_size,
            threads=self.threads,
        )
        return inferred.filter(F.col(ERROR_COLUMN).isNull()).select(
            KEY, F.col(output_column(out)).alias("values")
        )


def check_into_tables(spark: Any, prefix: str, layers: Sequence[str], overwrite: bool) -> None:
    """INTO TABLE refuses to replace an existing table unless WITH (overwrite = true)."""
    existing = [
        table_name(prefix, layer)
        for layer in layers
        if spark.catalog.tableExists(quoted(table_name(prefix, layer)))
    ]
    if existing and not overwrite:
        raise VistaError(
            f"INTO TABLE {prefix}: the table {existing[0]} already exists; choose another name "
            "or add WITH (overwrite = true) to replace it"
        )


def drop_tables(spark: Any, names: Sequence[str]) -> None:
    """Drop the tables a failed statement had written (it leaves none half done)."""
    for name in names:
        spark.sql(f"DROP TABLE IF EXISTS {quoted(name)}")


def quoted(name: str) -> str:
    """A (possibly database-qualified) table name backquoted for Spark SQL."""
    return ".".join(sql_name(part) for part in name.split("."))
