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
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from vista_sql.catalog import Catalog, CnnInfo
from vista_sql.cost_model.constants import CostConstants, constants
from vista_sql.cost_model.decide import decide
from vista_sql.cost_model.resources import Resources
from vista_sql.cost_model.stats import DataStats, gather_stats
from vista_sql.errors import ResourceError
from vista_sql.logical.plan import Workload
from vista_sql.logical.query import TransferQuery
from vista_sql.physical import hadoop
from vista_sql.physical.cluster import (
    ClusterShape,
    check_fits,
    cluster_resources,
    discover,
    executor_conf,
    executor_peaks,
)
from vista_sql.physical.executor import (
    LayerHook,
    LayerRun,
    MaterialisedHook,
    RunOutcome,
    run_workload,
)
from vista_sql.physical.features import (
    LayerFeatures,
    check_into_tables,
    drop_tables,
    from_assembled,
    quoted,
    table_name,
)
from vista_sql.physical.gpu import machine_resources
from vista_sql.physical.hadoop import is_uri
from vista_sql.physical.lower import Lowering, LoweringSettings
from vista_sql.physical.monitor import PeakMemory
from vista_sql.physical.oom import (
    MemoryExhausted,
    Replan,
    corrected_constants,
    oom_kills,
    out_of_memory,
)
from vista_sql.physical.prepare import (
    align_keys,
    check_images,
    check_weights,
    key_type,
    numeric_columns,
    prepare_table,
    unmatched,
)
from vista_sql.physical.profile import StatementProfile, profile_statement
from vista_sql.physical.progress import Progress
from vista_sql.physical.result import (
    OUTPUT_MARKER,
    TransferResult,
    publish,
    staging_directory,
    write_layer,
    write_report,
)
from vista_sql.physical.session import (
    advice,
    connect_session,
    foreign_active_session,
    is_connect,
    is_local,
    owned_session,
    statement_settings,
    submitted_conf,
)
from vista_sql.physical.sources import KEY, read_images, read_table, resolve
from vista_sql.physical.store import (
    FeatureStore,
    StatementKeys,
    StoreSettings,
    statement_keys,
    store_settings,
    stored_layers,
)
from vista_sql.physical.store.spark_io import StoreWarning, StoreWriter, store_report
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
    name_key_type: str = "string"
    """The Spark type an image directory's file names were cast to as ids (before the keys of
    both sides were aligned): how a file's id is found again (``Lowering.ids``)."""


def prepare(
    spark: SparkSession, query: TransferQuery, tables: Mapping[str, Any] | None
) -> Prepared:
    """Read and check the two sources (keys, labels, features; never image pixels)."""
    check_weights(query)
    raw_table = read_table(spark, query, tables)
    prepared = prepare_table(raw_table, query)
    name_key_type = key_type(raw_table)
    image_source = read_images(spark, query, tables, name_key_type)
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
        name_key_type=name_key_type,
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
    replanned: Replan | None = None,
) -> tuple[TransferResult, RunOutcome]:
    """Run ``plan`` over ``prepared`` and return the result (INTO written if ``into``).

    ``on_layer`` sees each layer's run and its branch table (KEY, LABEL, FEATURES) while cached;
    ``on_materialised`` every Persist node and branch table just cached (the feature store's
    writer); ``replanned``: why this is a second plan (kept in the result and its report).
    Raises ``MemoryExhausted`` when the run ran out of memory (``physical.oom``).
    """
    cnn = catalog.cnn(query.cnn)
    assert cnn is not None, "the builder checked the CNN"
    pooling = query.options.conv_pooling
    feature_sizes = {
        layer: len(prepared.features) + cnn.layers[cnn.index(layer)].feature_size(pooling)
        for layer in query.layers
    }
    bottom_up = sorted(query.layers, key=cnn.index)
    lowering = Lowering(
        images=prepared.images,
        table=prepared.table,
        settings=settings,
        name_key_type=prepared.name_key_type,
    )
    lowering.count_inferred()
    spark = prepared.images.sparkSession
    if query.into_table is not None:
        check_into_tables(spark, query.into_table, query.layers, query.options.overwrite)
    remote = hadoop.stage(spark, into, query.options.overwrite) if into and is_uri(into) else None
    if remote is not None:
        staging: str | None = remote[1].qualified
    else:
        staging = staging_directory(into, query.options.overwrite, query) if into else None
    tables_written: list[str] = []

    def write(run: LayerRun, table: DataFrame) -> None:
        if staging is not None:
            write_layer(staging, run, table, prepared.labels)
        if query.into_table is not None:
            name = table_name(query.into_table, run.layer)
            size = feature_sizes[run.layer] - len(prepared.features)
            frame = from_assembled(table, prepared.features, prepared.labels, size)
            frame.write.mode("overwrite").saveAsTable(quoted(name))
            tables_written.append(name)
        if on_layer is not None:
            on_layer(run, table)

    started = time.perf_counter()
    session = spark
    memory = PeakMemory()
    kills_before = oom_kills()
    try:
        with memory, Progress(session, len(query.layers), progress) as bar:
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
            replanned=replanned,
            inferred_images=(
                int(lowering.inferred.value) if lowering.inferred is not None else None
            ),
            search=[] if outcome.search is None else [fit.row() for fit in outcome.search.fits],
        )
        if remote is not None:
            with tempfile.TemporaryDirectory() as local:
                write_report(local, result)
                # the marker last: a directory holding it is complete
                for name in sorted(os.listdir(local), key=lambda n: (n == OUTPUT_MARKER, n)):
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
        drop_tables(spark, tables_written)
        raise_worker_error(error, query)
        reason = out_of_memory(error, kills_before) if isinstance(error, Exception) else None
        if reason is not None:
            peak = memory.peak.total if memory.peak is not None else None
            raise MemoryExhausted(reason, peak) from error
        raise
    return result, outcome


