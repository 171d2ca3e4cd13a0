"""The functions behind ``vista_sql.explain``, ``execute`` and ``register_cnn``.

``explain(sql)`` parses every statement, checks it (``logical.builder``), adds EXPLAIN to a bare
TRANSFER FEATURES and returns the text of each, separated by blank lines. EXPLAIN LOGICAL and
EXPLAIN VERBOSE are logical-plan output (``logical.explain``); DESCRIBE CNN and SHOW CNNS print the
catalog. Which EXPLAIN modes exist is decided in one place, :func:`explain_statement`.

Nothing here imports Spark or TensorFlow.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from vista_sql.catalog import Catalog, CnnInfo, current
from vista_sql.errors import VistaError
from vista_sql.grammar.dialect import parse
from vista_sql.logical.builder import build
from vista_sql.logical.explain import explain_logical, explain_verbose
from vista_sql.logical.query import (
    DescribeCnnStatement,
    ExplainStatement,
    ShowCnnsStatement,
    Statement,
    TransferQuery,
)
from vista_sql.units import format_bytes

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from vista_sql.physical.result import TransferResult


def explain(sql: str, *, catalog: Catalog | None = None, **kwargs: Any) -> ExplainText:
    """The text of every statement in ``sql``: its plan (EXPLAIN is added to a bare TRANSFER
    FEATURES), or the catalog for DESCRIBE CNN / SHOW CNNS.

    ``kwargs`` (``tables=``, ``spark=``, resources ...) are passed on to :func:`explain_statement`,
    for the EXPLAIN modes that need the data or the machine.
    """
    catalog = catalog if catalog is not None else current()
    texts = []
    for tree in parse(sql):
        statement: Statement = build(tree, sql, catalog)
        if isinstance(statement, TransferQuery):
            statement = ExplainStatement(query=statement)
        texts.append(statement_text(statement, catalog, **kwargs))
    return ExplainText("\n\n".join(texts))


def statement_text(statement: Statement, catalog: Catalog, **kwargs: Any) -> str:
    """The output of an EXPLAIN, DESCRIBE CNN or SHOW CNNS statement."""
    if isinstance(statement, ExplainStatement):
        return explain_statement(statement, catalog, **kwargs)
    if isinstance(statement, DescribeCnnStatement):
        cnn = catalog.cnn(statement.cnn)
        if cnn is None:
            raise VistaError(f"Unknown CNN {statement.cnn}")
        return describe_cnn(cnn)
    if isinstance(statement, ShowCnnsStatement):
        return show_cnns(catalog)
    raise VistaError("TRANSFER FEATURES runs with vista_sql.execute; explain() prints plans")


# ------------------------------------------------------------------------------------------------
# EXPLAIN dispatch: the one place that decides which EXPLAIN modes exist. LOGICAL and VERBOSE are
# the logical plans; plain EXPLAIN and COST are the cost model's decision; ANALYZE runs the
# statement and prints the decision's estimates beside what was measured.
# ------------------------------------------------------------------------------------------------


def _query_source_stats(query: Any, tables: Any, spark: Any) -> Any:
    """Statistics of a statement with a Spark SQL query source, from Spark's plan, when a session
    is given or active; None (file listings only, the query's side unknown) otherwise. Only such
    statements touch Spark here: EXPLAIN of any other reads file metadata alone."""
    if "query" not in (query.image_source.kind, query.table_source.kind):
        return None
    from vista_sql.cost_model.stats import gather_stats
    from vista_sql.physical.run import spark_stats
    from vista_sql.physical.session import foreign_active_session

    session = spark if spark is not None else foreign_active_session()
    if session is None:
        return None
    return spark_stats(session, query, tables, gather_stats(query, tables))


def explain_statement(statement: ExplainStatement, catalog: Catalog, **kwargs: Any) -> str:
    """The text of one EXPLAIN statement. ``kwargs``: ``tables=``, ``spark=``, ``progress=``."""
    query = statement.query
    if statement.mode == "logical":
        return explain_logical(query, catalog, format=statement.format)
    if statement.mode == "verbose":
        return explain_verbose(query, catalog, format=statement.format)
    if statement.mode == "analyze":
        from vista_sql.physical.run import run_query

        result = run_query(
            query,
            catalog,
            spark=kwargs.get("spark"),
            tables=kwargs.get("tables"),
            master=kwargs.get("master"),
            progress=kwargs.get("progress", False),
            conf=kwargs.get("conf"),
        )
        return result.explain_json() if statement.format == "json" else result.explain()
    from vista_sql.cost_model.decide import decide
    from vista_sql.cost_model.explain import explain_json, explain_text
    from vista_sql.physical.gpu import machine_resources
    from vista_sql.physical.session import is_local
    from vista_sql.physical.store import stored_layers

    tables = kwargs.get("tables")
    resources = machine_resources(query.options)
    master = kwargs.get("master")
    if master is not None:  # a cluster's shape, not this machine's (physical.cluster)
        from vista_sql.physical.cluster import cluster_resources, discover

        shape = discover(master, options=query.options)
        if shape is not None:
            resources = cluster_resources(query.options, shape, resources)
    profile = None
    if query.options.calibrate:
        from vista_sql.cost_model.constants import constants
        from vista_sql.physical.profile import profile_statement

        profile = profile_statement(query, catalog)
    decision = decide(
        query,
        catalog,
        tables,
        stats=_query_source_stats(query, tables, kwargs.get("spark")),
        resources=resources,
        stored=stored_layers(
            query, catalog, tables, remote_executors=master is not None and not is_local(master)
        ),
        consts=profile.apply(constants()) if profile is not None else None,
    )
    if profile is not None:
        decision = dataclasses.replace(decision, profiled=profile)
    mode: Literal["cost"] | None = "cost" if statement.mode == "cost" else None
    if statement.format == "json":
        return json.dumps(explain_json(decision, mode), indent=2, sort_keys=True)
    return explain_text(decision, mode)


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
    """Run every statement in ``sql`` and return the last one's result.

    A TRANSFER FEATURES statement gives a :class:`~vista_sql.physical.result.TransferResult`;
    EXPLAIN, DESCRIBE CNN and SHOW CNNS give their text (an :class:`ExplainText`, a ``str`` that
    notebooks show as HTML). See :func:`execute_all` for the arguments.
    """
    results = execute_all(
        sql,
        spark=spark,
        tables=tables,
        master=master,
        into=into,
        progress=progress,
        conf=conf,
        mlflow=mlflow,
        catalog=catalog,
    )
    return results[-1]


def execute_all(
    sql: str,
    *,
    spark: SparkSession | None = None,
    tables: Mapping[str, Any] | None = None,
    master: str | None = None,
    into: str | None = None,
    progress: bool = True,
    conf: Mapping[str, str] | None = None,
    mlflow: bool | None = None,
    catalog: Catalog | None = None,
) -> list[TransferResult | ExplainText]:
    """Run the statements in order: TRANSFER FEATURES gives a TransferResult; EXPLAIN, DESCRIBE
    CNN and SHOW CNNS give text. Every statement is parsed and checked before any runs.

    ``spark``: the session to run on (a classic or a Spark Connect session; default: the active
    one, else vista_sql's own local session, configured as the optimizer chose). ``master``: the
    master URL of vista_sql's own session, or ``sc://host:port`` for a Spark Connect server.
    ``into`` (the command line's --into) is the INTO of a statement without one; with several
    TRANSFER statements each writes to ``<into>/<n>``. ``conf``: Spark settings that override the
    optimizer's (the command line's --conf). ``mlflow``: log each TRANSFER statement as an
    MLflow run (None: as the statement's ``WITH (mlflow = ...)`` says, default off).
    """
    catalog = catalog if catalog is not None else current()
    statements = [build(tree, sql, catalog) for tree in parse(sql)]
    transfers = [s for s in statements if isinstance(s, TransferQuery)]
    tracked = [s for s in transfers if (mlflow if mlflow is not None else s.options.mlflow)]
    if tracked:
        from vista_sql.tracking import require_mlflow

        require_mlflow()  # before anything runs, not after an hour of inference
    results: list[TransferResult | ExplainText] = []
    for statement in statements:
        if isinstance(statement, TransferQuery):
            from vista_sql.physical.run import run_query

            target = statement.into
            if target is None and into is not None:
                number = transfers.index(statement) + 1
                target = into if len(transfers) == 1 else f"{into}/{number}"
            result = run_query(
                statement,
                catalog,
                spark=spark,
                tables=tables,
                master=master,
                progress=progress,
                into=target,
                conf=conf,
            )
            if statement in tracked:
                from vista_sql.tracking import log_run

                log_run(result)
            results.append(result)
        else:
            results.append(
                ExplainText(
                    statement_text(
                        statement,
                        catalog,
                        spark=spark,
                        tables=tables,
                        master=master,
                        progress=progress,
                        conf=conf,
                    )
                )
            )
    return results


class ExplainText(str):
    """The text of an EXPLAIN, DESCRIBE CNN or SHOW CNNS statement: a ``str`` that notebooks
    show as preformatted HTML instead of a quoted one-line repr."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        return f'<pre class="vista-sql-explain">{html.escape(self)}</pre>'

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def register_cnn(
    name: str,
    keras_model_or_path: Any,
    layers: Sequence[str],
    *,
    preprocess: str = "raw",
    input_size: tuple[int, int] | None = None,
    cache_dir: str | None = None,
) -> CnnInfo:
    """Make a user's Keras model (a ``keras.Model`` or a ``.keras`` / ``.h5`` file) a CNN that
    statements name like the roster's, with ``layers`` (Keras layer names, bottom to top) as its
    transfer layers; returns its catalog entry. ``preprocess``: how decoded RGB pixels become the
    model's input (default ``raw``: 0..255, as ``keras.utils.load_img`` gives them; also
    ``unit``, ``caffe``, ``tf``, ``torch``, ``efficientnet_lite``); ``input_size``: (height,
    width), when the model's input leaves it open. The model and its layer statistics are kept in
    ``cache_dir`` (default: the feature store's directory). See ``vista_sql.udfs.registry``.
    Loads TensorFlow.
    """
    from vista_sql.physical.store import default_directory
    from vista_sql.udfs.registry import register

    directory = cache_dir if cache_dir is not None else default_directory()
    return register(
        name,
        keras_model_or_path,
        layers,
        directory=directory,
        preprocess=preprocess,
        input_size=input_size,
    )


# ------------------------------------------------------------------------------------------------
# DESCRIBE CNN and SHOW CNNS: the catalog as text tables. Statistics not measured yet print '?'.
# ------------------------------------------------------------------------------------------------


def describe_cnn(cnn: CnnInfo) -> str:
    """A CNN's transfer layers, bottom to top: shape, feature sizes, FLOPs and memory."""
    header = (
        f"CNN {cnn.name} ({cnn.display}): input {cnn.input_size[0]}x{cnn.input_size[1]}, "
        f"{cnn.preprocess} preprocessing, parameters {format_bytes(cnn.param_bytes)}"
    )
    rows = [
        (
            layer.name,
            layer.keras,
            layer.kind,
            "x".join(map(str, layer.shape)),
            f"{layer.feature_size('max2x2'):,}",
            f"{layer.feature_size('none'):,}",
            _flops(layer.flops),
            format_bytes(layer.param_bytes),
            format_bytes(layer.activation_bytes),
            format_bytes(layer.peak_rss_bytes),
            (
                f"{layer.resume_keras} {'x'.join(map(str, layer.resume_shape))}"
                if layer.resume_keras is not None and layer.resume_shape is not None
                else "-"
            ),
        )
        for layer in cnn.layers
    ]
    columns = (
        "layer",
        "keras",
        "kind",
        "shape",
        "features (max2x2)",
        "features (none)",
        "segment flops",
        "segment params",
        "activation bytes",
        "peak rss",
        "resume from",
    )
    return header + "\n" + _table(columns, rows)


def show_cnns(catalog: Catalog) -> str:
    """The roster: one row per CNN."""
    rows = [
        (
            cnn.name,
            cnn.display,
            f"{cnn.input_size[0]}x{cnn.input_size[1]}",
            str(len(cnn.layers)),
            ", ".join(cnn.layer_names),
            format_bytes(cnn.param_bytes),
        )
        for cnn in catalog.cnns
    ]
    columns = ("cnn", "display", "input", "layers", "transfer layers (bottom to top)", "params")
    return _table(columns, rows)


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    separator = ["-" * width for width in widths]
    return "\n".join(line(row).rstrip() for row in [columns, separator, *rows])


def _flops(value: float | None) -> str:
    if value is None:
        return "?"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"
