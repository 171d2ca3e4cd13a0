"""vista_sql: declarative, cost-optimized feature transfer from deep CNNs on Apache Spark.

``import vista_sql`` loads neither Spark nor TensorFlow; ``execute`` loads them when it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vista_sql.api import ExplainText
from vista_sql.errors import DataError, ResourceError, SemanticError, VistaError, VistaSyntaxError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from sqlglot import exp

    from vista_sql.catalog import Catalog
    from vista_sql.physical.result import TransferResult

__all__ = [
    "DataError",
    "ExplainText",
    "ResourceError",
    "SemanticError",
    "TransferResult",
    "VistaError",
    "VistaSyntaxError",
    "calibrate",
    "execute",
    "explain",
    "parse",
    "parse_one",
    "register_cnn",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``vista_sql.TransferResult``, imported on first use: its module pulls in numpy and
    pandas-facing code that ``import vista_sql`` and EXPLAIN never need."""
    if name == "TransferResult":
        from vista_sql.physical.result import TransferResult

        return TransferResult
    raise AttributeError(f"module 'vista_sql' has no attribute {name!r}")


def calibrate(path: str | None = None) -> dict[str, Any]:
    """Measure this machine's cost constants (TensorFlow throughput, decode rate, model builds,
    process memory: about a minute on 2 cores) and write them to the user's calibration file
    (``path``, else ``$VISTA_SQL_CALIBRATION``, else ``~/.config/vista_sql/calibration.json``).
    EXPLAIN and the optimizer use them from then on, and EXPLAIN names the calibration it used.
    Returns what was written."""
    from pathlib import Path

    from vista_sql.physical.profile import calibrate as measure_and_write

    document, _ = measure_and_write(Path(path).expanduser() if path else None)
    return document


def parse(sql: str) -> list[exp.Expr]:
    """Parse one or more ``;``-separated statements into sqlglot expressions."""
    from vista_sql.grammar.dialect import parse as _parse

    return _parse(sql)


def parse_one(sql: str) -> exp.Expr:
    """Parse exactly one statement."""
    from vista_sql.grammar.dialect import parse_one as _parse_one

    return _parse_one(sql)


def explain(sql: str, **kwargs: Any) -> ExplainText:
    """The plan of a statement as text (``EXPLAIN`` is added unless the statement has it)."""
    from vista_sql.api import explain as _explain

    return _explain(sql, **kwargs)


def execute(
    sql: str,
    spark: SparkSession | None = None,
    tables: Mapping[str, Any] | None = None,
    progress: bool = True,
    *,
    master: str | None = None,
    into: str | None = None,
    conf: Mapping[str, str] | None = None,
    mlflow: bool | None = None,
    catalog: Catalog | None = None,
) -> TransferResult | ExplainText:
    """Run the statements in ``sql`` and return the last one's result: a :class:`TransferResult`
    for TRANSFER FEATURES, the text (:class:`ExplainText`) for EXPLAIN, DESCRIBE CNN, SHOW CNNS.

    ``spark``: a classic or Spark Connect session (default: the active one, else a local one the
    optimizer configures); ``tables``: ``{"name": DataFrame | path}``; ``progress``: a progress
    bar in a terminal or a notebook; ``master``: the master URL of vista_sql's own session
    (``local[*]``, ``spark://...``, or ``sc://...`` for Spark Connect); ``into``: the INTO of a
    statement without one; ``conf``: Spark settings over the optimizer's; ``mlflow``: log the run
    to MLflow (default: as ``WITH (mlflow = ...)`` says); ``catalog``: the CNN catalog.
    """
    from vista_sql.api import execute as _execute

    return _execute(
        sql,
        spark,
        tables,
        progress,
        master=master,
        into=into,
        conf=conf,
        mlflow=mlflow,
        catalog=catalog,
    )


def register_cnn(name: str, keras_model_or_path: Any, layers: list[str], **kwargs: Any) -> Any:
    """Make a user's Keras model a roster entry usable in statements; returns its catalog entry.

    Keyword arguments ``preprocess``, ``input_size``, ``cache_dir``: see ``api.register_cnn``.
    """
    from vista_sql.api import register_cnn as _register_cnn

    return _register_cnn(name, keras_model_or_path, layers, **kwargs)
