"""One TRANSFER FEATURES statement, from its chosen physical plan to a TransferResult.

The order is chosen so that bad input fails fast and nothing is lost silently: read both sources,
check keys, labels and features (no pixels touched), count keys on one side only, then run the
plan layer by layer, then write INTO (staged in a temporary directory, renamed when complete; an
INTO that is a Hadoop URI is staged and renamed through Spark's Hadoop file system).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vista_sql.catalog import Catalog
from vista_sql.logical.plan import Workload
from vista_sql.logical.query import TransferQuery
from vista_sql.physical import hadoop
from vista_sql.physical.executor import (
    LayerHook,
    LayerRun,
    MaterialisedHook,
    RunOutcome,
    run_workload,
)
from vista_sql.physical.hadoop import is_uri
from vista_sql.physical.lower import Lowering, LoweringSettings
from vista_sql.physical.monitor import PeakMemory
from vista_sql.physical.prepare import (
    align_keys,
    check_images,
    check_weights,
    key_type,
    prepare_table,
    unmatched,
)
from vista_sql.physical.progress import Progress
from vista_sql.physical.result import (
    TransferResult,
    publish,
    staging_directory,
    write_layer,
    write_report,
)
from vista_sql.physical.sources import KEY, read_images, read_table
from vista_sql.physical.worker_errors import raise_worker_error

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from vista_sql.cost_model.optimizer import Decision
    from vista_sql.logical.stored import StoredLayer


@dataclass(frozen=True)
class Prepared:
    """Both sources read and checked, ready to run any plan over."""

    images: DataFrame
    table: DataFrame
    labels: tuple[Any, ...]
    features: tuple[str, ...]
    unmatched: dict[str, int]
    unnamed_files: tuple[str, ...]
    other_files: tuple[str, ...] = ()
    """Files of an image directory that are not images (reported, never read)."""


def prepare(
    spark: SparkSession, query: TransferQuery, tables: Mapping[str, Any] | None
) -> Prepared:
    """Read and check the two sources (keys, labels, features; never image pixels)."""
    check_weights(query)
    raw_table = read_table(spark, query, tables)
    prepared = prepare_table(raw_table, query)
    image_source = read_images(spark, query, tables, key_type(raw_table))
    check_images(image_source, query)
    images, table = align_keys(image_source.frame, prepared.frame, query)
    return Prepared(
        images=images,
        table=table,
        labels=prepared.labels,
        features=prepared.features,
        unmatched=unmatched(images, table, query),
        unnamed_files=image_source.unnamed_files,
        other_files=image_source.other_files,
    )


def run_plan(
    plan: Workload,
    query: TransferQuery,
    catalog: Catalog,
    prepared: Prepared,
    settings: LoweringSettings,
    *,
    progress: bool = True,
    into: str | None = None,
    on_layer: LayerHook | None = None,
    on_materialised: MaterialisedHook | None = None,
) -> tuple[TransferResult, RunOutcome]:
    """Run ``plan`` over ``prepared`` and return the result (INTO written if ``into``).

    ``on_layer`` sees each layer's run and its branch table (KEY, LABEL, FEATURES) while cached;
    ``on_materialised`` every Persist node and branch table just cached (the feature store's
    writer).
    """
    cnn = catalog.cnn(query.cnn)
    assert cnn is not None, "the builder checked the CNN"
    pooling = query.options.conv_pooling
    feature_sizes = {
        layer: len(prepared.features) + cnn.layers[cnn.index(layer)].feature_size(pooling)
        for layer in query.layers
    }
    bottom_up = sorted(query.layers, key=cnn.index)
    lowering = Lowering(images=prepared.images, table=prepared.table, settings=settings)
    spark = prepared.images.sparkSession
    remote = hadoop.stage(spark, into, query.options.overwrite) if into and is_uri(into) else None
    if remote is not None:
        staging: str | None = remote[1].qualified
    else:
        staging = staging_directory(into, query.options.overwrite) if into else None

    def write(run: LayerRun, table: DataFrame) -> None:
        if staging is not None:
            write_layer(staging, run, table, prepared.labels)
        if on_layer is not None:
            on_layer(run, table)

    started = time.perf_counter()
    context = prepared.images.sparkSession.sparkContext
    try:
        with PeakMemory() as memory, Progress(context, len(query.layers), progress) as bar:
            outcome = run_workload(
                plan,
                query,
                lowering,
                feature_sizes=feature_sizes,
                n_classes=len(prepared.labels),
                layer_order=bottom_up,
                progress=bar,
                on_layer=write,
                on_materialised=on_materialised,
            )
        top_down = sorted(outcome.layers, key=lambda r: -cnn.index(r.layer))
        result = TransferResult(
            query=query,
            runs=top_down,
            skipped_images=outcome.skipped_images,
            unmatched=prepared.unmatched,
            unnamed_files=prepared.unnamed_files,
            other_files=prepared.other_files,
            seconds=time.perf_counter() - started,
            peak_memory=memory.peak,
            into=into,
        )
        if remote is not None:
            with tempfile.TemporaryDirectory() as local:
                write_report(local, result)
                for name in sorted(os.listdir(local)):
                    remote[1].child(name).upload(os.path.join(local, name))
            hadoop.publish(remote[1], remote[0])
        elif staging is not None and into is not None:
            write_report(staging, result)
            publish(staging, into)
    except BaseException as error:
        if remote is not None:
            with contextlib.suppress(Exception):
                remote[1].delete()
        elif staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise_worker_error(error, query)
        raise
    return result, outcome


def _session_of(tables: Mapping[str, Any] | None) -> SparkSession | None:
    """The session of a DataFrame given in ``tables=``: it must be the one that runs the plan."""
    for value in (tables or {}).values():
        session = getattr(value, "sparkSession", None)
        if session is not None:
            return session
    return None


def _spark_stats(
    spark: SparkSession, query: TransferQuery, tables: Mapping[str, Any] | None, stats: Any
) -> Any:
    """Fill statistics that listings could not give (DataFrame or catalog sources) from Spark."""
    from vista_sql.cost_model.stats import DataStats
    from vista_sql.physical.prepare import numeric_columns
    from vista_sql.physical.sources import resolve

    if stats.image_rows.known and stats.table_rows.known:
        return stats
    images = resolve(spark, query.image_source, tables, query, "images")
    table = resolve(spark, query.table_source, tables, query, "table")
    image_rows = None if isinstance(images, str) else images.count()
    table_rows = None if isinstance(table, str) else table.count()
    features = (
        len(query.features)
        if query.features is not None
        else None
        if isinstance(table, str)
        else len(numeric_columns(table)) - 2
    )
    return DataStats.of(
        image_rows=image_rows if image_rows is not None else stats.image_rows.value,
        image_bytes=stats.image_bytes.value,
        table_rows=table_rows if table_rows is not None else stats.table_rows.value,
        feature_columns=features if features is not None else stats.feature_columns.value,
        table_bytes=stats.table_bytes.value,
        exact=False,
        note="row counts from Spark",
    )


def run_query(
    query: TransferQuery,
    catalog: Catalog,
    *,
    spark: SparkSession | None = None,
    tables: Mapping[str, Any] | None = None,
    master: str | None = None,
    progress: bool = True,
    into: str | None = None,
    alternative: str | None = None,
) -> TransferResult:
    """Decide, configure the session, check the sources, run, and explain one statement.

    ``alternative`` (internal: the calibration benchmark's) runs that logical alternative, with
    the physical choices the optimizer makes for it, instead of the fastest (see ``decide``).
    """
    from vista_sql.cost_model.decide import decide
    from vista_sql.cost_model.explain import explain_json, explain_text
    from vista_sql.cost_model.stats import gather_stats
    from vista_sql.physical.analyze import analyze_json, analyze_text
    from vista_sql.physical.cluster import (
        check_fits,
        cluster_resources,
        discover,
        executor_conf,
        executor_peaks,
    )
    from vista_sql.physical.gpu import machine_resources
    from vista_sql.physical.session import (
        advice,
        foreign_active_session,
        is_local,
        owned_session,
        submitted_conf,
    )
    from vista_sql.physical.store import (
        FeatureStore,
        statement_keys,
        store_settings,
        stored_layers,
    )
    from vista_sql.physical.store_io import StoreWriter, store_report

    into = into if into is not None else query.into
    given = spark if spark is not None else _session_of(tables) or foreign_active_session()
    stats = gather_stats(query, tables)
    if given is not None:
        stats = _spark_stats(given, query, tables, stats)
    resources = machine_resources(query.options)
    submitted = submitted_conf() if given is None and master is None else {}
    target = master if master is not None else submitted.get("spark.master")
    shape = (
        discover(target, submitted, query.options) if given is None and target is not None else None
    )
    if shape is not None:
        resources = cluster_resources(query.options, shape, resources)
    store = store_settings(query.options)
    keys = statement_keys(query, catalog, tables) if store.enabled else None
    stored = stored_layers(query, catalog, tables, keys) if keys is not None else ()

    def decision_with(stored: tuple[StoredLayer, ...]) -> Decision:
        return decide(
            query,
            catalog,
            tables,
            stats=stats,
            resources=resources,
            stored=stored,
            alternative=alternative,
        )

    decision = decision_with(stored)
    chosen = decision.chosen
    conf = chosen.config.as_spark_conf()
    if target is not None and not is_local(target):
        conf = executor_conf(chosen.config)
    if shape is not None:
        check_fits(chosen.config, conf, shape)
    session = given if given is not None else owned_session(conf, master)
    notes = advice(session, conf) if given is not None else []

    prepared = prepare(session, query, tables)
    image_key_type = prepared.images.schema[KEY].dataType.simpleString()
    if any(layer.key_type != image_key_type for layer in stored):
        # Entries written under other image ids (file names cast to another key type) do not
        # join with these; decide again without them (rare: the same images, another table).
        stored = tuple(layer for layer in stored if layer.key_type == image_key_type)
        decision = decision_with(stored)
        chosen = decision.chosen
    plan = chosen.plan
    settings = LoweringSettings(
        partitions=chosen.choice.partitions,
        batch_size=chosen.choice.batch_size,
        threads=chosen.choice.tf_threads,
    )
    cnn = catalog.cnn(query.cnn)
    assert cnn is not None
    writer = (
        StoreWriter(
            store=FeatureStore.of(store),
            keys=keys,
            cnn=cnn,
            pooling=query.options.conv_pooling,
            every_image_joined=prepared.unmatched["images"] == 0,
            struct_size=len(prepared.features),
        )
        if keys is not None
        else None
    )
    result, outcome = run_plan(
        plan,
        query,
        catalog,
        prepared,
        settings,
        progress=progress,
        into=into,
        on_materialised=writer,
    )
    result.store = store_report(plan, writer)
    on_cluster = not is_local(str(session.conf.get("spark.master", "local")))
    executors = executor_peaks(session) if on_cluster else []
    order = sorted(query.layers, key=cnn.index)
    result.advice = notes
    result.plan = explain_text(decision)
    result._explain = lambda: analyze_text(
        decision, result.plan, plan, outcome, order, result.seconds, result.peak_memory, executors
    )
    result._explain_json = lambda: analyze_json(
        decision,
        explain_json(decision),
        plan,
        outcome,
        order,
        result.seconds,
        result.peak_memory,
        executors,
    )
    return result
