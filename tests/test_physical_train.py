"""Downstream training with MLlib: every model of SPEC.md, grids, the split, and the metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vista_sql.errors import DataError
from vista_sql.logical.plan import ModelSpec
from vista_sql.physical.evaluate import metrics
from vista_sql.physical.sources import KEY
from vista_sql.physical.train import (
    FEATURES,
    LABEL,
    sample_bucket,
    split_bucket,
    split_counts,
    train,
)

pytestmark = [pytest.mark.spark]

ROWS = 300


@pytest.fixture(scope="module")
def table(spark: Any) -> Any:
    """A separable-with-noise binary problem: label from two of five features."""
    import pandas as pd
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=ROWS) > 0).astype(float)
    frame = pd.DataFrame({KEY: np.arange(ROWS), LABEL: y, "values": list(x)})
    return (
        spark.createDataFrame(frame)
        .select(KEY, LABEL, array_to_vector(F.col("values")).alias(FEATURES))
        .cache()
    )


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("logreg", (("max_iter", 10),)),
        ModelSpec("linear_svc", (("max_iter", 10),)),
        ModelSpec("decision_tree", (("max_depth", 3),)),
        ModelSpec("random_forest", (("num_trees", 5),)),
        ModelSpec("gbt", (("max_iter", 5),)),
        ModelSpec("mlp", (("layers", (4,)), ("max_iter", 30))),
    ],
    ids=lambda spec: spec.name,
)
def test_every_model_learns_the_signal(table: Any, spec: ModelSpec) -> None:
    trained = train(table, spec, n_features=5, n_classes=2, validate=0.2, seed=2019)
    assert trained.train_rows + trained.validation_rows == ROWS
    assert 0.1 * ROWS < trained.validation_rows < 0.3 * ROWS
    assert trained.metrics["accuracy"] > 0.75, trained.metrics
    assert trained.metrics["auc"] > 0.8, trained.metrics
    assert 0.0 <= trained.metrics["f1"] <= 1.0


def test_metrics_agree_with_mllib_evaluators(table: Any) -> None:
    """Our exact metrics equal MLlib's on a logistic regression (AUC within its binning)."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import (
        BinaryClassificationEvaluator,
        MulticlassClassificationEvaluator,
    )

    trained = train(table, ModelSpec("logreg"), n_features=5, n_classes=2, validate=0.3, seed=7)
    held_out = table.filter(split_bucket(7) < 0.3)
    fitted = LogisticRegression(featuresCol=FEATURES, labelCol=LABEL).fit(
        table.filter(split_bucket(7) >= 0.3)
    )
    predictions = fitted.transform(held_out)
    accuracy = MulticlassClassificationEvaluator(labelCol=LABEL, metricName="accuracy")
    f1 = MulticlassClassificationEvaluator(
        labelCol=LABEL, metricName="fMeasureByLabel", metricLabel=1.0
    )
    auc = BinaryClassificationEvaluator(labelCol=LABEL, metricName="areaUnderROC")
    assert trained.metrics["accuracy"] == pytest.approx(accuracy.evaluate(predictions))
    assert trained.metrics["f1"] == pytest.approx(f1.evaluate(predictions))
    assert trained.metrics["auc"] == pytest.approx(auc.evaluate(predictions), abs=1e-3)


def test_grid_search_reports_the_best_parameters_by_their_statement_names(table: Any) -> None:
    spec = ModelSpec("logreg", (("max_iter", 10),), grid=(("reg_param", (0.001, 10.0)),), folds=3)
    trained = train(table, spec, n_features=5, n_classes=2, validate=0.2, seed=1)
    # A huge penalty flattens the model to the prior: the small one must win.
    assert trained.best_params == {"max_iter": 10, "reg_param": 0.001}


def test_the_split_depends_on_key_and_seed_not_on_partitioning(table: Any) -> None:
    def held_out(frame: Any) -> set[int]:
        return {r[0] for r in frame.filter(split_bucket(5) < 0.25).select(KEY).collect()}

    assert held_out(table) == held_out(table.repartition(7)) == held_out(table.coalesce(1))
    assert held_out(table) != {
        r[0] for r in table.filter(split_bucket(6) < 0.25).select(KEY).collect()
    }


def test_a_split_with_nothing_to_validate_is_refused(spark: Any, table: Any) -> None:
    with pytest.raises(DataError, match="no rows to validate"):
        train(table.limit(2), ModelSpec("logreg"), n_features=5, n_classes=2, validate=0.01, seed=3)


def test_split_counts_count_each_side_and_each_sample_in_one_pass(table: Any) -> None:
    counts = split_counts(table, 0.3, 7, (0.25, 0.5))
    training = table.filter(split_bucket(7) >= 0.3)
    assert counts.validation_rows == table.filter(split_bucket(7) < 0.3).count()
    assert counts.train_rows == training.count()
    for fraction in (0.25, 0.5):
        assert counts.samples[fraction] == training.filter(sample_bucket(7) < fraction).count()
    assert 0 < counts.samples[0.25] < counts.samples[0.5] < counts.train_rows
    # a fit given the counts reports the sample's size without counting again
    spec = ModelSpec("logreg", (("max_iter", 5),))
    fit = train(
        table, spec, n_features=5, n_classes=2, validate=0.3, seed=7, sample=0.25, counts=counts
    )
    assert fit.train_rows == counts.samples[0.25]
    assert fit.validation_rows == counts.validation_rows


def test_metrics_by_hand() -> None:
    labels = np.array([1.0, 1.0, 0.0, 0.0, 1.0])
    predictions = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    scores = np.array([0.9, 0.2, 0.2, 0.6, 0.7])
    result = metrics(labels, predictions, scores, n_classes=2)
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["f1"] == pytest.approx(2 * 2 / (3 + 3))
    # positives (0.9, 0.2, 0.7) vs negatives (0.2, 0.6): wins 4, one tie -> 4.5 / 6
    assert result["auc"] == pytest.approx(4.5 / 6)
    multi = metrics(np.array([0.0, 1.0, 2.0, 2.0]), np.array([0.0, 2.0, 2.0, 2.0]), scores[:4], 3)
    assert multi["accuracy"] == pytest.approx(0.75)
    # weighted F1: class 0 -> 1, class 1 -> 0, class 2 -> 0.8; weights 1, 1, 2 of 4
    assert multi["f1"] == pytest.approx((1.0 + 0.0 + 2 * 0.8) / 4)
    assert "auc" not in multi
