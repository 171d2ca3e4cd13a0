"""The optimizer's side of the feature store: stored layers as sources (no Spark, no TensorFlow).

``use_stored_layers`` replaces an inference from the images by a scan of the stored layer, or by an
inference resuming from the highest stored layer below; the driver offers plans with and without
it and the cost model picks; EXPLAIN names what is read and from where.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from cost_support import GiB, resources, stats

import vista_sql
from vista_sql.catalog import roster
from vista_sql.cost_model.decide import decide
from vista_sql.cost_model.explain import explain_text
from vista_sql.logical.builder import build
from vista_sql.logical.columns import problems, workload_outputs
from vista_sql.logical.driver import alternatives
from vista_sql.logical.plan import (
    Decode,
    ImageFiles,
    ImageScan,
    Infer,
    LayerOut,
    Plan,
    StoredScan,
    UnionAll,
    WeightsSpec,
)
from vista_sql.logical.query import TransferQuery
from vista_sql.logical.stored import StoredLayer, provides

SEVEN = WeightsSpec("random", seed=7)


def query(layers: str, options: str = "", cnn: str = "vgg16") -> TransferQuery:
    with_clause = f" WITH ({options})" if options else ""
    sql = (
        f"TRANSFER FEATURES OF 'images' AS i FROM CNN {cnn} WEIGHTS RANDOM SEED 7"
        f" LAYERS ({layers}) JOIN 'table.parquet' AS t ON i.id = t.id"
        f" TRAIN LOGREG (max_iter = 10) LABEL label{with_clause}"
    )
    built = build(vista_sql.parse_one(sql), sql, roster())
    assert isinstance(built, TransferQuery)
    return built


def entry(
    layer: str,
    form: str = "features",
    pooling: str = "max2x2",
    weights: WeightsSpec = SEVEN,
    cnn: str = "vgg16",
    rows: int = 2000,
) -> StoredLayer:
    return StoredLayer(
        cnn=cnn,
        weights=weights,
        layer=layer,
        form=form,  # type: ignore[arg-type]
        pooling=pooling,
        location=f"/store/{layer}.{form}",
        rows=rows,
        file_bytes=rows * 16_000,
        key_type="bigint",
    )


def nodes(plan: Plan, kind: type[Plan]) -> list[Plan]:
    return [node for node in plan.walk() if isinstance(node, kind)]


def test_every_layer_stored_gives_a_plan_without_images_and_it_is_chosen() -> None:
    stored = (entry("fc6"), entry("fc7"), entry("conv5_3"))
    decision = decide(
        query("conv5_3, fc6, fc7"), roster(), stats=stats(), resources=resources(), stored=stored
    )
    chosen = decision.chosen.plan
    assert decision.chosen.alternative.endswith("/stored")
    assert nodes(chosen, Infer) == [] and nodes(chosen, Decode) == []
    assert nodes(chosen, ImageScan) == []
    scans = nodes(chosen, StoredScan)
    assert sorted(n.layer for n in scans if isinstance(n, StoredScan)) == ["conv5_3", "fc6", "fc7"]
    text = explain_text(decision)
    assert "reads stored vgg16.conv5_3 pooling=max2x2 (random seed 7) from /store/conv5_3" in text
    # Every plan that infers from the images is still offered, and loses on time.
    from_images = [p for p in decision.alternatives if not p.alternative.endswith("/stored")]
    assert from_images and all(decision.reason(p).startswith("slower") for p in from_images)


def test_a_layer_not_stored_resumes_from_the_highest_stored_layer_below() -> None:
    # fc6's features are its resume tensor (an fc layer stores its own output to resume from);
    # conv5_3's pooled features are not, so fc7 resumes from fc6, not from conv5_3.
    stored = (entry("conv5_3"), entry("fc6"))
    plans = alternatives(query("fc7, fc8"), roster(), stored=stored)
    lazy = next(a for a in plans if a.name == "lazy/before_join/recompute/stored")
    infers = [n for n in nodes(lazy.plan, Infer) if isinstance(n, Infer)]
    assert {n.start for n in infers} == {"fc6"}
    assert all(isinstance(n.child, StoredScan) and n.child.form == "resume" for n in infers)
    assert nodes(lazy.plan, Decode) == []
    eager = next(a for a in plans if "eager/before_join/recompute/stored" in a.names)
    merged = [n for n in nodes(eager.plan, Infer) if isinstance(n, Infer)]
    assert len(merged) == 1 and merged[0].layers == ("fc7", "fc8")


def test_entries_of_other_weights_or_pooling_are_not_sources() -> None:
    other_seed = (entry("fc6", weights=WeightsSpec("random", seed=8)),)
    other_pooling = (entry("conv5_3", pooling="avg"),)
    for stored in (other_seed, other_pooling):
        plans = alternatives(query("conv5_3, fc6"), roster(), stored=stored)
        assert all(nodes(a.plan, StoredScan) == [] for a in plans)
        assert not any(a.name.endswith("/stored") for a in plans)


def test_what_an_entry_can_stand_for() -> None:
    vgg16 = roster().cnn("vgg16")
    assert vgg16 is not None
    fc6, conv5_3 = vgg16.layer("fc6"), vgg16.layer("conv5_3")
    assert fc6 is not None and conv5_3 is not None
    assert provides(fc6, entry("fc6"), "max2x2") == {"features", "resume"}
    assert provides(fc6, entry("fc6", "resume"), "avg") == {"features", "resume"}
    assert provides(conv5_3, entry("conv5_3"), "max2x2") == {"features"}
    assert provides(conv5_3, entry("conv5_3", "resume"), "max2x2") == {"resume"}
    assert provides(conv5_3, entry("conv5_3"), "avg") == frozenset()
    assert provides(fc6, entry("fc7"), "max2x2") == frozenset()
    # Bad images in an entry: features still (each bad row reported), never a resume tensor.
    assert provides(fc6, replace(entry("fc6"), errors=1), "max2x2") == {"features"}
    assert provides(conv5_3, replace(entry("conv5_3", "resume"), errors=2), "max2x2") == set()


def test_a_stored_resume_tensor_feeds_a_staged_plan() -> None:
    stored = (entry("conv5_3", "resume"),)
    plans = alternatives(query("fc6, fc7, fc8", "inference = staged"), roster(), stored=stored)
    staged = next(a for a in plans if "staged/before_join/persist/stored" in a.names)
    scans = [n for n in nodes(staged.plan, StoredScan) if isinstance(n, StoredScan)]
    assert [(s.layer, s.form) for s in scans] == [("conv5_3", "resume")]
    assert nodes(staged.plan, Decode) == []


def test_overrides_filter_stored_plans_like_the_others() -> None:
    stored = (entry("fc6"),)
    decision = decide(
        query("fc6, fc7", "inference = staged, placement = after_join"),
        roster(),
        stats=stats(),
        resources=resources(),
        stored=stored,
    )
    for plan in decision.alternatives:
        assert any(name.startswith("staged/after_join/") for name in plan.names), plan.names


def test_reading_a_stored_layer_costs_by_its_size() -> None:
    small = (entry("fc6", rows=2000),)
    large = (replace(small[0], file_bytes=small[0].file_bytes * 50),)
    times = []
    for stored in (small, large):
        decision = decide(
            query("fc6"), roster(), stats=stats(), resources=resources(8 * GiB), stored=stored
        )
        plan = next(p for p in decision.alternatives if p.alternative.endswith("/stored"))
        scan = next(f for f in plan.facts.nodes if isinstance(f.node, StoredScan))
        operator = plan.runtime.of(scan.number)
        assert operator is not None and operator.total.known
        assert scan.rows.value == 2000 and scan.rows.precision.value == "="
        times.append(operator.total.lower_bound)
    assert times[1] > times[0] > 0


def test_explain_is_deterministic_with_stored_layers() -> None:
    stored = (entry("fc7"), entry("fc6"))
    texts = {
        explain_text(
            decide(query("fc6, fc7"), roster(), stats=stats(), resources=resources(), stored=s)
        )
        for s in (stored, tuple(reversed(stored)))
    }
    assert len(texts) == 1


@pytest.mark.parametrize("layers", ["fc8", "conv1_2, fc8", "conv4_3, conv5_3, fc7"])
def test_stored_plans_keep_the_workload(layers: str) -> None:
    stored = (entry("conv4_3", "resume"), entry("fc7"), entry("conv1_2"))
    lazy = alternatives(query(layers), roster())
    with_store = alternatives(query(layers), roster(), stored=stored)
    assert any(a.stored for a in with_store)
    for alternative in with_store:
        assert workload_outputs(alternative.plan) == workload_outputs(lazy[0].plan)
        assert problems(alternative.plan, roster()) == []


def partial_entry(layer: str, added: int = 200, removed: int = 100) -> StoredLayer:
    """An entry of 2,000 images written before ``added`` images were added and ``removed``
    removed (the statement's directory: 1,900 of them kept plus the added ones)."""
    return replace(
        entry(layer),
        rows=2000 - removed,
        dropped=ImageFiles.of(f"{i}.jpg" for i in range(removed)),
        missing=ImageFiles.of(f"{i}.jpg" for i in range(2000, 2000 + added)),
    )


def test_an_entry_of_fewer_images_is_read_beside_an_inference_of_the_others() -> None:
    """The added images are inferred, the rest read; with several layers stored so, the added
    images' inferences are one shared inference (eager) or one chain of stages (staged), like
    the images' in a plan without the store."""
    stored = (partial_entry("fc6"), partial_entry("fc7"))
    data = stats(images=2100)
    decision = decide(query("fc6, fc7"), roster(), stats=data, resources=resources(), stored=stored)
    assert decision.chosen.alternative.endswith("/stored")
    plan = decision.chosen.plan
    unions = [n for n in nodes(plan, UnionAll) if isinstance(n, UnionAll)]
    assert len(unions) == 2
    for union in unions:
        read, inferred = union.inputs
        assert isinstance(read, StoredScan) and read.rows == 1900
        scans = [n for n in inferred.walk() if isinstance(n, ImageScan)]
        assert len(scans) == 1 and scans[0].files is not None and scans[0].files.count == 200
    assert [n for n in plan.walk() if isinstance(n, ImageScan) and n.files is None] == []
    inferences = {id(n) for u in unions for n in u.inputs[1].walk() if isinstance(n, Infer)}
    assert len(inferences) <= 2  # eager: one for both; staged: fc6, then fc7 resuming from it
    scan = next(f for f in decision.chosen.facts.nodes if isinstance(f.node, ImageScan))
    assert scan.rows.value == 200
    union = next(f for f in decision.chosen.facts.nodes if isinstance(f.node, UnionAll))
    assert union.rows.value == 2100
    text = explain_text(decision)
    assert "only the 200 images new or changed since stored" in text
    assert "1,900 rows (not the 100 images removed or changed since)" in text
    assert "UnionAll of 2 inputs: stored rows, then inferred rows" in text
    for alternative in decision.alternatives:
        assert problems(alternative.plan, roster()) == []


def test_reading_most_of_a_layer_beats_inferring_it_all_and_costs_more_with_more_missing() -> None:
    def stored_plan_seconds(added: int) -> float:
        data = stats(images=2000 + added)
        decision = decide(
            query("fc7"),
            roster(),
            stats=data,
            resources=resources(),
            stored=(partial_entry("fc7", added=added, removed=0),),
        )
        assert decision.chosen.alternative.endswith("/stored")
        chosen = decision.chosen.runtime.total.value
        assert chosen is not None
        return chosen

    assert stored_plan_seconds(20) < stored_plan_seconds(200) < stored_plan_seconds(800)


def test_a_missing_resume_tensor_is_inferred_for_the_added_images_only() -> None:
    stored = (partial_entry("fc6"),)
    plans = alternatives(query("fc7"), roster(), stored=stored)
    lazy = next(a for a in plans if a.name == "lazy/before_join/recompute/stored")
    (resumed,) = [n for n in nodes(lazy.plan, Infer) if isinstance(n, Infer) and n.start]
    assert resumed.start == "fc6" and isinstance(resumed.child, UnionAll)
    read, inferred = resumed.child.inputs
    assert isinstance(read, StoredScan) and read.form == "resume"
    assert isinstance(inferred, Infer) and inferred.outputs == (LayerOut("fc6", "resume"),)
