"""vista_sql.ml.CnnFeaturizer: a Spark ML Transformer on vista_sql's inference code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_cnn import TINY_FEATURES

from vista_sql.datasets.foods import FoodsDataset, make_foods
from vista_sql.errors import SemanticError

pytestmark = [pytest.mark.spark, pytest.mark.tf]

ROWS = 24


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return make_foods(tmp_path_factory.mktemp("featurizer") / "foods", rows=ROWS, image_size=32)


@pytest.fixture(scope="module")
def frame(spark: Any, foods: FoodsDataset) -> Any:
    """The table's rows with each image's bytes in ``content``."""
    from pyspark.sql import functions as F

    images = spark.read.format("binaryFile").load(str(foods.images_dir))
    images = images.select(
        F.regexp_extract("path", r"([0-9]+)\.jpg$", 1).cast("int").alias("id"), "content"
    )
    table = spark.read.parquet(str(foods.table_path)).select("id", "energy", "fat", "healthy")
    return table.join(images, "id").withColumn("healthy", F.col("healthy").cast("double"))


def _vectors(rows: list[Any], column: str) -> np.ndarray:
    return np.stack([row[column].toArray() for row in rows])


@pytest.mark.slow
def test_featurizer_gives_the_cnns_outputs_for_several_layers_in_one_pass(
    tiny: str, frame: Any
) -> None:
    from vista_sql.logical.plan import LayerOut, WeightsSpec
    from vista_sql.ml import CnnFeaturizer
    from vista_sql.udfs.inference import InferenceSpec, infer_local

    featurizer = CnnFeaturizer(
        cnn=tiny, layers=["conv2", "fc2"], inputCol="content", outputCols=["c2", "f2"]
    )
    out = featurizer.transform(frame)
    assert out.columns == [*frame.columns, "c2", "f2"]
    # One inference pass: a single Python map over the input computes both layers.
    assert out._jdf.queryExecution().executedPlan().toString().count("MapInArrow") == 1
    rows = sorted(out.collect(), key=lambda row: row["id"])
    spec = InferenceSpec(
        tiny,
        WeightsSpec("imagenet"),
        None,
        (LayerOut("conv2", "features"), LayerOut("fc2", "features")),
    )
    expected = infer_local([bytes(row["content"]) for row in rows], spec)
    np.testing.assert_allclose(_vectors(rows, "f2"), expected["f_fc2"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_vectors(rows, "c2"), expected["f_conv2"], rtol=1e-6, atol=1e-7)
    assert _vectors(rows, "c2").shape == (ROWS, TINY_FEATURES["conv2"])


@pytest.mark.slow
def test_pipeline_fits_saves_loads_and_predicts_the_same(
    tiny: str, frame: Any, tmp_path: Path
) -> None:
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    from vista_sql.ml import CnnFeaturizer

    pipeline = Pipeline(
        stages=[
            CnnFeaturizer(
                cnn=tiny,
                layers=["fc1", "conv2"],
                weights="imagenet",
                inputCol="content",
                outputCols=["fc1_features", "conv2_features"],
                batchSize=8,
            ),
            VectorAssembler(
                inputCols=["energy", "fat", "fc1_features", "conv2_features"], outputCol="x"
            ),
            LogisticRegression(featuresCol="x", labelCol="healthy", maxIter=10),
        ]
    )
    model = pipeline.fit(frame)
    predicted = model.transform(frame).select("id", "probability", "prediction")
    before = sorted(predicted.collect())
    model.write().overwrite().save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    featurizer = loaded.stages[0]
    assert isinstance(featurizer, CnnFeaturizer)
    assert featurizer.getOrDefault(featurizer.layers) == ["fc1", "conv2"]
    assert featurizer.getOrDefault(featurizer.batchSize) == 8
    after = sorted(loaded.transform(frame).select("id", "probability", "prediction").collect())
    assert [row["id"] for row in after] == [row["id"] for row in before]
    assert [row["prediction"] for row in after] == [row["prediction"] for row in before]
    np.testing.assert_array_equal(_vectors(after, "probability"), _vectors(before, "probability"))
    assert len(loaded.stages[2].coefficients) == 2 + TINY_FEATURES["fc1"] + TINY_FEATURES["conv2"]


def test_featurizer_names_what_is_wrong(spark: Any, tiny: str, frame: Any) -> None:
    from vista_sql.ml import CnnFeaturizer

    with pytest.raises(SemanticError, match="unknown CNN vgg61"):
        CnnFeaturizer(cnn="vgg61", layers=["fc7"], inputCol="content").transform(frame)
    with pytest.raises(SemanticError, match="has no layer fc9"):
        CnnFeaturizer(cnn=tiny, layers=["fc9"], inputCol="content").transform(frame)
    with pytest.raises(SemanticError, match="no input column pixels"):
        CnnFeaturizer(cnn=tiny, layers=["fc2"], inputCol="pixels").transform(frame)
    with pytest.raises(SemanticError, match="the input column energy is double"):
        CnnFeaturizer(cnn=tiny, layers=["fc2"], inputCol="energy").transform(frame)
    with pytest.raises(SemanticError, match="2 outputCols for 1 layers"):
        CnnFeaturizer(
            cnn=tiny, layers=["fc2"], inputCol="content", outputCols=["a", "b"]
        ).transform(frame)
