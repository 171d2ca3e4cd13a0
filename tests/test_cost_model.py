"""The memory and runtime models and the optimizer: monotone, honest, and choosing by the key."""

from __future__ import annotations

import dataclasses
from functools import cache

import pytest
from cost_support import (
    GiB,
    MiB,
    catalog_for,
    decide,
    query_and_alternatives,
    resources,
    statement,
    stats,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vista_sql.cost_model.config import Choice
from vista_sql.cost_model.constants import constants
from vista_sql.cost_model.facts import PlanFacts, analyze
from vista_sql.cost_model.memory import MemoryModel, memory_model
from vista_sql.cost_model.optimizer import PhysicalPlan, _choices, _estimate, choose
from vista_sql.cost_model.resources import Resources
from vista_sql.cost_model.runtime import RuntimeModel, batch_slowdown, runtime
from vista_sql.cost_model.stats import DataStats
from vista_sql.errors import ResourceError
from vista_sql.logical.plan import Infer, Join, Persist

SQL = statement()
NAMES = [a.name for a in query_and_alternatives(SQL, "tinynet")[1]]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def choice(**changes: object) -> Choice:
    base = Choice(
        join="broadcast",
        persist="deserialized",
        executor_cores=2,
        tf_threads=1,
        batch_size=16,
        memory_fraction=0.6,
        storage_fraction=0.5,
        partitions=4,
        arrow_rows=64,
        cache_rows=1000,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def alternative(name: str, sql: str = SQL, cnn: str = "tinynet") -> object:
    return next(a for a in query_and_alternatives(sql, cnn)[1] if a.name == name)


def model(
    name: str,
    data: DataStats,
    machine: Resources,
    pick: Choice,
    sql: str = SQL,
    cnn: str = "tinynet",
) -> tuple[PlanFacts, MemoryModel, RuntimeModel]:
    plan = alternative(name, sql, cnn).plan  # type: ignore[attr-defined]
    facts = analyze(plan, catalog_for(cnn), data, constants())
    memory = memory_model(facts, pick, machine, constants())
    return facts, memory, runtime(facts, pick, memory, machine, constants())


data_sizes = st.tuples(
    st.integers(1, 200_000),  # images
    st.integers(1_000, 2_000_000),  # bytes per image
    st.integers(1, 2_000),  # structured features
)
choices = st.builds(
    choice,
    join=st.sampled_from(["broadcast", "shuffle"]),
    persist=st.sampled_from(["deserialized", "serialized", "disk"]),
    executor_cores=st.integers(1, 8),
    batch_size=st.sampled_from([1, 8, 64]),
    memory_fraction=st.sampled_from([0.5, 0.6, 0.75]),
    partitions=st.integers(1, 64),
)


@FAST
@given(st.sampled_from(NAMES), data_sizes, choices, st.integers(1, 64))
def test_estimates_are_known_and_never_negative(
    name: str, size: tuple[int, int, int], pick: Choice, memory_gib: int
) -> None:
    images, image_bytes, features = size
    facts, memory, time = model(
        name, stats(images, image_bytes, features=features), resources(memory_gib * GiB), pick
    )
    for node in facts.nodes:
        assert node.rows.known and node.rows.lower_bound >= 0
        assert node.bytes.known and node.bytes.lower_bound >= 0
    for region in memory.regions:
        assert region.need.known and region.need.lower_bound >= 0
    for op in time.operators:
        assert op.total.known and op.total.lower_bound >= 0
    assert time.total.known and memory.peak.known


@FAST
@given(st.sampled_from(NAMES), data_sizes, data_sizes, choices)
def test_memory_and_time_never_decrease_as_data_grows(
    name: str, small: tuple[int, int, int], growth: tuple[int, int, int], pick: Choice
) -> None:
    large = tuple(a + b for a, b in zip(small, growth, strict=True))
    machine = resources(16 * GiB)
    _, memory_small, time_small = model(
        name, stats(small[0], small[1], features=small[2]), machine, pick
    )
    _, memory_large, time_large = model(
        name, stats(large[0], large[1], features=large[2]), machine, pick
    )
    # The heap is a whole number of MiB: when it takes all the memory the workers leave, more
    # data can round it one MiB down while the workers grow by less.
    assert memory_large.peak.lower_bound >= memory_small.peak.lower_bound - 2 * MiB
    assert time_large.total.lower_bound >= time_small.total.lower_bound * (1 - 1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_bigger_cnn_features_cost_more(name: str) -> None:
    """Unpooled convolutional features are larger than pooled ones: never cheaper."""
    pooled = statement(layers="conv1, conv2")
    unpooled = statement(layers="conv1, conv2", options="conv_pooling = 'none'")
    machine, data = resources(16 * GiB), stats()
    _, memory_small, time_small = model(name, data, machine, choice(), sql=pooled)
    _, memory_large, time_large = model(name, data, machine, choice(), sql=unpooled)
    assert memory_large.peak.lower_bound >= memory_small.peak.lower_bound
    assert time_large.total.lower_bound > time_small.total.lower_bound


@FAST
@given(st.sampled_from(NAMES), choices, st.integers(256, 64 * 1024), st.integers(0, 64 * 1024))
def test_a_plan_that_fits_also_fits_with_more_memory(
    name: str, pick: Choice, budget_mib: int, more_mib: int
) -> None:
    data = stats(20_000, 100_000, features=100)
    _, smaller, _ = model(name, data, resources(budget_mib * MiB), pick)
    _, larger, _ = model(name, data, resources((budget_mib + more_mib) * MiB), pick)
    if smaller.fit.status == "fits":
        assert larger.fit.status == "fits"
    if larger.fit.status == "does_not_fit":
        assert smaller.fit.status == "does_not_fit"


def test_the_choice_is_the_argmin_of_the_key() -> None:
    decision = decide(SQL, data=stats(20_000, 100_000), machine=resources(4 * GiB))
    assert decision.chosen.key() == min(p.key() for p in decision.alternatives)
    assert decision.chosen in decision.alternatives
    # Each alternative's best is the best of every choice, also those the search skips.
    query, alts = query_and_alternatives(SQL, "tinynet")
    consts = constants()
    for order, alt in enumerate(alts):
        facts = analyze(alt.plan, catalog_for("tinynet"), decision.stats, consts)
        every = [
            _estimate(alt, order, i, facts, c, decision.resources, consts)
            for i, c in enumerate(
                c
                for group in _choices(alt, facts, query.options, decision.resources, consts)
                for c in group
            )
        ]
        best = next(p for p in decision.alternatives if p.alternative == alt.name)
        assert best.key()[:5] == min(p.key() for p in every)[:5]


def test_fitting_beats_faster() -> None:
    """Under tight memory the fastest configuration (on a CPU whose larger batches are never
    slower per image: the largest TF batch, fewest calls) does not fit; the chosen plan fits
    although it is slower."""
    sql = statement("vgg16", "fc6, fc7", model="LOGREG")
    data = stats(2_000, 100_000, features=50)
    machine = resources(6 * GiB, cores=4)
    consts = dataclasses.replace(constants(), tf_batch_slowdown_exponent=0.0)
    decision = decide(sql, "vgg16", data, machine, consts)
    assert decision.chosen.fit.status == "fits"
    _, alts = query_and_alternatives(sql, "vgg16")
    chosen = next(a for a in alts if a.name == decision.chosen.alternative)
    facts = analyze(chosen.plan, catalog_for("vgg16"), data, consts)
    faster = dataclasses.replace(decision.chosen.choice, batch_size=64, arrow_rows=256)
    plan = _estimate(chosen, 0, 0, facts, faster, machine, consts)
    assert plan.fit.status == "does_not_fit"
    assert plan.fit.region == "python_workers"
    assert plan.time.lower_bound < decision.chosen.time.lower_bound
    assert plan.key() > decision.chosen.key()


def test_physical_fields_are_filled_in() -> None:
    decision = decide(SQL)
    chosen = decision.chosen
    nodes = list(chosen.plan.walk())
    assert all(n.strategy == chosen.choice.join for n in nodes if isinstance(n, Join))
    assert all(n.level == chosen.choice.persist for n in nodes if isinstance(n, Persist))
    assert all(n.batch_size == chosen.choice.batch_size for n in nodes if isinstance(n, Infer))
    assert len(nodes) == len(chosen.facts.nodes)


def test_reuse_wins_when_it_fits() -> None:
    """The paper's point: with several layers, not repeating inference is much faster."""
    decision = decide(SQL, data=stats(20_000, 100_000), machine=resources(16 * GiB))
    assert decision.chosen.alternative.startswith(("eager", "staged"))
    lazy = next(p for p in decision.alternatives if p.alternative.startswith("lazy"))
    assert lazy.time.lower_bound > 2 * decision.chosen.time.lower_bound
    assert decision.reason(lazy).startswith("slower: ")


@pytest.mark.parametrize(
    ("option", "check"),
    [
        ("inference = 'lazy'", lambda p: p.alternative.startswith("lazy")),
        ("placement = 'after_join'", lambda p: "/after_join/" in p.alternative),
        ("join = 'shuffle'", lambda p: p.choice.join == "shuffle"),
        (
            "persist = 'disk'",
            lambda p: all(n.level == "disk" for n in p.plan.walk() if isinstance(n, Persist)),
        ),
        ("executor_cores = 1", lambda p: p.config.executor_cores == 1),
        ("partitions = 7", lambda p: p.config.partitions == 7),
        ("batch_size = 8", lambda p: p.config.batch_size == 8),
    ],
)
def test_overrides_are_honoured(option: str, check: object) -> None:
    decision = decide(statement(options=option))
    assert check(decision.chosen)  # type: ignore[operator]
    assert decision.overrides == (option,)
    for plan in decision.alternatives:
        assert check(plan)  # type: ignore[operator]


def test_an_override_that_cannot_fit_is_refused_pointing_at_it() -> None:
    sql = statement("vgg16", "fc6, fc7", options="executor_cores = 8, batch_size = 64")
    with pytest.raises(ResourceError) as caught:
        decide(sql, "vgg16", stats(2_000, 100_000), resources(8 * GiB, cores=8))
    error = caught.value
    assert error.description is not None
    assert "cannot fit" in error.description
    assert "without it" in error.description
    assert error.line == 6
    assert error.highlight == "executor_cores = 8"


def test_no_plan_fits_names_the_least_memory_that_would() -> None:
    sql = statement("vgg16", "fc6, fc7, fc8")
    data = stats(20_000, 100_000, features=130)
    with pytest.raises(ResourceError) as caught:
        decide(sql, "vgg16", data, resources(1.5 * GiB))
    needed = caught.value.needed_bytes
    assert needed is not None and needed > 1.5 * GiB
    assert "would fit with" in str(caught.value)
    decision = decide(sql, "vgg16", data, resources(needed))
    assert decision.chosen.fit.status == "fits"
    with pytest.raises(ResourceError):
        decide(sql, "vgg16", data, resources(needed - MiB))


def test_unknown_statistics_give_unknown_estimates_not_crashes() -> None:
    decision = decide(statement("blindnet", "fc2, fc3"), "blindnet")
    assert not decision.chosen.time.known
    assert not decision.chosen.peak.known
    assert decision.chosen.fit.status == "unknown"
    # What is known still decides: decoding and scanning once beats doing it per layer and pass.
    assert not decision.chosen.alternative.startswith("lazy")
    lazy = next(p for p in decision.alternatives if p.alternative.startswith("lazy"))
    assert decision.reason(lazy).startswith("slower in what is known")


def test_unknown_data_is_unknown_too() -> None:
    data = DataStats.of(image_rows=None, image_bytes=None, table_rows=None, feature_columns=None)
    decision = decide(SQL, data=data)
    assert not decision.chosen.time.known
    assert decision.chosen.facts.nodes[-1].rows.format() == "?"


def test_spark_configuration_keys() -> None:
    decision = decide(SQL, machine=resources(8 * GiB, cores=2))
    conf = decision.chosen.config.as_spark_conf()
    config = decision.chosen.config
    assert conf["spark.master"] == f"local[{config.executor_cores}]"
    assert conf["spark.driver.memory"] == f"{config.heap_bytes // MiB}m"
    assert conf["spark.memory.fraction"] == f"{config.memory_fraction:g}"
    assert conf["spark.sql.shuffle.partitions"] == str(config.partitions)
    assert conf["spark.sql.execution.arrow.maxRecordsPerBatch"] == str(config.arrow_rows)
    assert conf["spark.executorEnv.TF_NUM_INTRAOP_THREADS"] == str(config.tf_threads)
    # a file open costs what the constants say reading costs in that time (Spark's 4 MiB would
    # make thousands of scan tasks of a large image directory)
    consts = constants()
    open_bytes = round(consts.file_open_seconds / consts.scan_seconds_per_byte)
    assert conf["spark.sql.files.openCostInBytes"] == str(open_bytes) != str(4 * MiB)
    assert list(conf) == sorted(conf)


def test_a_cluster_sizes_executors_and_the_driver() -> None:
    decision = decide(SQL, machine=resources(8 * GiB, cores=4, nodes=3))
    conf = decision.chosen.config.as_spark_conf()
    assert decision.chosen.config.mode == "cluster"
    assert "spark.master" not in conf
    assert conf["spark.executor.instances"] == "3"
    assert "spark.executor.memory" in conf and "spark.driver.memory" in conf
    assert any(r.name == "driver" for r in decision.chosen.memory.regions)


def test_gpu_memory_is_a_region_and_a_limit() -> None:
    sql = statement("vgg16", "fc6, fc7")
    machine = Resources(16 * GiB, 4, 1, gpu_memory_bytes=8 * GiB)
    decision = decide(sql, "vgg16", stats(), machine)
    gpu = next(r for r in decision.chosen.memory.regions if r.name == "gpu")
    assert gpu.need.lower_bound <= 8 * GiB
    tiny = Resources(16 * GiB, 4, 1, gpu_memory_bytes=100 * MiB)
    with pytest.raises(ResourceError, match="at any memory size"):
        decide(sql, "vgg16", stats(), tiny)


@cache
def _naive_heap_plan() -> PhysicalPlan:
    """VGG16 on 4 cores with 8 GiB: what a 'heap to most of the machine' setting leaves out."""
    sql = statement("vgg16", "fc6, fc7, fc8")
    query, alts = query_and_alternatives(sql, "vgg16")
    return choose(query, alts, catalog_for("vgg16"), stats(), resources(8 * GiB, 4)).chosen


def test_python_workers_live_outside_the_heap() -> None:
    plan = _naive_heap_plan()
    regions = {r.name: r for r in plan.memory.regions}
    workers = regions["python_workers"].need.lower_bound
    assert workers > 0
    assert regions["jvm_heap"].need.lower_bound + workers <= 8 * GiB
    # The node's total is every region under it, the heap's parts are inside the heap.
    parts = [r.need.lower_bound for r in plan.memory.regions if r.parent == "node"]
    assert regions["node"].need.lower_bound == pytest.approx(sum(parts))


def test_a_pipeline_of_inferences_holds_a_python_worker_per_stage() -> None:
    """Staged inference without persistence runs every stage's mapInArrow in one task, each in its
    own Python worker: the task holds them all at once (measured: AlexNet conv5..fc8 staged and
    recomputed peaked at 8.2-8.5 GiB, persisted at 3.1-3.4 GiB)."""
    sql = statement("alexnet", "conv5, fc6, fc7, fc8", "executor_cores = 2")
    query, alts = query_and_alternatives(sql, "alexnet")
    named = {a.name: a for a in alts}

    def workers(name: str) -> tuple[float, str]:
        plan = choose(
            query, [named[name]], catalog_for("alexnet"), stats(), resources(24 * GiB)
        ).chosen
        region = next(r for r in plan.memory.regions if r.name == "python_workers")
        return region.need.lower_bound, region.detail

    pipelined, detail = workers("staged/after_join/recompute")
    persisted, _ = workers("staged/after_join/persist")
    eager, eager_detail = workers("eager/after_join/persist")
    assert "4 workers in a pipeline" in detail
    assert "pipeline" not in eager_detail
    # Four TensorFlow runtimes per task instead of one: well over three times the memory.
    assert pipelined > 3 * persisted
    assert pipelined > 3 * eager


def test_a_task_batches_no_more_rows_than_its_partition_has() -> None:
    """The worker slices its partition's Arrow batches into model batches: with 120 images in 4
    partitions a batch of 64 never forms (VGG16 measured 5.7 GiB where batch 64 predicted 8.4)."""
    sql = statement("vgg16", "fc6, fc7, fc8", "batch_size = 64, partitions = 4")
    query, alts = query_and_alternatives(sql, "vgg16")

    def workers(images: int) -> float:
        plan = choose(query, alts, catalog_for("vgg16"), stats(images), resources(24 * GiB)).chosen
        return next(r for r in plan.memory.regions if r.name == "python_workers").need.lower_bound

    # Partitions of ~45 rows (with skew) hold less than those of 64 or more; beyond, only the
    # Arrow batches grow (to their 256 rows).
    assert workers(120) < workers(400)
    assert workers(400) == pytest.approx(workers(4000), rel=0.01)


def test_the_jvm_makes_its_heap_resident_around_what_it_keeps() -> None:
    """Little kept: a measured share of -Xmx. More: what is kept and G1's free share beside it
    (MinHeapFreeRatio), at most the whole heap."""
    import dataclasses

    from vista_sql.cost_model.constants import constants
    from vista_sql.cost_model.estimate import Estimate
    from vista_sql.cost_model.memory import jvm_resident, needs

    consts = constants()
    chosen = decide(SQL).chosen
    base = needs(chosen.facts, chosen.choice, resources(), consts)
    heap = 16 * GiB

    def resident(cached: float) -> float:
        need = dataclasses.replace(
            base,
            cache_peak=Estimate.inexact(cached),
            user_need=Estimate.exact(0),
            pinned=Estimate.exact(0),
        )
        return jvm_resident(heap, need, storage_capacity=12 * GiB, consts=consts) - (
            consts.jvm_resident_base_bytes
        )

    assert resident(0) == pytest.approx(consts.jvm_heap_touched_fraction * heap)
    assert resident(6 * GiB) == pytest.approx(6 * GiB / (1 - consts.jvm_min_heap_free_ratio))
    assert resident(11 * GiB) == pytest.approx(heap)  # 11 / 0.6 is more than the heap
    assert resident(20 * GiB) == pytest.approx(heap)  # held: at most the storage capacity


def test_batches_past_the_calibrated_one_cost_time_and_the_search_finds_the_fastest() -> None:
    """Measured here: ResNet50 7.81 img/s at batch 8 and 5.46 at 64 (one thread). With the batch
    exponent the per-image time grows past batch 8, the search keeps going down from the largest
    batch that fits while the estimate improves, and picks the calibrated batch; without it
    (a CPU whose larger batches are never slower) the largest batch that fits wins."""
    sql = statement("resnet50", "fc6", model="LOGREG")
    data = stats(2_000, 100_000, features=50)
    machine = resources(24 * GiB, cores=2)
    slow = dataclasses.replace(constants(), tf_batch_slowdown_exponent=0.15)
    flat = dataclasses.replace(constants(), tf_batch_slowdown_exponent=0.0)
    assert batch_slowdown(64, slow) == pytest.approx(8**0.15)
    assert batch_slowdown(4, slow) == batch_slowdown(8, slow) == 1.0
    assert decide(sql, "resnet50", data, machine, slow).chosen.choice.batch_size == 8
    assert decide(sql, "resnet50", data, machine, flat).chosen.choice.batch_size == 64


def test_metrics_are_one_job_up_to_the_rows_the_driver_counts() -> None:
    """As ``physical.evaluate.scored_metrics`` runs them: one job that brings the held-out
    scores to the driver, Spark's four jobs beyond ``DRIVER_ROWS`` or when the rows are unknown."""
    from vista_sql.cost_model.estimate import Estimate
    from vista_sql.cost_model.runtime import SPARK_EVALUATION_JOBS, evaluation_jobs
    from vista_sql.physical.evaluate import DRIVER_ROWS

    assert evaluation_jobs(Estimate.exact(DRIVER_ROWS)) == 1
    assert evaluation_jobs(Estimate.exact(DRIVER_ROWS + 1)) == SPARK_EVALUATION_JOBS == 4
    assert evaluation_jobs(Estimate.absent()) == SPARK_EVALUATION_JOBS