def _session_of(tables: Mapping[str, Any] | None) -> SparkSession | None:
    """The session of a DataFrame given in ``tables=``: it must be the one that runs the plan."""
    for value in (tables or {}).values():
        session = getattr(value, "sparkSession", None)
        if session is not None:
            return session
    return None


UNKNOWN_PLAN_SIZE = 2**62
"""Spark's plan statistics give ``spark.sql.defaultSizeInBytes`` (Long.MaxValue) for a size they
do not know; sizes at or above this are treated as unknown, never as a number."""


def plan_statistics(frame: DataFrame) -> tuple[int | None, int | None]:
    """(rows, bytes) of ``frame`` from Spark's optimized logical plan, each None when Spark does
    not know it (no row count without table statistics; no size without a file source).

    Reading them runs nothing: they are what Spark's own join planning uses.
    """
    try:
        stats = frame._jdf.queryExecution().optimizedPlan().stats()
        size = int(str(stats.sizeInBytes()))  # a Scala BigInt: py4j gives an int or its object
        count = stats.rowCount()
        rows = int(str(count.get())) if count.isDefined() else None
    except Exception:  # no JVM plan (Spark Connect) or statistics Spark cannot compute
        return None, None
    return rows, size if size < UNKNOWN_PLAN_SIZE else None


def spark_stats(
    spark: SparkSession, query: TransferQuery, tables: Mapping[str, Any] | None, stats: Any
) -> Any:
    """Fill statistics that listings could not give (DataFrame, catalog or query sources).

    Rows come from Spark's plan where it has a row count, else Spark counts them; the images'
    size from the plan's size estimate (the source as stored, before any filter), else it stays
    unknown. The notes say which, for EXPLAIN COST.
    """
    if stats.image_rows.known and stats.table_rows.known:
        return stats
    images = resolve(spark, query.image_source, tables, query, "images")
    table = resolve(spark, query.table_source, tables, query, "table")
    notes: list[str] = []

    def rows_of(frame: Any, side: str) -> tuple[int | None, int | None]:
        if isinstance(frame, str):
            return None, None
        rows, size = plan_statistics(frame)
        if rows is not None:
            notes.append(f"{side}: {rows} rows from Spark's plan statistics")
        else:
            rows = frame.count()
            notes.append(f"{side}: {rows} rows counted by Spark")
        if size is not None:
            notes.append(f"{side}: {size} bytes guessed from Spark's plan size (before filters)")
        return rows, size

    image_rows, image_size = rows_of(images, "images")
    table_rows, _ = rows_of(table, "table")
    features = (
        len(query.features)
        if query.features is not None
        else None
        if isinstance(table, str)
        else len(numeric_columns(table)) - 2
    )
    return DataStats.of(
        image_rows=image_rows if image_rows is not None else stats.image_rows.value,
        image_bytes=image_size if image_size is not None else stats.image_bytes.value,
        table_rows=table_rows if table_rows is not None else stats.table_rows.value,
        feature_columns=features if features is not None else stats.feature_columns.value,
        table_bytes=stats.table_bytes.value,
        exact=False,
        note="; ".join(notes) or "row counts from Spark",
    )


@dataclass(frozen=True)
class Planning:
    """What the optimizer decides a statement's plan from, gathered once before the session."""

    stats: DataStats
    resources: Resources
    store: StoreSettings
    keys: StatementKeys | None
    stored: tuple[StoredLayer, ...]
    target: str | None = None
    """The master the plan runs on when vista_sql starts the session (``master=`` or the one
    ``spark-submit`` gave); None for a user's session or local mode by default."""
    shape: ClusterShape | None = None
    """The cluster's workers, discovered from ``target``, that the plan is sized for."""


