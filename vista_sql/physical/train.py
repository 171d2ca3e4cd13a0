"""Downstream training per layer with Spark MLlib, and its metrics on the held-out split.

The split (and the folds of a grid search) come from a hash of the key and the seed, not from
``randomSplit``: a row lands on the same side whatever the plan, the partitioning or the row order,
so every plan alternative trains on the same rows and reports the same metrics.
"""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vista_sql.errors import DataError
from vista_sql.logical import models
from vista_sql.logical.plan import ModelSpec, Value
from vista_sql.physical.evaluate import scored_metrics
from vista_sql.physical.sources import KEY

if TYPE_CHECKING:
    from pyspark.ml import Model
    from pyspark.sql import Column, DataFrame

LABEL = "_vista_label"
FEATURES = "_vista_features"
FOLD = "_vista_fold"
HASH_BUCKETS = 1_000_000
SAMPLE_PARTITION_ROWS = 10_000
"""Training rows per partition of a search round's sample (``train(sample=...)``)."""


@dataclass(frozen=True)
class Trained:
    """One layer's fitted model and its metrics on the validation split."""

    model: Model
    metrics: dict[str, float]
    train_seconds: float
    evaluate_seconds: float
    train_rows: int
    validation_rows: int
    best_params: dict[str, Value]


def split_bucket(seed: int) -> Column:
    """A per-row number in [0, 1) from the key and the seed: the validation split's coin."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(F.col(KEY), F.lit(seed)), F.lit(HASH_BUCKETS)) / HASH_BUCKETS


def sample_bucket(seed: int) -> Column:
    """Another per-row number in [0, 1), independent of the split's: a successive-halving
    round trains on the training rows below its fraction, so each round's sample holds the
    previous one's (``vista_sql.logical.search``)."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(F.col(KEY), F.lit(seed + 2)), F.lit(HASH_BUCKETS)) / HASH_BUCKETS


def estimator(spec: ModelSpec, n_features: int, n_classes: int, seed: int) -> Any:
    """The MLlib estimator of ``spec`` (its registry entry's) with its fixed parameters set."""
    entry = models.model(spec.name)
    params: dict[str, Any] = {
        entry.spark_param_name(k): entry.spark_value(k, v, n_features, n_classes)
        for k, v in spec.params
    }
    module, _, name = entry.estimator.rpartition(".")
    estimator_class = getattr(importlib.import_module(module), name)
    instance = estimator_class(featuresCol=FEATURES, labelCol=LABEL, **entry.estimator_args)
    if instance.hasParam("seed"):
        params.setdefault("seed", seed)
    return instance.setParams(**params) if params else instance


def _search_evaluator(n_classes: int) -> Any:
    """What a grid search's cross-validation maximises: AUC for binary labels, else weighted F1."""
    from pyspark.ml.evaluation import (
        BinaryClassificationEvaluator,
        MulticlassClassificationEvaluator,
    )

    if n_classes == 2:
        return BinaryClassificationEvaluator(
            labelCol=LABEL, rawPredictionCol="rawPrediction", metricName="areaUnderROC"
        )
    return MulticlassClassificationEvaluator(labelCol=LABEL, metricName="f1")


