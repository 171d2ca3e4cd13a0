"""What the registry knows of one downstream model (:class:`DownstreamModel`), and the helpers its
entries are written with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vista_sql.logical.plan import Value
from vista_sql.logical.values import ValueSpec

if TYPE_CHECKING:
    from vista_sql.cost_model.constants import CostConstants

ParamLookup = Callable[[str, float], float]
"""``param(name, default)``: a numeric parameter the statement fixed, else ``default``."""


def one_set_if_binary(classes: float) -> float:
    """Coefficient vectors a model fits: one for binary labels (the other class is its
    complement), one per class for more (multinomial)."""
    return 1 if classes <= 2 else classes


def same_value(name: str, value: Value, n_features: int, n_classes: int) -> Any:
    """A checked parameter value as MLlib takes it, for models that need no translation."""
    return value


def mllib(class_name: str) -> str:
    """The import path of ``pyspark.ml.classification.<class_name>``."""
    return f"pyspark.ml.classification.{class_name}"


@dataclass(frozen=True)
class DownstreamModel:
    """One TRAIN model: how MLlib builds it, what parameters it takes, and its cost terms.

    The cost terms are numbers and small functions over numbers; ``cost_model`` combines them
    with its estimates (``facts`` the iterations and passes, ``runtime`` the CPU work of an
    iteration, ``memory`` the training blocks and the aggregates), so no part of the cost model
    asks a model's name.
    """

    name: str
    """As TRAIN names it, lower case (``logreg``)."""
    estimator: str
    """The import path of its Spark ML estimator class (``mllib("LogisticRegression")``): a name,
    not the class, since the registry is shared with the statement checks and the cost model,
    which never load Spark (``physical.train`` imports it)."""
    params: Mapping[str, ValueSpec]
    """Its parameters (snake_case) -> the values each takes (MLlib's name in ``spark_name``)."""
    iterations: Callable[[ParamLookup, CostConstants], float]
    """Sequential steps of one fit (optimizer iterations, or tree levels x trees)."""
    input_passes: Callable[[CostConstants], float]
    """Reads of the cached input by one fit before its iterations."""
    iteration_flops_per_value: float
    """CPU operations per row and per (considered) feature value in one iteration."""
    training_value_bytes: int
    """Bytes per feature value of the training data MLlib persists (dense doubles, or binned)."""
    iteration_scales_with_sets: bool = True
    """Whether an iteration's work grows with the coefficient sets (``coefficient_sets``)."""
    considered_values: Callable[[float], float] | None = None
    """Feature values an iteration looks at, of all of them (None: all)."""
    coefficient_sets: Callable[[float], float] = one_set_if_binary
    """Coefficient vectors for a number of classes (sizes the model and the driver's state)."""
    fixed_aggregate_bytes: float | None = None
    """An executor's aggregate per task per iteration when it does not depend on the
    coefficients (trees' histograms); None: two gradients and two blocks."""
    estimator_args: Mapping[str, Any] = field(default_factory=dict)
    """Fixed constructor arguments of the estimator, beside its features and label columns."""
    spark_value: Callable[[str, Value, int, int], Any] = same_value
    """``spark_value(param, value, n_features, n_classes)``: a checked value as MLlib takes it."""

    def spark_param_name(self, param: str) -> str:
        """MLlib's name of a parameter (``max_memory_in_mb`` is ``maxMemoryInMB``)."""
        return self.params[param].spark_name


def int_spec(spark: str, low: float | None = None, high: float | None = None) -> ValueSpec:
    return ValueSpec("int", spark, low=low, high=high)


def float_spec(
    spark: str,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> ValueSpec:
    return ValueSpec("float", spark, low, high, low_inclusive, high_inclusive)


def bool_spec(spark: str) -> ValueSpec:
    return ValueSpec("bool", spark)


def choice_spec(spark: str, *choices: str) -> ValueSpec:
    return ValueSpec("choice", spark, choices=choices)