def remote_executors(given: SparkSession | None, target: str | None) -> bool:
    """Whether the statement's executors may run on other hosts than this one: a Spark Connect
    session (its server is elsewhere), a user's session or ``target`` on a cluster's master."""
    if given is not None:
        return is_connect(given) or not is_local(str(given.conf.get("spark.master", "local")))
    return target is not None and not is_local(target)


def plan_inputs(
    given: SparkSession | None,
    query: TransferQuery,
    catalog: Catalog,
    tables: Mapping[str, Any] | None,
    master: str | None = None,
) -> Planning:
    """Data statistics (completed from ``given`` when listings cannot count), the resources (a
    cluster's smallest worker where vista_sql starts the session on one, else this machine's),
    and the feature store's entries for the statement."""
    stats = gather_stats(query, tables)
    if given is not None:
        stats = spark_stats(given, query, tables, stats)
    resources = machine_resources(query.options)
    target: str | None = None
    shape: ClusterShape | None = None
    if given is None:
        submitted = submitted_conf() if master is None else {}
        target = master if master is not None else submitted.get("spark.master")
        if target is not None:
            shape = discover(target, submitted, query.options)
        if shape is not None:
            resources = cluster_resources(query.options, shape, resources)
    store = store_settings(query.options, remote_executors(given, target))
    if store.off_reason is not None:
        warnings.warn(f"feature store not used: {store.off_reason}", StoreWarning, stacklevel=3)
    keys = statement_keys(query, catalog, tables) if store.enabled else None
    stored = stored_layers(query, catalog, tables, keys) if keys is not None else ()
    if stored:
        # Entries are read only after their data matches the digest written with them; one that
        # does not is removed, and its layers are computed (and stored) again.
        stored, dropped = FeatureStore.of(store).checked(stored)
        for reason in dropped:
            warnings.warn(
                f"feature store entry dropped and recomputed: {reason}", StoreWarning, stacklevel=3
            )
    return Planning(stats, resources, store, keys, stored, target, shape)


def configured_session(
    given: SparkSession | None,
    decision: Decision,
    planning: Planning,
    master: str | None,
    user_conf: Mapping[str, str] | None = None,
) -> tuple[SparkSession, list[str], dict[str, str]]:
    """The session that runs the plan: the user's own (with advice on the settings the optimizer
    chose that it lacks), or one built with those settings (per executor on a cluster, refused
    up front when no worker can host it); and the settings themselves (the optimizer's, then
    ``user_conf`` over them)."""
    config = decision.chosen.config
    conf = config.as_spark_conf()
    if planning.target is not None and not is_local(planning.target):
        conf = executor_conf(config)
    if planning.shape is not None:
        check_fits(config, conf, planning.shape)
    conf = {**conf, **(user_conf or {})}
    if given is not None:
        return given, advice(given, conf), conf
    return owned_session(conf, master), [], conf


def store_writer(
    planning: Planning, query: TransferQuery, cnn: CnnInfo, prepared: Prepared
) -> StoreWriter | None:
    """The feature store's writer for the run, when the statement's images have keys."""
    if planning.keys is None:
        return None
    return StoreWriter(
        store=FeatureStore.of(planning.store),
        keys=planning.keys,
        cnn=cnn,
        pooling=query.options.conv_pooling,
        every_image_joined=prepared.unmatched["images"] == 0,
        struct_size=len(prepared.features),
        stored=planning.stored,
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
    conf: Mapping[str, str] | None = None,
    alternative: str | None = None,
) -> TransferResult:
    """Decide, configure the session, check the sources, run, and explain one statement; when
    the run runs out of memory, plan once more with the estimates corrected and run again,
    reading the layers the first run stored (``physical.oom``).

    ``master``: vista_sql's own session's master, or ``sc://...`` for a Spark Connect session.
    ``conf``: the user's Spark settings, over the optimizer's (on a session vista_sql does not own
    they are advice, like the optimizer's).

    ``alternative`` (internal: the calibration benchmark's) runs that logical alternative, with
    the physical choices the optimizer makes for it, instead of the fastest (see ``decide``).
    """
    into = into if into is not None else query.into
    given = spark if spark is not None else _session_of(tables) or foreign_active_session()
    if given is None and master is not None and master.startswith("sc://"):
        given = connect_session(master)
    planning = plan_inputs(given, query, catalog, tables, master)
    profile = profile_statement(query, catalog) if query.options.calibrate else None
    base = profile.apply(constants()) if profile is not None else None
    attempt = Attempt(
        query, catalog, given, tables, master, progress, into, conf, alternative, profile
    )
    try:
        return attempt.run(planning, consts=base)
    except MemoryExhausted as failed:
        if failed.estimated_peak is None:
            raise
        consts, corrected = corrected_constants(
            failed, planning.resources, base if base is not None else constants()
        )
        again = plan_inputs(given, query, catalog, tables, master)
        replan = Replan(
            reason=failed.reason,
            first_plan=failed.first_plan,
            estimated_peak=failed.estimated_peak,
            measured_peak=failed.measured_peak,
            corrected=corrected,
            resumed_layers=tuple(sorted({s.layer for s in again.stored if s.form == "features"})),
        )
        warnings.warn(replan.describe(), ReplanWarning, stacklevel=2)
        try:
            return attempt.run(again, replan, consts)
        except MemoryExhausted as twice:
            raise ResourceError(
                f"ran out of memory twice: {replan.describe()}; then again: {twice.reason}"
            ) from twice


