"""Linear models: logistic regression and the linear support vector machine.

Both fit one coefficient vector per class set with L-BFGS (LinearSVC with OWLQN) over the dense
standardized blocks they persist; an iteration costs about four operations per row and value
(dot product and gradient) for every coefficient set.
"""

from __future__ import annotations

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
from vista_sql.units import DOUBLE_BYTES

if TYPE_CHECKING:
    from vista_sql.cost_model.constants import CostConstants


def optimizer_iterations(param: ParamLookup, consts: CostConstants) -> float:
    """``max_iter`` iterations (MLlib's default 100); convergence earlier is not modelled."""
    return param("max_iter", consts.logreg_max_iter_default)


def linear_passes(consts: CostConstants) -> float:
    return consts.linear_input_passes


LOGREG = DownstreamModel(
    name="logreg",
    estimator=mllib("LogisticRegression"),
    params={
        "max_iter": int_spec("maxIter", 0),
        "reg_param": float_spec("regParam", 0),
        "elastic_net_param": float_spec("elasticNetParam", 0, 1),
        "tol": float_spec("tol", 0),
        "fit_intercept": bool_spec("fitIntercept"),
        "standardization": bool_spec("standardization"),
        "threshold": float_spec("threshold", 0, 1),
        "family": choice_spec("family", "auto", "binomial", "multinomial"),
        "aggregation_depth": int_spec("aggregationDepth", 2),
        "max_block_size_in_mb": float_spec("maxBlockSizeInMB", 0),
    },
    iterations=optimizer_iterations,
    input_passes=linear_passes,
    iteration_flops_per_value=4,
    training_value_bytes=DOUBLE_BYTES,
)

LINEAR_SVC = DownstreamModel(
    name="linear_svc",
    estimator=mllib("LinearSVC"),
    params={
        "max_iter": int_spec("maxIter", 0),
        "reg_param": float_spec("regParam", 0),
        "tol": float_spec("tol", 0),
        "fit_intercept": bool_spec("fitIntercept"),
        "standardization": bool_spec("standardization"),
        "threshold": float_spec("threshold"),
        "aggregation_depth": int_spec("aggregationDepth", 2),
        "max_block_size_in_mb": float_spec("maxBlockSizeInMB", 0),
    },
    iterations=optimizer_iterations,
    input_passes=linear_passes,
    iteration_flops_per_value=4,
    training_value_bytes=DOUBLE_BYTES,
)
