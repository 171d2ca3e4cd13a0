"""MLflow logging of a TRANSFER FEATURES statement (``execute(..., mlflow=True)`` or
``WITH (mlflow = true)``; the ``mlflow`` extra).

One MLflow run per statement, in the tracking store and experiment MLflow is set to
(``MLFLOW_TRACKING_URI`` / ``mlflow.set_tracking_uri``, ``mlflow.set_experiment``); nested when
the caller already has a run open, so a notebook's own run collects every statement it ran.

- parameters: the statement's CNN, weights, layers, model, label and validation split; the
  plan the optimizer chose (``plan.alternative``, ``plan.join``, ...); every Spark setting it
  ran with (``spark.<key>``, as Spark spells them).
- metrics: per layer, ``<layer>.<metric>`` (accuracy, f1, auc, inference and training seconds),
  and the statement's ``seconds``.
- artifacts: ``report.json``, ``metrics.png``, ``explain.txt`` (the plan with estimates beside
  what was measured) and ``models/<layer>`` (each fitted model in Spark ML format).
- tags: ``vista_sql.statement`` and ``vista_sql.best_layer``.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from typing import TYPE_CHECKING, Any

from vista_sql.errors import VistaError

if TYPE_CHECKING:
    from vista_sql.physical.result import TransferResult

LAYER_METRICS = ("accuracy", "f1", "auc", "inference_seconds", "train_seconds")
"""The per-layer columns of ``TransferResult.rows()`` logged as metrics."""

PARAM_LIMIT = 500
"""Characters kept of a parameter's value: MLflow's file store takes up to 6,000 but older
servers only 500; the whole statement is the ``vista_sql.statement`` tag and in report.json."""


def require_mlflow() -> None:
    """Fail before a statement runs when it asks for MLflow and mlflow is not installed."""
    _mlflow()


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError as error:
        raise VistaError(
            "MLflow logging (mlflow = true) needs the mlflow package:"
            " pip install 'vista_sql[mlflow]'"
        ) from error
    return mlflow


def run_params(result: TransferResult) -> dict[str, str]:
    """The run's parameters: the statement's, the chosen plan's and the Spark settings."""
    query = result.query
    params = {
        "cnn": query.cnn,
        "weights": query.weights.describe(),
        "layers": ",".join(run.layer for run in result.runs),
        "model": query.model.describe(),
        "label": query.label,
        "validate": str(query.validate),
        "validate_seed": str(query.validate_seed),
    }
    params.update({f"plan.{key}": str(value) for key, value in result.plan_choice.items()})
    params.update(
        {
            key if key.startswith("spark.") else f"spark.{key}": value
            for key, value in result.spark_conf.items()
        }
    )
    return {key: value[:PARAM_LIMIT] for key, value in params.items()}


def run_metrics(result: TransferResult) -> dict[str, float]:
    """``<layer>.<metric>`` for every layer and metric that has a value (an AUC Spark could not
    compute, NaN, is left out), and ``seconds``."""
    metrics: dict[str, float] = {"seconds": float(result.seconds)}
    for row in result.rows():
        for name in LAYER_METRICS:
            value = row.get(name)
            if value is not None and math.isfinite(value):
                metrics[f"{row['layer']}.{name}"] = float(value)
    return metrics


def log_run(result: TransferResult) -> str | None:
    """Log ``result`` as one MLflow run; returns its run id (also kept in
    ``result.mlflow_run_id``).

    A tracking store that refuses the run (unreachable server, a store MLflow no longer
    accepts) costs a warning, not the statement's result: the result is returned either way.
    """
    mlflow = _mlflow()
    try:
        return _log(mlflow, result)
    except Exception as error:  # MLflow raises its own and its stores' exceptions
        warnings.warn(f"MLflow logging failed, the result is kept: {error}", stacklevel=2)
        return None


def _log(mlflow: Any, result: TransferResult) -> str:
    from vista_sql.physical.result import write_report

    nested = mlflow.active_run() is not None
    with (
        mlflow.start_run(run_name=f"vista_sql {result.query.cnn}", nested=nested) as run,
        tempfile.TemporaryDirectory(prefix="vista-mlflow-") as directory,
    ):
        mlflow.log_params(run_params(result))
        mlflow.log_metrics(run_metrics(result))
        mlflow.set_tags(
            {
                "vista_sql.statement": result.query.sql.strip(),
                "vista_sql.best_layer": str(result.best["layer"]),
            }
        )
        write_report(directory, result, marker=False)
        with open(os.path.join(directory, "explain.txt"), "w") as handle:
            handle.write(result.explain() + "\n")
        mlflow.log_artifacts(directory)
        models = os.path.join(directory, "models")
        for layer, model in result.models.items():
            model.save(os.path.join(models, layer))
        mlflow.log_artifacts(models, artifact_path="models")
        result.mlflow_run_id = str(run.info.run_id)
    return result.mlflow_run_id
