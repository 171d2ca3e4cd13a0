"""Spark-native data interfaces: features back as DataFrames, INTO TABLE, Spark SQL and image
data source sources.

One small Foods-like dataset and the tiny CNN; every statement runs on the shared session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_cnn import TINY_FEATURES

import vista_sql
from vista_sql.datasets.foods import FoodsDataset, make_foods
from vista_sql.errors import SemanticError, VistaError

pytestmark = [pytest.mark.spark, pytest.mark.tf]

ROWS = 24
FEATURES = "energy, protein, fat"


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return make_foods(tmp_path_factory.mktemp("interfaces") / "foods", rows=ROWS, image_size=32)


@pytest.fixture(scope="module")
def database(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database of its own, so INTO TABLE writes under a temporary directory."""
    location = tmp_path_factory.mktemp("warehouse")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS vista_interfaces LOCATION '{location}'")
    return "vista_interfaces"


def _statement(foods: FoodsDataset, tiny: str, tail: str, layers: str = "conv2, fc2") -> str:
    return (
        f"TRANSFER FEATURES OF '{foods.images_dir}' AS i FROM CNN {tiny} LAYERS ({layers})"
        f" JOIN '{foods.table_path}' AS f ON i.id = f.id FEATURES ({FEATURES})"
        f" TRAIN LOGREG (max_iter = 5) LABEL healthy VALIDATE 0.25 {tail}"
    )


def _by_id(frame: Any) -> Any:
    table = frame.toPandas().sort_values("id").reset_index(drop=True)
    table["features"] = [np.asarray(v.toArray()) for v in table["features"]]
    return table


def _stack(table: Any) -> np.ndarray:
    return np.stack(list(table["features"]))


