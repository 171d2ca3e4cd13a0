"""Tree models: a decision tree, a random forest, gradient-boosted trees.

MLlib bins every feature into ``max_bins`` buckets (TreePoint: 4-byte integers, persisted) and
grows trees level by level; each level aggregates per-bin statistics (about 20 operations per row
and considered value) into histograms bounded by ``maxMemoryInMB``. A forest considers about the
square root of the features at each node (``featureSubsetStrategy`` auto).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from vista_sql.logical.models.entry import (
    DownstreamModel,
    ParamLookup,
    bool_spec,
    choice_spec,
    float_spec,
    int_spec,
    mllib,
)
from vista_sql.logical.values import ValueSpec
from vista_sql.units import MiB

if TYPE_CHECKING:
    from vista_sql.cost_model.constants import CostConstants

TREE_AGGREGATE_BYTES = 256 * MiB
"""DecisionTree maxMemoryInMB default (256): histogram aggregates per task per iteration."""
BINNED_VALUE_BYTES = 4
"""TreePoint.binnedFeatures: one Int per feature value."""
LEVEL_FLOPS_PER_VALUE = 20
"""Finding a row's bin and adding its label statistics, per considered value and level."""

_SUBSET = ValueSpec(
    "subset", "featureSubsetStrategy", choices=("auto", "all", "onethird", "sqrt", "log2")
)

_TREE: dict[str, ValueSpec] = {
    "max_depth": int_spec("maxDepth", 0, 30),
    "max_bins": int_spec("maxBins", 2),
    "min_instances_per_node": int_spec("minInstancesPerNode", 1),
    "min_weight_fraction_per_node": float_spec("minWeightFractionPerNode", 0, 0.5, True, False),
    "min_info_gain": float_spec("minInfoGain", 0),
    "max_memory_in_mb": int_spec("maxMemoryInMB", 0),
    "cache_node_ids": bool_spec("cacheNodeIds"),
    "checkpoint_interval": int_spec("checkpointInterval", -1),
    "seed": int_spec("seed"),
}


def tree_passes(consts: CostConstants) -> float:
    return consts.tree_input_passes


def _levels(param: ParamLookup, consts: CostConstants) -> float:
    return param("max_depth", consts.tree_max_depth_default)


def one_tree(param: ParamLookup, consts: CostConstants) -> float:
    """A tree's levels (``max_depth``, MLlib's default 5)."""
    return _levels(param, consts) * 1


def forest(param: ParamLookup, consts: CostConstants) -> float:
    """Levels x ``num_trees`` (default 20): the trees grow together, a level at a time."""
    return _levels(param, consts) * param("num_trees", consts.forest_trees_default)


def boosted(param: ParamLookup, consts: CostConstants) -> float:
    """Levels x ``max_iter`` trees (taken as 20 when not given), grown one after another."""
    return _levels(param, consts) * param("max_iter", consts.forest_trees_default)


def _tree_model(
    name: str,
    estimator: str,
    params: dict[str, ValueSpec],
    iterations: Callable[[ParamLookup, CostConstants], float],
    considered_values: Callable[[float], float] | None = None,
) -> DownstreamModel:
    """A tree model: what the three share of their cost terms, with their own parameters."""
    return DownstreamModel(
        name=name,
        estimator=mllib(estimator),
        params={**_TREE, **params},
        iterations=iterations,
        input_passes=tree_passes,
        iteration_flops_per_value=LEVEL_FLOPS_PER_VALUE,
        training_value_bytes=BINNED_VALUE_BYTES,
        iteration_scales_with_sets=False,
        considered_values=considered_values,
        fixed_aggregate_bytes=TREE_AGGREGATE_BYTES,
    )


DECISION_TREE = _tree_model(
    "decision_tree",
    "DecisionTreeClassifier",
    {
        "impurity": choice_spec("impurity", "gini", "entropy"),
        "prune_tree": bool_spec("pruneTree"),
    },
    one_tree,
)

RANDOM_FOREST = _tree_model(
    "random_forest",
    "RandomForestClassifier",
    {
        "impurity": choice_spec("impurity", "gini", "entropy"),
        "prune_tree": bool_spec("pruneTree"),
        "num_trees": int_spec("numTrees", 1),
        "feature_subset_strategy": _SUBSET,
        "subsampling_rate": float_spec("subsamplingRate", 0, 1, False, True),
        "bootstrap": bool_spec("bootstrap"),
    },
    forest,
    considered_values=math.sqrt,
)

GBT = _tree_model(
    "gbt",
    "GBTClassifier",
    {
        "impurity": choice_spec("impurity", "variance"),
        "loss_type": choice_spec("lossType", "logistic"),
        "max_iter": int_spec("maxIter", 0),
        "step_size": float_spec("stepSize", 0, 1, False, True),
        "feature_subset_strategy": _SUBSET,
        "subsampling_rate": float_spec("subsamplingRate", 0, 1, False, True),
        "validation_tol": float_spec("validationTol", 0),
    },
    boosted,
)
