"""The downstream models TRAIN accepts: one registry entry per model, one module per family.

An entry (:class:`DownstreamModel`) holds everything vista_sql knows of a model: how MLlib builds
it, its parameters and the values each may take, and its cost terms. The statement checks
(``logical.builder``), the cost model (``facts``, ``runtime``, ``memory``) and training
(``physical.train``) ask the registry and never a model's name, so adding a model is one entry
(and its tests): ``register(DownstreamModel(...))``.

Parameters are Spark MLlib's (``pyspark.ml.classification``, Spark 4), spelled in snake_case; the
ranges are the validators of MLlib's Scala ``Params`` (``ParamValidators``), so a bad value is
caught when the statement is checked rather than when Spark fits the model minutes later.
Parameters that name columns (``featuresCol``, ``labelCol``, ``weightCol``, ...) or take vectors
and matrices are left out: vista_sql sets the columns itself. ``spark_name`` is the MLlib name (not
always the camelCase of the snake_case one: ``max_memory_in_mb`` is ``maxMemoryInMB``).

Modules, in import order: ``entry`` (the entry and its helpers) -> ``linear``, ``trees``,
``mlp`` (the families) -> this registry. Nothing here imports Spark; the cost terms' constants
(``cost_model.constants``) are passed in, so this package imports nothing of the cost model.
"""

from __future__ import annotations

from vista_sql.logical.models.entry import DownstreamModel
from vista_sql.logical.models.linear import LINEAR_SVC, LOGREG
from vista_sql.logical.models.mlp import MLP
from vista_sql.logical.models.trees import DECISION_TREE, GBT, RANDOM_FOREST
from vista_sql.logical.values import ValueSpec

_REGISTRY: dict[str, DownstreamModel] = {
    entry.name: entry for entry in (LOGREG, LINEAR_SVC, DECISION_TREE, RANDOM_FOREST, GBT, MLP)
}


def register(entry: DownstreamModel) -> None:
    """Make ``entry`` a model TRAIN accepts (by its name, lower case)."""
    _REGISTRY[entry.name.lower()] = entry


def unregister(name: str) -> None:
    """Forget a registered model (tests that register one of their own)."""
    _REGISTRY.pop(name.lower(), None)


def find(name: str) -> DownstreamModel | None:
    """The entry of a TRAIN model name (any case), or None."""
    return _REGISTRY.get(name.lower())


def model(name: str) -> DownstreamModel:
    """The entry of a model the statement checks accepted."""
    return _REGISTRY[name.lower()]


def names() -> tuple[str, ...]:
    """The registered models, lower case, in registration order."""
    return tuple(_REGISTRY)


def spark_param_name(model_name: str, param: str) -> str:
    """MLlib's name of a parameter: ``spark_param_name("gbt", "max_memory_in_mb")`` is
    ``maxMemoryInMB``."""
    return model(model_name).spark_param_name(param)


FOLDS = ValueSpec("int", "numFolds", low=2)
"""``folds``: the number of cross-validation folds of a grid search (default 3)."""

__all__ = [
    "FOLDS",
    "DownstreamModel",
    "find",
    "model",
    "names",
    "register",
    "spark_param_name",
    "unregister",
]
