"""The downstream-model registry is the one place a model is known: a model registered there (and
nowhere else) is checked, costed, explained, trained and scored like the built-in ones."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vista_sql
from vista_sql.catalog import current
from vista_sql.cost_model.decide import decide
from vista_sql.cost_model.explain import explain_text
from vista_sql.cost_model.optimizer import Decision
from vista_sql.cost_model.resources import Resources
from vista_sql.datasets.foods import FoodsDataset, make_foods
from vista_sql.errors import SemanticError
from vista_sql.grammar.dialect import parse_one
from vista_sql.logical import models
from vista_sql.logical.builder import build
from vista_sql.logical.models.entry import DownstreamModel, float_spec, mllib
from vista_sql.logical.query import TransferQuery
from vista_sql.units import DOUBLE_BYTES, GiB

PACKAGE = Path(vista_sql.__file__).parent
ROWS = 48
"""Enough that each of two folds of the training rows holds both classes."""


TOY = DownstreamModel(
    name="toy_bayes",
    estimator=mllib("NaiveBayes"),
    # Gaussian: takes negative structured features, unlike the multinomial default
    estimator_args={"modelType": "gaussian"},
    params={"smoothing": float_spec("smoothing", 0)},
    iterations=lambda param, consts: 1.0,
    input_passes=lambda consts: 1.0,
    iteration_flops_per_value=2,
    training_value_bytes=DOUBLE_BYTES,
    iteration_scales_with_sets=False,
)
"""A model only this test knows: one pass over the data, no iterations."""


@pytest.fixture
def toy() -> Iterator[DownstreamModel]:
    models.register(TOY)
    try:
        yield TOY
    finally:
        models.unregister(TOY.name)


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return make_foods(tmp_path_factory.mktemp("toy") / "foods", rows=ROWS, seed=2, image_size=64)


def _statement(data: FoodsDataset, train: str) -> str:
    return (
        f"TRANSFER FEATURES OF '{data.images_dir}' AS i FROM CNN alexnet WEIGHTS RANDOM SEED 3"
        f" LAYERS (fc8) JOIN '{data.table_path}' AS f ON i.id = f.id"
        f" TRAIN {train} LABEL healthy VALIDATE 0.25"
    )


def _query(sql: str) -> TransferQuery:
    statement = build(parse_one(sql), sql)
    assert isinstance(statement, TransferQuery)
    return statement


def test_an_unregistered_model_is_refused_and_the_registry_lists_the_valid_ones(
    foods: FoodsDataset,
) -> None:
    with pytest.raises(SemanticError) as raised:
        _query(_statement(foods, "TOY_BAYES"))
    description = raised.value.description
    assert description is not None and description.startswith("Unknown model TOY_BAYES; ")
    valid = description.split("; ", 1)[1]
    assert "LOGREG" in valid and "TOY_BAYES" not in valid
    assert raised.value.highlight == "TOY_BAYES"


def test_a_registered_model_is_checked_and_costed_from_its_entry(
    foods: FoodsDataset, toy: DownstreamModel
) -> None:
    query = _query(_statement(foods, "TOY_BAYES (smoothing = 0.5)"))
    assert query.model.name == "toy_bayes"
    assert query.model.params == (("smoothing", 0.5),)
    with pytest.raises(SemanticError, match="Unknown parameter max_iter of TOY_BAYES"):
        _query(_statement(foods, "TOY_BAYES (max_iter = 3)"))
    with pytest.raises(SemanticError, match="smoothing"):
        _query(_statement(foods, "TOY_BAYES (smoothing = -1.0)"))

    resources = Resources(8 * GiB, 2, 1)
    toy_train = _train_seconds(decide(query, current(), resources=resources))
    logreg = _query(_statement(foods, "LOGREG (max_iter = 100)"))
    logreg_train = _train_seconds(decide(logreg, current(), resources=resources))
    # One pass without iterations costs less than a hundred L-BFGS iterations over the same data.
    assert 0 < toy_train < logreg_train


def _train_seconds(decision: Decision) -> float:
    assert "Train" in explain_text(decision)
    steps = dict(decision.chosen.runtime.by_step())
    assert steps["train"].value is not None
    return steps["train"].value


@pytest.mark.spark
@pytest.mark.slow
def test_a_registered_model_trains_and_scores_end_to_end_with_a_grid(
    spark: Any, foods: FoodsDataset, toy: DownstreamModel
) -> None:
    sql = _statement(foods, "TOY_BAYES (smoothing = (0.5, 2.0), folds = 2)")
    result = vista_sql.execute(sql, spark=spark, progress=False)
    run = result.runs[0]
    assert type(run.trained.model).__name__ == "NaiveBayesModel"
    assert run.trained.best_params["smoothing"] in (0.5, 2.0)
    assert run.trained.model.getOrDefault("smoothing") == run.trained.best_params["smoothing"]
    assert 0.0 <= run.trained.metrics["accuracy"] <= 1.0
    assert run.trained.train_rows + run.trained.validation_rows == ROWS
    assert "== Analyze: estimated vs measured ==" in result.explain()


MODEL_NAMES = re.compile(r"""["'](logreg|linear_svc|decision_tree|random_forest|gbt|mlp)["']""")


@pytest.mark.parametrize(
    "module",
    [
        "cost_model/facts.py",
        "cost_model/runtime.py",
        "cost_model/memory.py",
        "physical/train.py",
        "logical/builder.py",
    ],
)
def test_no_module_outside_the_registry_decides_by_a_model_name(module: str) -> None:
    source = (PACKAGE / module).read_text()
    assert MODEL_NAMES.findall(source) == []
