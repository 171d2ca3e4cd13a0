"""Successive halving over (layer, parameters) candidates: ``WITH (search = 'halving')``.

The schedule (pure), its price in the cost model and EXPLAIN (no Spark), and a search on Spark
with the tiny CNN: every candidate's last fit reported, one winner fitted on every training row
with the metrics an exhaustive fit of the same candidate gets.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from cost_support import resources, stats
from hypothesis import given
from hypothesis import strategies as st

import vista_sql
from vista_sql.catalog import roster
from vista_sql.cost_model.decide import decide
from vista_sql.cost_model.explain import explain_text
from vista_sql.datasets.foods import FoodsDataset, make_foods
from vista_sql.errors import VistaError
from vista_sql.logical.builder import build
from vista_sql.logical.plan import ModelSpec, Train
from vista_sql.logical.query import TransferQuery
from vista_sql.logical.search import (
    MIN_SAMPLE_ROWS,
    candidates,
    fits_on_rows,
    halving_rounds,
)


@given(st.integers(1, 200), st.integers(10, 10**7))
def test_each_round_halves_the_candidates_and_doubles_the_sample(count: int, rows: int) -> None:
    rounds = halving_rounds(count, rows)
    if count == 1:
        assert rounds == ()
        return
    assert rounds[0].candidates == count and len(rounds) <= math.ceil(math.log2(count))
    total = math.ceil(math.log2(count))
    floor = min(1.0, MIN_SAMPLE_ROWS / rows)
    for before, after in itertools.pairwise(rounds):
        assert after.candidates == math.ceil(before.candidates / 2)
    for current in rounds:  # the sample doubles each round, from 2**-R, never below the floor
        assert current.fraction == max(2.0 ** (current.number - 1 - total), floor)
    assert math.ceil(rounds[-1].candidates / 2) == 1  # then the winner, on every row
    assert all(r.rows(rows) >= min(MIN_SAMPLE_ROWS, rows) - 1e-9 for r in rounds)
    if rows >= MIN_SAMPLE_ROWS * 2 ** len(rounds):
        assert rounds[-1].fraction == 0.5
        assert fits_on_rows(count, rows) <= 2 + math.ceil(math.log2(count))


def test_candidates_are_layers_times_the_grid_in_order() -> None:
    model = ModelSpec("logreg", (("max_iter", 10),), (("reg_param", (0.01, 0.1, 1.0)),))
    found = candidates(("fc6", "fc7"), model)
    assert [c.describe() for c in found] == [
        "fc6 (reg_param = 0.01)",
        "fc6 (reg_param = 0.1)",
        "fc6 (reg_param = 1.0)",
        "fc7 (reg_param = 0.01)",
        "fc7 (reg_param = 0.1)",
        "fc7 (reg_param = 1.0)",
    ]
    assert found[1].spec(model) == ModelSpec("logreg", (("max_iter", 10), ("reg_param", 0.1)))


def query(options: str, layers: str = "conv4_6, conv5_1, conv5_2, conv5_3, fc6") -> TransferQuery:
    sql = (
        f"TRANSFER FEATURES OF 'images' AS i FROM CNN resnet50 WEIGHTS RANDOM SEED 7"
        f" LAYERS ({layers}) JOIN 'table.parquet' AS t ON i.id = t.id"
        f" TRAIN LOGREG (max_iter = 20, reg_param = (0.01, 0.1, 1.0)) LABEL label"
        f" WITH ({options})"
    )
    built = build(vista_sql.parse_one(sql), sql, roster())
    assert isinstance(built, TransferQuery)
    return built


def training_seconds(options: str) -> tuple[float, str]:
    decision = decide(query(options), roster(), stats=stats(images=20_000), resources=resources())
    plan = decision.chosen
    seconds = 0.0
    for facts in plan.facts.nodes:
        if isinstance(facts.node, Train):
            operator = plan.runtime.of(facts.number)
            assert operator is not None and operator.total.value is not None
            seconds += operator.total.value
    return seconds, explain_text(decision)


def test_the_cost_model_prices_the_search_and_explain_shows_its_rounds() -> None:
    """5 layers x 3 values on 16,000 training rows: 15 candidates, 4 rounds (15 on 1,000 rows, 8
    on 2,000, 4 on 4,000, 2 on 8,000), then the winner on all; an exhaustive grid search fits
    3 values x 3 folds + 1 per layer on every row."""
    exhaustive, plain = training_seconds("partitions = 4")
    halving, text = training_seconds("partitions = 4, search = 'halving'")
    assert 0 < halving < 0.4 * exhaustive
    assert "search" not in plain.split("== Alternatives")[0].split("== Estimate ==")[1]
    assert (
        "search       successive halving of 15 candidates (5 layers x 3 parameter sets):"
        " 15 on ~1,000 rows, 8 on ~2,000 rows, 4 on ~4,000 rows, 2 on ~8,000 rows, the winner"
        " on all ~16,000" in text
    )
    assert "search=halving" in text


def test_a_bad_search_is_refused() -> None:
    with pytest.raises(VistaError, match="search"):
        query("search = 'random'")


# --- on Spark ---------------------------------------------------------------------------------

ROWS = 1000


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return make_foods(
        tmp_path_factory.mktemp("halving") / "foods", rows=ROWS, seed=5, image_size=32
    )


def statement(
    foods: FoodsDataset, tiny: str, model: str, options: str, layers: str = "conv2, fc2"
) -> str:
    return (
        f"TRANSFER FEATURES OF '{foods.images_dir}' AS i FROM CNN {tiny}"
        f" LAYERS ({layers}) JOIN '{foods.table_path}' AS f ON i.id = f.id"
        f" TRAIN LOGREG ({model}) LABEL healthy VALIDATE 0.25 WITH (cache = false{options})"
    )


@pytest.mark.spark
@pytest.mark.tf
@pytest.mark.slow
def test_a_search_reports_every_candidate_and_fits_the_winner_on_every_row(
    spark: Any, tiny: str, foods: FoodsDataset, tmp_path: Path
) -> None:
    grid = "max_iter = 8, reg_param = (0.001, 0.1, 10.0)"
    result = vista_sql.execute(
        statement(foods, tiny, grid, ", search = 'halving'"), spark=spark, progress=False
    )
    fits = result.search
    assert len(fits) == 6 and sum(fit["winner"] for fit in fits) == 1
    rounds = halving_rounds(6, result.rows()[0]["validation_rows"] * 3)
    winner = next(fit for fit in fits if fit["winner"])
    full = max(fit["train_rows"] for fit in fits)
    assert winner["round"] == len(rounds) + 1 and winner["train_rows"] == full
    # how far each went: 6 in round 1 (on 200 of ~750 training rows: the smallest sample), 3 in
    # round 2 (200), 2 in round 3 (half), the winner on all
    assert [r.candidates for r in rounds] == [6, 3, 2]
    assert sorted(fit["round"] for fit in fits) == [1, 1, 1, 2, 3, 4]
    assert all(fit["train_rows"] < full for fit in fits if not fit["winner"])
    assert [row["layer"] for row in result.rows()] == ["fc2", "conv2"]
    assert result.best["layer"] == winner["layer"] and bool(result.best["winner"])
    # The winner's fit is what an exhaustive statement fitting that candidate alone gets.
    fixed = f"max_iter = 8, reg_param = {winner['params']['reg_param']}"
    alone = vista_sql.execute(
        statement(foods, tiny, fixed, "", winner["layer"]), spark=spark, progress=False
    )
    row = next(r for r in alone.rows() if r["layer"] == winner["layer"])
    best = result.best
    assert (row["accuracy"], row["f1"], row["auc"]) == (best["accuracy"], best["f1"], best["auc"])
