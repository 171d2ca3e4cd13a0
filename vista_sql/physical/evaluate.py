"""Validation metrics: accuracy, F1 and the exact area under the ROC curve, on bounded memory.

Both forms compute the same numbers from the same two summaries, so they agree exactly:

- the confusion counts (label, prediction) -> rows, at most classes x classes entries, for
  accuracy and F1;
- for binary labels, the positives and negatives at each distinct score, in score order: the AUC
  is the Mann-Whitney statistic, ``sum over scores of pos * (2 * negatives below + neg)`` over
  ``2 * P * N`` (a tie counts half), an O(n log n) sort instead of a P x N comparison matrix.

``metrics`` takes NumPy arrays; ``spark_metrics`` takes the scored validation DataFrame and brings
only the confusion counts and one sum to the driver: the sort and the running count of negatives
run in Spark, so a million validation rows cost the driver a few rows. ``scored_metrics`` picks:
up to ``DRIVER_ROWS`` rows are brought to the driver in one job (three numbers a row) and counted
with NumPy, more are counted in Spark (four jobs, whatever the rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

Confusion = dict[tuple[float, float], int]
"""(label, prediction) -> rows."""


def from_confusion(confusion: Confusion, n_classes: int) -> dict[str, float]:
    """Accuracy and F1 (of class 1 for binary labels, else weighted by class as MLlib's "f1")."""
    total = sum(confusion.values())
    correct = sum(n for (label, predicted), n in confusion.items() if label == predicted)

    def f1(c: float) -> float:
        true_positive = confusion.get((c, c), 0)
        predicted = sum(n for (_, p), n in confusion.items() if p == c)
        actual = sum(n for (label, _), n in confusion.items() if label == c)
        return 0.0 if true_positive == 0 else 2 * true_positive / (predicted + actual)

    result = {"accuracy": correct / total}
    if n_classes == 2:
        result["f1"] = f1(1.0)
    else:
        support: dict[float, int] = {}
        for (label, _), n in confusion.items():
            support[label] = support.get(label, 0) + n
        result["f1"] = sum(n * f1(c) for c, n in sorted(support.items())) / total
    return result


def auc_from_counts(positives: np.ndarray, negatives: np.ndarray) -> float:
    """The exact AUC from positives and negatives per distinct score, in ascending score order."""
    positives = np.asarray(positives, dtype=np.int64)
    negatives = np.asarray(negatives, dtype=np.int64)
    n_positive, n_negative = int(positives.sum()), int(negatives.sum())
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    below = np.cumsum(negatives) - negatives
    twice_wins = int(np.sum(positives * (2 * below + negatives)))
    return twice_wins / (2 * n_positive * n_negative)


def metrics(
    labels: np.ndarray, predictions: np.ndarray, scores: np.ndarray, n_classes: int
) -> dict[str, float]:
    """Accuracy, F1 and, for binary labels, the exact AUC of ``scores`` (ties counted half)."""
    pairs, counts = np.unique(np.stack([labels, predictions], axis=1), axis=0, return_counts=True)
    confusion = {
        (float(label), float(predicted)): int(n)
        for (label, predicted), n in zip(pairs, counts, strict=True)
    }
    result = from_confusion(confusion, n_classes)
    if n_classes == 2:
        values, inverse = np.unique(scores, return_inverse=True)
        positives = np.bincount(inverse, weights=labels == 1.0, minlength=len(values))
        negatives = np.bincount(inverse, weights=labels == 0.0, minlength=len(values))
        result["auc"] = auc_from_counts(positives, negatives)
    return result


def spark_metrics(
    scored: DataFrame, label: str, prediction: str, score: str, n_classes: int
) -> dict[str, float]:
    """``metrics`` of a scored DataFrame, computed in Spark: the driver receives at most
    ``n_classes ** 2`` confusion rows and one sum, whatever the number of rows."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    confusion = {
        (float(row[0]), float(row[1])): int(row[2])
        for row in scored.groupBy(label, prediction).count().collect()
    }
    result = from_confusion(confusion, n_classes)
    if n_classes != 2:
        return result
    n_positive = sum(n for (lab, _), n in confusion.items() if lab == 1.0)
    n_negative = sum(n for (lab, _), n in confusion.items() if lab == 0.0)
    if n_positive == 0 or n_negative == 0:
        result["auc"] = float("nan")
        return result
    per_score = scored.groupBy(F.col(score).alias("s")).agg(
        F.sum((F.col(label) == 1.0).cast("long")).alias("pos"),
        F.sum((F.col(label) == 0.0).cast("long")).alias("neg"),
    )
    # One ordered pass over the distinct scores (an executor task, which spills; the driver sees
    # only the total): negatives strictly below each score.
    running = Window.orderBy("s").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    ranked = per_score.withColumn("below", F.sum("neg").over(running) - F.col("neg"))
    twice_wins = ranked.select(F.sum(F.col("pos") * (2 * F.col("below") + F.col("neg")))).first()
    assert twice_wins is not None
    result["auc"] = float(int(twice_wins[0]) / (2 * n_positive * n_negative))
    return result


DRIVER_ROWS = 200_000
"""Validation rows ``scored_metrics`` counts on the driver (three float64 columns: 4.8 MB)."""


def scored_metrics(
    scored: DataFrame, label: str, prediction: str, score: str, n_classes: int, rows: int
) -> dict[str, float]:
    """``metrics`` of a scored DataFrame of ``rows`` rows: on the driver up to ``DRIVER_ROWS``
    (one job; a search fits many models on small samples, and four jobs per fit are most of a
    small fit's time), else in Spark (``spark_metrics``)."""
    if rows > DRIVER_ROWS:
        return spark_metrics(scored, label, prediction, score, n_classes)
    table = scored.select(label, prediction, score).toArrow()
    labels, predictions = (
        table.column(c).to_numpy().astype(np.float64) for c in (label, prediction)
    )
    return metrics(labels, predictions, table.column(score).to_numpy(), n_classes)
