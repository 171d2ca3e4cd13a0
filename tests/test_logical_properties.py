"""Properties of the logical layer over random statements and random checked queries.

- every alternative keeps the lazy plan's (layer, model) outputs and is well formed;
- the driver's output is a fixed point: running its batches again changes nothing;
- the alternatives cover the twelve knob settings exactly once, and differ from each other;
- eager and staged plans infer from the image once, the lazy plan once per layer;
- checking a random statement raises nothing but a VistaError, and SPEC-valid statements check.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import statements, transfer_statements

from vista_sql.catalog import POOLINGS, roster
from vista_sql.errors import SemanticError, VistaError
from vista_sql.grammar.dialect import parse_one
from vista_sql.logical.builder import build
from vista_sql.logical.columns import problems, workload_outputs
from vista_sql.logical.dag import sharing_key
from vista_sql.logical.driver import (
    INFERENCES,
    PERSISTS,
    PLACEMENTS,
    alternative_name,
    alternatives,
    batches_for,
    run_batches,
)
from vista_sql.logical.lazy import lazy_plan
from vista_sql.logical.plan import Infer, ModelSpec, Pool, SourceRef, WeightsSpec
from vista_sql.logical.query import ExplainStatement, Options, TransferQuery
from vista_sql.logical.rules import RuleContext

CATALOG = roster()

MODELS = [
    ModelSpec("logreg", params=(("max_iter", 10),)),
    ModelSpec("logreg", grid=(("reg_param", (0.01, 0.1)),), folds=2),
    ModelSpec("random_forest", params=(("num_trees", 5),)),
]


@st.composite
def queries(draw: st.DrawFn) -> TransferQuery:
    """A checked query: any roster CNN, any non-empty set of its layers, any pooling."""
    cnn = draw(st.sampled_from(CATALOG.cnns))
    layers = draw(st.lists(st.sampled_from(cnn.layer_names), min_size=1, unique=True))
    layers.sort(key=cnn.layer_names.index, reverse=True)
    return TransferQuery(
        sql="",
        image_source=SourceRef("path", "images"),
        image_alias="i",
        image_column=None,
        image_key="id",
        cnn=cnn.name,
        weights=draw(st.sampled_from([WeightsSpec("imagenet"), WeightsSpec("random", seed=3)])),
        layers=tuple(layers),
        table_source=SourceRef("table", "foods"),
        table_alias="f",
        table_key="id",
        features=draw(st.sampled_from([None, ("x1", "x2")])),
        model=draw(st.sampled_from(MODELS)),
        label="healthy",
        options=Options(conv_pooling=draw(st.sampled_from(POOLINGS))),
    )


@settings(max_examples=40, deadline=None)
@given(queries())
def test_alternatives_keep_the_outputs_and_are_fixed_points(query: TransferQuery) -> None:
    start = lazy_plan(query, CATALOG)
    expected = workload_outputs(start)
    assert {layer for layer, _ in expected} == set(query.layers)
    found = alternatives(query, CATALOG)
    for alternative in found:
        plan = alternative.plan
        assert workload_outputs(plan) == expected, alternative.name
        assert plan.layers == query.layers
        assert problems(plan, CATALOG) == []
        assert not any(isinstance(node, Pool) for node in plan.walk()), "pooling is fused"
        ctx = RuleContext(catalog=CATALOG, placement=alternative.placement)
        again, _ = run_batches(plan, batches_for(alternative.inference, alternative.persist), ctx)
        assert again is plan, alternative.name


@settings(max_examples=40, deadline=None)
@given(queries())
def test_alternatives_cover_every_knob_setting_once_and_differ(query: TransferQuery) -> None:
    found = alternatives(query, CATALOG)
    named = [name for alternative in found for name in alternative.names]
    every = [
        alternative_name(inference, placement, persist)
        for inference in INFERENCES
        for placement in PLACEMENTS
        for persist in PERSISTS
    ]
    assert sorted(named) == sorted(every)
    assert len({sharing_key(alternative.plan) for alternative in found}) == len(found)
    for alternative in found:
        from_image = [
            node for node in alternative.plan.walk() if isinstance(node, Infer) and not node.start
        ]
        if alternative.inference == "lazy":
            assert len(from_image) == len(query.layers)
        else:
            assert len(from_image) == 1


@settings(max_examples=40, deadline=None)
@given(transfer_statements(valid=True))
def test_valid_looking_statements_check_or_fail_with_a_semantic_error(sql: str) -> None:
    tree = parse_one(sql)
    try:
        query = build(tree, sql, CATALOG)
    except SemanticError as error:
        # The strategy draws LOGREG's parameters for every model, and folds without a grid:
        # those are the only things in its statements that MLlib would reject.
        assert error.description is not None and error.line is not None
        assert error.description.startswith(("Unknown parameter", "folds sets")), error
        return
    assert isinstance(query, TransferQuery)
    expected = workload_outputs(lazy_plan(query, CATALOG))
    for alternative in alternatives(query, CATALOG):
        assert workload_outputs(alternative.plan) == expected


@settings(max_examples=60, deadline=None)
@given(statements())
def test_random_statements_raise_nothing_but_vista_errors(sql: str) -> None:
    tree = parse_one(sql)
    try:
        statement = build(tree, sql, CATALOG)
    except VistaError:
        return
    if isinstance(statement, ExplainStatement):
        statement = statement.query
    if isinstance(statement, TransferQuery):
        assert statement.layers