class ReplanWarning(UserWarning):
    """A run ran out of memory and was planned and run once more (the result says how)."""


@dataclass(frozen=True)
class Attempt:
    """One statement's plan-and-run, made once and, after a run out of memory, once more."""

    query: TransferQuery
    catalog: Catalog
    given: SparkSession | None
    tables: Mapping[str, Any] | None
    master: str | None
    progress: bool
    into: str | None
    conf: Mapping[str, str] | None
    alternative: str | None
    profile: StatementProfile | None = None
    """``WITH (calibrate = true)``'s profile, shown by the decision's EXPLAIN."""

    def run(
        self,
        planning: Planning,
        replanned: Replan | None = None,
        consts: CostConstants | None = None,
    ) -> TransferResult:
        """Decide from ``planning``, configure the session, check the sources, run, explain.
        Raises ``MemoryExhausted`` (with the chosen plan and its estimated peak) when the run
        runs out of memory."""
        query, catalog, tables, into = self.query, self.catalog, self.tables, self.into

        def decision_with(stored: tuple[StoredLayer, ...]) -> Decision:
            decided = decide(
                query,
                catalog,
                tables,
                stats=planning.stats,
                resources=planning.resources,
                stored=stored,
                alternative=self.alternative,
                consts=consts,
            )
            return replace(decided, profiled=self.profile)

        decision = decision_with(planning.stored)
        session, notes, spark_conf = configured_session(
            self.given, decision, planning, self.master, self.conf
        )
        prepared = prepare(session, query, tables)
        image_key_type = prepared.images.schema[KEY].dataType.simpleString()
        if any(layer.key_type != image_key_type for layer in planning.stored):
            # Entries written under other image ids (file names cast to another key type) do not
            # join with these; decide again without them (rare: the same images, another table).
            decision = decision_with(
                tuple(layer for layer in planning.stored if layer.key_type == image_key_type)
            )
        chosen = decision.chosen
        cnn = catalog.cnn(query.cnn)
        assert cnn is not None
        writer = store_writer(planning, query, cnn, prepared)
        try:
            with statement_settings(session, spark_conf) as applied:
                result, outcome = run_plan(
                    chosen.plan,
                    query,
                    catalog,
                    prepared,
                    LoweringSettings(
                        partitions=chosen.choice.partitions,
                        batch_size=chosen.choice.batch_size,
                        threads=chosen.choice.tf_threads,
                    ),
                    progress=self.progress,
                    into=into,
                    on_materialised=writer,
                    replanned=replanned,
                )
        except MemoryExhausted as failed:
            failed.first_plan = f"{chosen.alternative} ({chosen.choice.describe()})"
            failed.estimated_peak = chosen.peak.value
            failed.estimated_workers = sum(
                chosen.memory.region(name).need.lower_bound
                for name in ("python_workers", "python_daemon")
            )
            raise
        if writer is not None:
            writer.finish()
        result.store = store_report(chosen.plan, writer, planning.store.off_reason)
        result.serve_features(
            LayerFeatures(
                images=prepared.images,
                table=prepared.table,
                columns=prepared.features,
                labels=prepared.labels,
                cnn=cnn,
                weights=query.weights,
                pooling=query.options.conv_pooling,
                batch_size=chosen.choice.batch_size,
                threads=chosen.choice.tf_threads,
                into=into,
                into_table=query.into_table,
                store=writer.store if writer is not None else None,
                keys=planning.keys,
            )
        )
        # the runtime SQL settings were set for the statement: no advice to set them
        result.advice = [note for note in notes if note.split("=", 1)[0] not in applied]
        result.spark_conf = dict(sorted(spark_conf.items()))
        result.plan_choice = {"alternative": chosen.alternative, **asdict(chosen.choice)}
        on_cluster = not is_connect(session) and not is_local(
            str(session.conf.get("spark.master", "local"))
        )
        result.explained_by(
            decision,
            outcome,
            sorted(query.layers, key=cnn.index),
            executor_peaks(session) if on_cluster else [],
        )
        return result
