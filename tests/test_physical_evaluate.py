"""Validation metrics: the O(n log n) forms equal the exact pairwise definitions, and the Spark
form keeps the driver's memory bounded whatever the number of rows."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vista_sql.physical import evaluate
from vista_sql.physical.evaluate import metrics, scored_metrics, spark_metrics


def pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The definition: the share of (positive, negative) pairs ranked right, ties counted half."""
    positive, negative = scores[labels == 1.0], scores[labels == 0.0]
    if not len(positive) or not len(negative):
        return float("nan")
    wins = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return float((wins + 0.5 * ties) / (len(positive) * len(negative)))


rows = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n),
        # few distinct scores, so ties are common
        st.lists(st.integers(-3, 3).map(lambda v: v / 4), min_size=n, max_size=n),
    )
)


@settings(max_examples=200, deadline=None)
@given(rows)
def test_rank_auc_equals_the_pairwise_definition(data: tuple[list, list, list]) -> None:
    labels, predictions, scores = (np.array(column) for column in data)
    result = metrics(labels, predictions, scores, n_classes=2)
    expected = pairwise_auc(labels, scores)
    if np.isnan(expected):
        assert np.isnan(result["auc"])
    else:
        assert result["auc"] == expected
    assert result["accuracy"] == np.mean(labels == predictions)


def _synthetic(spark: Any, n: int) -> Any:
    """n validation rows made in Spark: labels, predictions and tied scores from hashes."""
    from pyspark.sql import functions as F

    h = F.xxhash64(F.col("id"))
    return spark.range(n).select(
        (F.pmod(h, F.lit(2))).cast("double").alias("label"),
        (F.pmod(F.xxhash64(F.col("id"), F.lit(1)), F.lit(2))).cast("double").alias("prediction"),
        # a score correlated with the label, rounded so that many rows tie
        F.round(F.pmod(h, F.lit(97)) / 97 + F.pmod(h, F.lit(2)) * 0.3, 2).alias("score"),
    )


def test_spark_metrics_equal_the_numpy_ones(spark: Any) -> None:
    frame = _synthetic(spark, 3000).cache()
    local = frame.toPandas()
    arrays = [local[c].to_numpy() for c in ("label", "prediction", "score")]
    expected = metrics(*arrays, n_classes=2)
    assert expected["auc"] == pairwise_auc(arrays[0], arrays[2])
    assert spark_metrics(frame, "label", "prediction", "score", 2) == expected
    multi = frame.select((_three_classes(frame)).alias("label"), "prediction", "score")
    local_multi = multi.toPandas()
    got = spark_metrics(multi, "label", "prediction", "score", 3)
    want = metrics(
        local_multi["label"].to_numpy(), local_multi["prediction"].to_numpy(), arrays[2], 3
    )
    assert got == want and "auc" not in got
    frame.unpersist()


def test_scored_metrics_counts_small_sets_on_the_driver_and_large_ones_in_spark(
    spark: Any, monkeypatch: Any
) -> None:
    """Both ways give the same numbers; over ``DRIVER_ROWS`` rows none come to the driver."""
    frame = _synthetic(spark, 3000).cache()
    multi = frame.select((_three_classes(frame)).alias("label"), "prediction", "score")
    for scored, classes in ((frame, 2), (multi, 3)):
        on_driver = scored_metrics(scored, "label", "prediction", "score", classes, 3000)
        assert on_driver == spark_metrics(scored, "label", "prediction", "score", classes)
    brought: list[int] = []
    monkeypatch.setattr(evaluate, "DRIVER_ROWS", 2999)
    monkeypatch.setattr(type(frame), "toArrow", lambda self: brought.append(1))
    in_spark = scored_metrics(frame, "label", "prediction", "score", 2, 3000)
    assert not brought and in_spark == spark_metrics(frame, "label", "prediction", "score", 2)
    frame.unpersist()


def _three_classes(frame: Any) -> Any:
    from pyspark.sql import functions as F

    return F.pmod(F.round(frame["score"] * 100), F.lit(3)).cast("double")


def test_a_million_rows_keep_the_driver_small(spark: Any) -> None:
    frame = _synthetic(spark, 1_000_000).cache()
    frame.count()
    tracemalloc.start()
    try:
        got = spark_metrics(frame, "label", "prediction", "score", 2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Collecting the rows would take hundreds of MiB of Python objects; the confusion counts and
    # one sum take well under a MiB (Py4J's own buffers included).
    assert peak < 4 * 2**20, peak
    local = frame.toPandas()
    want = metrics(*(local[c].to_numpy() for c in ("label", "prediction", "score")), n_classes=2)
    assert got == want
    assert 0.5 < got["auc"] < 1.0
    frame.unpersist()
