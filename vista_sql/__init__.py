"""vista_sql: declarative, cost-optimized feature transfer from deep CNNs on Apache Spark.

``import vista_sql`` loads neither Spark nor TensorFlow; ``execute`` loads them when it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vista_sql.errors import DataError, ResourceError, SemanticError, VistaError, VistaSyntaxError

if TYPE_CHECKING:
    from sqlglot import exp

__all__ = [
    "DataError",
    "ResourceError",
    "SemanticError",
    "VistaError",
    "VistaSyntaxError",
    "execute",
    "explain",
    "parse",
    "parse_one",
    "register_cnn",
]
__version__ = "0.1.0"


def parse(sql: str) -> list[exp.Expr]:
    """Parse one or more ``;``-separated statements into sqlglot expressions."""
    from vista_sql.grammar.dialect import parse as _parse

    return _parse(sql)


def parse_one(sql: str) -> exp.Expr:
    """Parse exactly one statement."""
    from vista_sql.grammar.dialect import parse_one as _parse_one

    return _parse_one(sql)


def explain(sql: str, **kwargs: Any) -> str:
    """The plan of a statement as text (``EXPLAIN`` is added unless the statement has it)."""
    from vista_sql.api import explain as _explain

    return _explain(sql, **kwargs)


def execute(
    sql: str,
    spark: Any = None,
    tables: Any = None,
    progress: bool = True,
    *,
    master: str | None = None,
) -> Any:
    """Run the statements in ``sql`` and return the last one's result. ``master``: a Spark master
    URL for vista_sql's own session (default: local mode, or the one ``spark-submit`` gave)."""
    from vista_sql.api import execute as _execute

    return _execute(sql, spark=spark, tables=tables, progress=progress, master=master)


def register_cnn(name: str, keras_model_or_path: Any, layers: list[str], **kwargs: Any) -> Any:
    """Make a user's Keras model a roster entry usable in statements; returns its catalog entry.

    Keyword arguments ``preprocess``, ``input_size``, ``cache_dir``: see ``api.register_cnn``.
    """
    from vista_sql.api import register_cnn as _register_cnn

    return _register_cnn(name, keras_model_or_path, layers, **kwargs)
