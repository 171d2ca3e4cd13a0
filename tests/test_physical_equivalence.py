"""Equivalence by execution: every plan alternative gives the same features and the same metrics.

Lazy, eager and staged inference, before and after the join, broadcast and shuffle joins, every
persistence level, over 1, 2 and 5 partitions: all must produce, per layer, the same feature
vector for every id (max abs difference 1e-5) and the same validation metrics. The reference is
the plain lazy plan, the VISTA paper's Naive way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from vista_sql.catalog import current
from vista_sql.datasets.foods import make_foods
from vista_sql.grammar.dialect import parse_one
from vista_sql.logical.builder import build
from vista_sql.logical.driver import Alternative, alternatives
from vista_sql.logical.plan import Join, Persist, Plan, Workload, transform_up
from vista_sql.logical.query import TransferQuery
from vista_sql.physical.executor import LayerRun
from vista_sql.physical.lower import LoweringSettings
from vista_sql.physical.run import Prepared, prepare, run_plan
from vista_sql.physical.sources import KEY
from vista_sql.physical.train import FEATURES

pytestmark = [pytest.mark.spark, pytest.mark.tf, pytest.mark.slow]

ROWS = 24
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def query(tmp_path_factory: pytest.TempPathFactory) -> TransferQuery:
    data = make_foods(tmp_path_factory.mktemp("equivalence") / "foods", rows=ROWS, seed=3)
    sql = (
        f"TRANSFER FEATURES OF '{data.images_dir}' AS i FROM CNN alexnet WEIGHTS RANDOM SEED 5"
        f" LAYERS (conv5, fc6) JOIN '{data.table_path}' AS f ON i.id = f.id"
        " FEATURES (energy, fat, sugars, salt, fibre)"
        " TRAIN LOGREG (max_iter = 5, reg_param = 0.1) LABEL healthy VALIDATE 0.25 SEED 11"
    )
    built = build(parse_one(sql), sql, current())
    assert isinstance(built, TransferQuery)
    return built


@pytest.fixture(scope="module")
def prepared(spark: Any, query: TransferQuery) -> Prepared:
    return prepare(spark, query, None)


@pytest.fixture(scope="module")
def plans(query: TransferQuery) -> dict[str, Alternative]:
    return {alternative.name: alternative for alternative in alternatives(query, current())}


def physical(plan: Workload, join: str, level: str) -> Workload:
    """The plan with every Join's strategy and every Persist's level set."""

    def fill(node: Plan) -> Plan:
        if isinstance(node, Join):
            return dataclasses.replace(node, strategy=join)
        if isinstance(node, Persist):
            return dataclasses.replace(node, level=level)
        return node

    filled = transform_up(plan, fill)
    assert isinstance(filled, Workload)
    return filled


Outcome = dict[str, tuple[np.ndarray, np.ndarray, dict[str, float]]]


def run(plan: Workload, query: TransferQuery, prepared: Prepared, partitions: int) -> Outcome:
    """Per layer: the ids, their feature vectors (sorted by id), and the metrics."""
    features: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def collect(layer_run: LayerRun, table: Any) -> None:
        rows = table.select(KEY, FEATURES).orderBy(KEY).collect()
        ids = np.array([r[0] for r in rows])
        vectors = np.array([r[1].toArray() for r in rows])
        features[layer_run.layer] = (ids, vectors)

    settings = LoweringSettings(partitions=partitions, batch_size=8, threads=1)
    result, _ = run_plan(
        plan, query, current(), prepared, settings, progress=False, on_layer=collect
    )
    return {r.layer: (*features[r.layer], r.trained.metrics) for r in result.runs}


def assert_same(outcome: Outcome, reference: Outcome, label: str) -> None:
    assert outcome.keys() == reference.keys(), label
    for layer, (ids, vectors, metrics) in outcome.items():
        ref_ids, ref_vectors, ref_metrics = reference[layer]
        np.testing.assert_array_equal(ids, ref_ids, err_msg=f"{label} {layer} ids")
        assert vectors.shape == ref_vectors.shape, f"{label} {layer}"
        difference = float(np.max(np.abs(vectors - ref_vectors)))
        assert difference <= TOLERANCE, f"{label} {layer}: max abs difference {difference}"
        for name, value in ref_metrics.items():
            assert metrics[name] == pytest.approx(value, abs=1e-9), f"{label} {layer} {name}"


@pytest.fixture(scope="module")
def reference(plans: dict[str, Alternative], query: TransferQuery, prepared: Prepared) -> Outcome:
    lazy = plans["lazy/before_join/recompute"].plan
    outcome = run(physical(lazy, "shuffle", "serialized"), query, prepared, partitions=2)
    assert set(outcome) == {"conv5", "fc6"}
    for ids, vectors, metrics in outcome.values():
        assert len(ids) == ROWS
        assert np.isfinite(vectors).all()
        assert 0.0 <= metrics["accuracy"] <= 1.0
    return outcome


def test_every_alternative_matches_the_lazy_plan(
    plans: dict[str, Alternative], query: TransferQuery, prepared: Prepared, reference: Outcome
) -> None:
    assert len(plans) == 11
    for name, alternative in plans.items():
        plan = physical(alternative.plan, "broadcast", "deserialized")
        assert_same(run(plan, query, prepared, partitions=2), reference, name)


@pytest.mark.parametrize(
    ("name", "partitions"),
    [
        ("eager/before_join/persist", 1),
        ("staged/after_join/persist", 5),
        ("lazy/after_join/recompute", 1),
        ("eager/before_join/persist", 5),
    ],
)
def test_partition_counts_do_not_change_results(
    plans: dict[str, Alternative],
    query: TransferQuery,
    prepared: Prepared,
    reference: Outcome,
    name: str,
    partitions: int,
) -> None:
    plan = physical(plans[name].plan, "shuffle", "serialized")
    assert_same(run(plan, query, prepared, partitions), reference, f"{name} x{partitions}")


@pytest.mark.parametrize(
    ("name", "join", "level"),
    [
        ("eager/before_join/persist", "shuffle", "deserialized"),
        ("staged/before_join/persist", "broadcast", "serialized"),
        ("staged/before_join/persist", "shuffle", "disk"),
        ("eager/before_join/persist", "shuffle", "disk"),
    ],
)
def test_join_strategies_and_storage_levels_agree(
    plans: dict[str, Alternative],
    query: TransferQuery,
    prepared: Prepared,
    reference: Outcome,
    name: str,
    join: str,
    level: str,
) -> None:
    plan = physical(plans[name].plan, join, level)
    assert_same(run(plan, query, prepared, 2), reference, f"{name} {join} {level}")


def test_a_users_session_keeps_every_join_partition_its_own_task(
    spark: Any, plans: dict[str, Alternative], prepared: Prepared
) -> None:
    """On a user's session at Spark's default 200 shuffle partitions the inference after the join
    and the branch table still have the plan's partitions, but not by coalescing the join's: a
    coalesce runs many shuffled hash join partitions in one task, holding each one's hash map (at
    least a memory page) until the task ends, which ran a 4 GiB heap out of execution memory on
    500 VGG16 rows."""
    from vista_sql.logical.plan import Assemble
    from vista_sql.physical.lower import Lowering

    plan = physical(plans["eager/after_join/persist"].plan, "shuffle", "serialized")
    assemble = next(node for node in plan.walk() if isinstance(node, Assemble))
    before = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "200")
    try:
        settings = LoweringSettings(partitions=3, batch_size=8, threads=1)
        lowering = Lowering(images=prepared.images, table=prepared.table, settings=settings)
        frame = lowering.frame(assemble)
        text = frame._jdf.queryExecution().executedPlan().toString()
        assert frame.rdd.getNumPartitions() == 3
        assert frame.count() == ROWS
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
    assert "ShuffledHashJoin" in text, text
    assert "Coalesce" not in text, text
    # The inference after the join runs in the plan's partitions too, not in 200 tasks.
    inference = text[text.index("MapInArrow") :]
    assert inference.index("hashpartitioning(_vista_key") < inference.index("Join"), text
    assert inference.split("hashpartitioning(_vista_key", 1)[1].split(")")[0].endswith(", 3"), text
    # On a session whose shuffles already give the plan's partitions, nothing is added.
    settings = LoweringSettings(partitions=int(before), batch_size=8, threads=1)
    lowering = Lowering(images=prepared.images, table=prepared.table, settings=settings)
    own = lowering.frame(assemble)._jdf.queryExecution().executedPlan().toString()
    # (the branch table's and the inference's repartitions are the user session's two extra)
    assert own.count("Exchange") == text.count("Exchange") - 2, own