@pytest.mark.slow
def test_features_equal_the_into_parquet_and_kerass_outputs(
    spark: Any, tiny: str, foods: FoodsDataset, database: str, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from vista_sql.udfs import registry
    from vista_sql.udfs.decode import decode_batch

    target = tmp_path / "out"
    sql = _statement(foods, tiny, f"WITH (cache = false) INTO '{target}'")
    result = vista_sql.execute(sql, spark=spark, progress=False)
    features = _by_id(result.features("fc2"))

    # Shape of the frame: id, label, the structured columns by name, the CNN vector.
    assert list(features.columns) == ["id", "label", "energy", "protein", "fat", "features"]
    assert len(features) == ROWS
    assert _stack(features).shape == (ROWS, TINY_FEATURES["fc2"])

    # Equal to what INTO wrote: the same rows, its vector = structured + these CNN features.
    written = pq.read_table(target / "fc2" / "features.parquet").to_pandas()
    written = written.sort_values("id").reset_index(drop=True)
    assert list(written["id"]) == list(features["id"])
    assert list(written["label"]) == list(features["label"])
    vectors = np.stack([np.asarray(v["values"]) for v in written["features"]])
    np.testing.assert_array_equal(vectors[:, 3:], _stack(features))
    np.testing.assert_array_equal(vectors[:, :3], features[["energy", "protein", "fat"]])

    # Equal to Keras's own outputs for the same images.
    images = [(foods.images_dir / f"{key}.jpg").read_bytes() for key in features["id"]]
    pixels = decode_batch(images, (32, 32), "unit").pixels
    keras_outputs = registry.model_from_registered(tiny)(pixels).numpy()
    np.testing.assert_allclose(_stack(features), keras_outputs, rtol=1e-5, atol=1e-6)

    # The structured columns and labels are the table's own.
    import pandas as pd

    table = pd.read_parquet(foods.table_path).sort_values("id").reset_index(drop=True)
    np.testing.assert_array_equal(
        features[["energy", "protein", "fat"]], table[["energy", "protein", "fat"]]
    )
    assert list(features["label"]) == list(table["healthy"])

    # Without INTO the layer is inferred again: the same values (to float32 rounding: the plan
    # may batch the images differently, and TensorFlow's kernels then round differently).
    again = vista_sql.execute(sql.split(" INTO ")[0], spark=spark, progress=False)
    np.testing.assert_allclose(
        _stack(_by_id(again.features("FC2"))), _stack(features), rtol=1e-6, atol=1e-7
    )
    with pytest.raises(SemanticError, match="no layer fc1"):
        again.features("fc1")

    # Temporary views, one per layer, queried with Spark SQL.
    views = result.register_views("food")
    assert views == {"fc2": "food_fc2", "conv2": "food_conv2"}
    counted = spark.sql("SELECT label, count(*) AS n FROM food_conv2 GROUP BY label").collect()
    assert sum(row["n"] for row in counted) == ROWS
    size = spark.sql("SELECT features FROM food_conv2 LIMIT 1").collect()[0][0].size
    assert size == TINY_FEATURES["conv2"]


@pytest.mark.slow
def test_into_table_saves_one_table_per_layer(
    spark: Any, tiny: str, foods: FoodsDataset, database: str
) -> None:
    prefix = f"{database}.foods_features"
    sql = _statement(foods, tiny, f"WITH (cache = false) INTO TABLE {prefix}")
    result = vista_sql.execute(sql, spark=spark, progress=False)
    for layer in ("conv2", "fc2"):
        assert spark.catalog.tableExists(f"{prefix}_{layer}")
    saved = _by_id(spark.table(f"{prefix}_fc2"))
    assert len(saved) == ROWS
    np.testing.assert_array_equal(_stack(saved), _stack(_by_id(result.features("fc2"))))
    # An existing table is kept unless overwrite is given.
    with pytest.raises(VistaError, match="already exists"):
        vista_sql.execute(sql, spark=spark, progress=False)
    replaced = vista_sql.execute(
        sql.replace("cache = false", "cache = false, overwrite = true"), spark=spark, progress=False
    )
    assert replaced.to_pandas()["accuracy"].tolist() == result.to_pandas()["accuracy"].tolist()


@pytest.mark.slow
def test_features_come_from_the_feature_store_without_inference(
    spark: Any, tiny: str, foods: FoodsDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = _statement(foods, tiny, f"WITH (cache = true, cache_dir = '{tmp_path}')", "fc2")
    result = vista_sql.execute(sql, spark=spark, progress=False)
    assert result.store["written"]
    expected = _stack(_by_id(result.features("fc2")))

    from vista_sql.physical import features as features_module

    def no_inference(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("inference ran again")

    monkeypatch.setattr(features_module.LayerFeatures, "_inferred", no_inference)
    np.testing.assert_array_equal(_stack(_by_id(result.features("fc2"))), expected)


@pytest.mark.slow
def test_a_subquery_with_where_gives_the_metrics_of_the_same_rows_in_a_file(
    spark: Any, tiny: str, foods: FoodsDataset, tmp_path: Path
) -> None:
    import pandas as pd

    table = pd.read_parquet(foods.table_path)
    spark.read.parquet(str(foods.table_path)).createOrReplaceTempView("foods_table")
    spark.read.format("binaryFile").load(str(foods.images_dir)).selectExpr(
        "cast(regexp_extract(path, '([0-9]+)[.]jpg$', 1) AS int) AS id", "content"
    ).createOrReplaceTempView("food_images")
    kept = table[table["energy"] < table["energy"].median()]
    subset = tmp_path / "subset.parquet"
    kept.to_parquet(subset, index=False)

    def statement(images: str, joined: str) -> str:
        return (
            f"TRANSFER FEATURES OF {images} FROM CNN {tiny} LAYERS (fc1, fc2)"
            f" JOIN {joined} ON i.id = f.id FEATURES ({FEATURES})"
            " TRAIN LOGREG (max_iter = 5) LABEL healthy VALIDATE 0.3 SEED 7"
            " WITH (cache = false, partitions = 2)"
        )

    threshold = float(table["energy"].median())
    from_query = vista_sql.execute(
        statement(
            "(SELECT id, content FROM food_images) AS i (content)",
            f"(SELECT * FROM foods_table WHERE energy < {threshold!r}) AS f",
        ),
        spark=spark,
        progress=False,
    )
    from_file = vista_sql.execute(
        statement(f"'{foods.images_dir}' AS i", f"'{subset}' AS f"), spark=spark, progress=False
    )
    ours, theirs = from_query.to_pandas(), from_file.to_pandas()
    assert from_query.unmatched == {"images": ROWS - len(kept), "table": 0}
    assert list(ours["train_rows"] + ours["validation_rows"]) == [len(kept)] * 2
    for metric in ("accuracy", "f1", "train_rows", "validation_rows"):
        assert list(ours[metric]) == list(theirs[metric])
    # EXPLAIN took the queries' statistics from Spark and says how it got each one.
    explained = vista_sql.explain(
        "EXPLAIN COST "
        + statement(
            "(SELECT id, content FROM food_images) AS i (content)",
            f"(SELECT * FROM foods_table WHERE energy < {threshold!r}) AS f",
        ),
        spark=spark,
    )
    assert f"table: {len(kept)} rows counted by Spark" in explained
    assert f"images: {ROWS} rows" in explained
    assert "guessed from Spark's plan size" in explained


def test_a_query_source_spark_cannot_analyze_points_at_it(spark: Any, tiny: str) -> None:
    sql = (
        f"TRANSFER FEATURES OF (SELECT * FROM no_such_images) AS i FROM CNN {tiny} LAYERS (fc2)"
        " JOIN (SELECT 1 AS id, 0 AS healthy) AS f ON i.id = f.id TRAIN LOGREG LABEL healthy"
        " WITH (cache = false)"
    )
    with pytest.raises(SemanticError) as raised:
        vista_sql.execute(sql, spark=spark, progress=False)
    assert "Spark cannot run the query source" in str(raised.value)
    assert "no_such_images" in str(raised.value)


@pytest.mark.slow
def test_sparks_image_data_source_column_is_an_image_column(
    spark: Any, tiny: str, foods: FoodsDataset
) -> None:
    from pyspark.sql import functions as F

    structs = (
        spark.read.format("image")
        .load(str(foods.images_dir))
        .select(
            F.regexp_extract("image.origin", r"([0-9]+)\.jpg$", 1).cast("int").alias("id"),
            "image",
        )
    )
    bytes_ = (
        spark.read.format("binaryFile")
        .load(str(foods.images_dir))
        .select(F.regexp_extract("path", r"([0-9]+)\.jpg$", 1).cast("int").alias("id"), "content")
    )

    def run(images: Any) -> Any:
        sql = (
            f"TRANSFER FEATURES OF pictures AS i FROM CNN {tiny} LAYERS (fc2)"
            f" JOIN '{foods.table_path}' AS f ON i.id = f.id FEATURES ({FEATURES})"
            " TRAIN LOGREG (max_iter = 5) LABEL healthy WITH (cache = false)"
        )
        result = vista_sql.execute(sql, spark=spark, tables={"pictures": images}, progress=False)
        return _stack(_by_id(result.features("fc2")))

    # Spark decodes the JPEG itself (to BGR pixels); the same pixels give the same features.
    np.testing.assert_allclose(run(structs), run(bytes_), rtol=1e-5, atol=1e-6)
