"""The downstream models TRAIN accepts, their MLlib parameters, and the values each may take.

Parameters are Spark MLlib's (``pyspark.ml.classification``, Spark 4), spelled in snake_case; the
ranges are the validators of MLlib's Scala ``Params`` (``ParamValidators``), so a bad value is
caught when the statement is checked rather than when Spark fits the model minutes later.
Parameters that name columns (``featuresCol``, ``labelCol``, ``weightCol``, ...) or take vectors
and matrices are left out: vista_sql sets the columns itself. ``spark_name`` is the MLlib name (not
always the camelCase of the snake_case one: ``max_memory_in_mb`` is ``maxMemoryInMB``).

MLP's ``layers`` are the *hidden* layer sizes (vista_sql adds the input size, which depends on the
layer's features, and the number of classes): an integer for one hidden layer, or a string of
comma-separated sizes, ``'64,32'``; a grid of them is ``layers = ('64', '64,32')``. The checked
value is a tuple of ints.
"""

from __future__ import annotations

from vista_sql.logical.values import ValueSpec


def _int(spark: str, low: float | None = None, high: float | None = None) -> ValueSpec:
    return ValueSpec("int", spark, low=low, high=high)


def _float(
    spark: str,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> ValueSpec:
    return ValueSpec("float", spark, low, high, low_inclusive, high_inclusive)


def _bool(spark: str) -> ValueSpec:
    return ValueSpec("bool", spark)


def _choice(spark: str, *choices: str) -> ValueSpec:
    return ValueSpec("choice", spark, choices=choices)


_SUBSET = ValueSpec(
    "subset", "featureSubsetStrategy", choices=("auto", "all", "onethird", "sqrt", "log2")
)

_TREE: dict[str, ValueSpec] = {
    "max_depth": _int("maxDepth", 0, 30),
    "max_bins": _int("maxBins", 2),
    "min_instances_per_node": _int("minInstancesPerNode", 1),
    "min_weight_fraction_per_node": _float("minWeightFractionPerNode", 0, 0.5, True, False),
    "min_info_gain": _float("minInfoGain", 0),
    "max_memory_in_mb": _int("maxMemoryInMB", 0),
    "cache_node_ids": _bool("cacheNodeIds"),
    "checkpoint_interval": _int("checkpointInterval", -1),
    "seed": _int("seed"),
}

MODELS: dict[str, dict[str, ValueSpec]] = {
    "logreg": {
        "max_iter": _int("maxIter", 0),
        "reg_param": _float("regParam", 0),
        "elastic_net_param": _float("elasticNetParam", 0, 1),
        "tol": _float("tol", 0),
        "fit_intercept": _bool("fitIntercept"),
        "standardization": _bool("standardization"),
        "threshold": _float("threshold", 0, 1),
        "family": _choice("family", "auto", "binomial", "multinomial"),
        "aggregation_depth": _int("aggregationDepth", 2),
        "max_block_size_in_mb": _float("maxBlockSizeInMB", 0),
    },
    "linear_svc": {
        "max_iter": _int("maxIter", 0),
        "reg_param": _float("regParam", 0),
        "tol": _float("tol", 0),
        "fit_intercept": _bool("fitIntercept"),
        "standardization": _bool("standardization"),
        "threshold": _float("threshold"),
        "aggregation_depth": _int("aggregationDepth", 2),
        "max_block_size_in_mb": _float("maxBlockSizeInMB", 0),
    },
    "decision_tree": {
        **_TREE,
        "impurity": _choice("impurity", "gini", "entropy"),
        "prune_tree": _bool("pruneTree"),
    },
    "random_forest": {
        **_TREE,
        "impurity": _choice("impurity", "gini", "entropy"),
        "prune_tree": _bool("pruneTree"),
        "num_trees": _int("numTrees", 1),
        "feature_subset_strategy": _SUBSET,
        "subsampling_rate": _float("subsamplingRate", 0, 1, False, True),
        "bootstrap": _bool("bootstrap"),
    },
    "gbt": {
        **_TREE,
        "impurity": _choice("impurity", "variance"),
        "loss_type": _choice("lossType", "logistic"),
        "max_iter": _int("maxIter", 0),
        "step_size": _float("stepSize", 0, 1, False, True),
        "feature_subset_strategy": _SUBSET,
        "subsampling_rate": _float("subsamplingRate", 0, 1, False, True),
        "validation_tol": _float("validationTol", 0),
    },
    "mlp": {
        "layers": ValueSpec("sizes", "layers"),
        "max_iter": _int("maxIter", 0),
        "tol": _float("tol", 0),
        "seed": _int("seed"),
        "block_size": _int("blockSize", 1),
        "step_size": _float("stepSize", 0, None, False),
        "solver": _choice("solver", "l-bfgs", "gd"),
    },
}
"""TRAIN model name (lower case) -> its parameters (snake_case) -> valid values."""

MODEL_NAMES = tuple(name.upper() for name in MODELS)
"""As written in statements: LOGREG, LINEAR_SVC, ..."""

FOLDS = ValueSpec("int", "numFolds", low=2)
"""``folds``: the number of cross-validation folds of a grid search (default 3)."""


def spark_param_name(model: str, param: str) -> str:
    """MLlib's name of a parameter: ``spark_param_name("gbt", "max_memory_in_mb")`` is
    ``maxMemoryInMB``."""
    return MODELS[model][param].spark_name
