"""The plan renderer: numbered operators, shared work printed once, annotations, JSON."""

from __future__ import annotations

from vista_sql.catalog import roster
from vista_sql.grammar.dialect import parse_one
from vista_sql.logical.builder import build
from vista_sql.logical.driver import alternatives
from vista_sql.logical.plan import Infer, Join, Plan, Workload
from vista_sql.logical.query import TransferQuery
from vista_sql.logical.render import render_json, render_text

SQL = (
    "TRANSFER FEATURES OF 'images' AS i FROM CNN alexnet LAYERS (fc6, fc7) "
    "JOIN 'foods.csv' AS f ON i.id = f.id TRAIN LOGREG LABEL healthy"
)


def plans() -> dict[str, Workload]:
    query = build(parse_one(SQL), SQL, roster())
    assert isinstance(query, TransferQuery)
    return {alternative.name: alternative.plan for alternative in alternatives(query, roster())}


def test_shared_work_is_drawn_once_and_referred_to_by_number() -> None:
    text = render_text(plans()["eager/before_join/recompute"])
    assert text.splitlines() == [
        " 1  Workload layers=[fc7, fc6]",
        " 2    Evaluate fc7 [accuracy, f1, auc]",
        " 3      Train logreg() on fc7 label=healthy validate=0.2 seed=2019",
        " 4        Assemble [all numeric] + fc7 label=healthy",
        " 5          Join inner ON i.id = f.id",
        " 6            Infer alexnet (imagenet) image -> {fc6, fc7} pooling=max2x2",
        " 7              Decode 227x227 RGB, caffe preprocessing",
        " 8                ImageScan 'images' AS i",
        " 9            TableScan 'foods.csv' AS f features=[all numeric]",
        "10    Evaluate fc6 [accuracy, f1, auc]",
        "11      Train logreg() on fc6 label=healthy validate=0.2 seed=2019",
        "12        Assemble [all numeric] + fc6 label=healthy",
        "            (reused 5) Join inner ON i.id = f.id",
    ]


def test_the_text_depends_on_structure_and_sharing_only() -> None:
    first, second = plans(), plans()
    for name, plan in first.items():
        assert plan is not second[name]
        assert render_text(plan) == render_text(second[name])


def test_annotations_are_printed_beside_each_operator_once() -> None:
    def annotate(node: Plan) -> str:
        return "~shared" if isinstance(node, Join) else ""

    lines = render_text(plans()["eager/before_join/recompute"], annotate).splitlines()
    assert lines[4] == " 5          Join inner ON i.id = f.id  ~shared"
    assert lines[-1] == "            (reused 5) Join inner ON i.id = f.id"
    assert sum("~shared" in line for line in lines) == 1


def test_json_nests_operators_with_their_fields_and_refers_to_shared_ones() -> None:
    document = render_json(plans()["eager/before_join/recompute"], lambda node: node.describe()[:4])
    assert document["id"] == 1 and document["operator"] == "Workload"
    assert document["fields"] == {"layers": ["fc7", "fc6"]}
    assert document["annotation"] == "Work"
    first, second = document["children"]
    join = first["children"][0]["children"][0]["children"][0]
    assert (join["id"], join["operator"]) == (5, "Join")
    assert join["fields"] == {"left_key": "i.id", "right_key": "f.id", "strategy": None}
    infer = join["children"][0]
    assert infer["fields"]["weights"] == {"kind": "imagenet", "seed": None, "path": None}
    assert infer["fields"]["outputs"] == [
        {"layer": "fc6", "form": "features"},
        {"layer": "fc7", "form": "features"},
    ]
    reused = second["children"][0]["children"][0]["children"][0]
    assert reused == {"reused": 5, "operator": "Join", "description": "Join inner ON i.id = f.id"}


def test_every_operator_is_numbered_once_in_pre_order() -> None:
    for plan in plans().values():
        text = render_text(plan)
        numbers = [int(line.split()[0]) for line in text.splitlines() if line[:3].strip()]
        assert numbers == list(range(1, len(list(plan.walk())) + 1))
        inferences = [node for node in plan.walk() if isinstance(node, Infer)]
        numbered_infers = [
            line for line in text.splitlines() if line[:3].strip() and " Infer " in line
        ]
        assert len(numbered_infers) == len(inferences)
