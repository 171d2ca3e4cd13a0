"""The multilayer perceptron.

``layers`` are the *hidden* layer sizes (vista_sql adds the input size, which depends on the
layer's features, and the number of classes): an integer for one hidden layer, or a string of
comma-separated sizes, ``'64,32'``; a grid of them is ``layers = ('64', '64,32')``. The checked
value is a tuple of ints. Its cost is modelled as a linear model's with six operations per row,
value and class set an iteration (forward and backward pass through the first layer).
"""

from __future__ import annotations

from typing import Any

from vista_sql.logical.models.entry import (
    DownstreamModel,
    choice_spec,
    float_spec,
    int_spec,
    mllib,
)
from vista_sql.logical.models.linear import linear_passes, optimizer_iterations
from vista_sql.logical.plan import Value
from vista_sql.logical.values import ValueSpec
from vista_sql.units import DOUBLE_BYTES


def with_input_and_output(name: str, value: Value, n_features: int, n_classes: int) -> Any:
    """MLP hidden sizes gain the input (features) and output (classes) layers."""
    if name == "layers":
        hidden = value if isinstance(value, tuple) else (value,)
        return [n_features, *(int(x) for x in hidden), n_classes]
    return value


MLP = DownstreamModel(
    name="mlp",
    estimator=mllib("MultilayerPerceptronClassifier"),
    params={
        "layers": ValueSpec("sizes", "layers"),
        "max_iter": int_spec("maxIter", 0),
        "tol": float_spec("tol", 0),
        "seed": int_spec("seed"),
        "block_size": int_spec("blockSize", 1),
        "step_size": float_spec("stepSize", 0, None, False),
        "solver": choice_spec("solver", "l-bfgs", "gd"),
    },
    iterations=optimizer_iterations,
    input_passes=linear_passes,
    iteration_flops_per_value=6,
    training_value_bytes=DOUBLE_BYTES,
    spark_value=with_input_and_output,
)