def train(
    table: DataFrame,
    spec: ModelSpec,
    *,
    n_features: int,
    n_classes: int,
    validate: float,
    seed: int,
    sample: float = 1.0,
    counts: SplitCounts | None = None,
) -> Trained:
    """Fit ``spec`` on the training rows of ``table`` (KEY, LABEL, FEATURES); score the rest.

    ``sample`` < 1 fits on that share of the training rows (``sample_bucket``), scored on every
    held-out row as a full fit is; ``train_rows`` is then the sample's size. ``counts``: the
    table's ``split_counts`` (with ``sample`` among its fractions) where the caller has them,
    so that many fits on one table count its rows once."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
    from pyspark.sql import functions as F

    bucket = split_bucket(seed)
    training = table.filter(bucket >= validate)
    validation = table.filter(bucket < validate)
    if counts is None or (sample < 1.0 and sample not in counts.samples):
        counts = split_counts(table, validate, seed, (sample,) if sample < 1.0 else ())
    train_rows, validation_rows = counts.train_rows, counts.validation_rows
    if sample < 1.0:
        training = training.filter(sample_bucket(seed) < sample)
        train_rows = counts.samples[sample]
        # A sample keeps the table's partitions, most of them nearly empty: every L-BFGS
        # iteration is a job of that many tasks. Measured (8 fits on 200 rows, 4 at once, 2
        # cores): 18.4 s in 4 partitions, 10.9 s in one.
        training = training.coalesce(max(1, math.ceil(train_rows / SAMPLE_PARTITION_ROWS)))
    entry = models.model(spec.name)
    base = estimator(spec, n_features, n_classes, seed)
    started = time.perf_counter()
    best_params: dict[str, Value] = dict(spec.params)
    if spec.grid:
        grid = ParamGridBuilder()
        for name, values in spec.grid:
            param = base.getParam(entry.spark_param_name(name))
            grid = grid.addGrid(
                param, [entry.spark_value(name, v, n_features, n_classes) for v in values]
            )
        folds = F.pmod(F.xxhash64(F.col(KEY), F.lit(seed + 1)), F.lit(spec.folds))
        search = CrossValidator(
            estimator=base,
            estimatorParamMaps=grid.build(),
            evaluator=_search_evaluator(n_classes),
            numFolds=spec.folds,
            foldCol=FOLD,
            seed=seed,
        )
        fitted = search.fit(training.withColumn(FOLD, folds.cast("int")))
        model = fitted.bestModel
        best = fitted.getEstimatorParamMaps()[_argbest(fitted.avgMetrics)]
        chosen = {param.name: value for param, value in best.items()}
        best_params.update({name: chosen[entry.spark_param_name(name)] for name, _ in spec.grid})
    else:
        model = base.fit(training)
    seconds = time.perf_counter() - started
    transformed = model.transform(validation)
    # The ranking score for AUC: P(class 1) where the model gives probabilities (a tree's raw
    # prediction is leaf counts, whose difference does not rank like the probability), else the
    # margin (LinearSVC).
    score = "probability" if "probability" in transformed.columns else "rawPrediction"
    scores = vector_to_array(F.col(score))
    scored = transformed.select(
        LABEL, "prediction", (F.element_at(scores, -1) - F.element_at(scores, 1)).alias("_margin")
    )
    return Trained(
        model=model,
        metrics=scored_metrics(scored, LABEL, "prediction", "_margin", n_classes, validation_rows),
        train_seconds=seconds,
        evaluate_seconds=time.perf_counter() - started - seconds,
        train_rows=train_rows,
        validation_rows=validation_rows,
        best_params=best_params,
    )


@dataclass(frozen=True)
class SplitCounts:
    """A table's rows on each side of the validation split, and in the training rows' samples."""

    train_rows: int
    validation_rows: int
    samples: dict[float, int]
    """sample fraction -> training rows below it (``sample_bucket``)"""


def split_counts(
    table: DataFrame, validate: float, seed: int, fractions: tuple[float, ...] = ()
) -> SplitCounts:
    """Rows on each side of the split and in each sample of the training rows (one job),
    refusing a split that leaves nothing to learn from or nothing to score."""
    from pyspark.sql import functions as F

    held_out = split_bucket(seed) < validate
    coin = sample_bucket(seed)
    in_sample = [
        F.sum((coin < fraction).cast("long")).alias(f"s{i}") for i, fraction in enumerate(fractions)
    ]
    rows = table.groupBy(held_out.alias("held_out"), LABEL).agg(F.count("*"), *in_sample).collect()
    counts = {(bool(row[0]), row[1]): row[2] for row in rows}
    train_rows = sum(n for (side, _), n in counts.items() if not side)
    validation_rows = sum(n for (side, _), n in counts.items() if side)
    train_classes = {label for (side, label), _ in counts.items() if not side}
    if validation_rows == 0 or len(train_classes) < 2:
        problem = "no rows to validate on" if validation_rows == 0 else "one class to train on"
        raise DataError(
            f"VALIDATE {validate} leaves {problem} ({train_rows} training rows, "
            f"{validation_rows} held out): use more rows or another fraction"
        )
    samples = {
        fraction: sum(int(row[3 + i]) for row in rows if not row[0])
        for i, fraction in enumerate(fractions)
    }
    return SplitCounts(train_rows, validation_rows, samples)


def _argbest(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))
