"""Successive halving over (layer, parameters) candidates: ``WITH (search = 'halving')``.

Layer choice is the question a transfer answers, and with many candidate layers times a parameter
grid, fitting every (layer, parameters) pair on every training row is wasteful when most are
clearly worse. Successive halving (Jamieson & Talwalkar 2016; Li et al.'s Hyperband builds on it)
fits every candidate on a small sample of the training rows, keeps the better half by the
validation metric, doubles the sample and repeats until one is left; the winner is then fitted on
every training row. The CNN inference is shared as in any plan: each layer's features are
computed once, and only training is searched.

The schedule depends only on the number of candidates and of training rows, so the cost model
prices it, EXPLAIN shows it and the executor runs it from the same :func:`halving_rounds`. With
``C`` candidates there are ``R = ceil(log2 C)`` rounds; round ``i`` (from 1) fits the survivors
on ``2**(i - 1 - R)`` of the training rows (at least ``MIN_SAMPLE_ROWS``), so the last round
fits two on half of them. Samples are nested (a row in one round's sample is in every later
round's: ``physical.train.sample_bucket``), and the candidates' order (layers bottom-up, then
the grid in the order written) breaks ties.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

from vista_sql.logical.plan import ModelSpec, Value

Search = Literal["exhaustive", "halving"]

MIN_SAMPLE_ROWS = 200
"""The smallest sample a round fits on (rows): fewer leave a logistic regression's validation
metric mostly noise (its standard error at 200 rows is about 0.03 in AUC)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One (layer, parameters) pair the search fits."""

    layer: str
    params: tuple[tuple[str, Value], ...]

    def describe(self) -> str:
        shown = ", ".join(f"{k} = {v!r}" for k, v in self.params)
        return f"{self.layer} ({shown})" if shown else self.layer

    def spec(self, model: ModelSpec) -> ModelSpec:
        """``model`` with this candidate's grid values as fixed parameters, and no grid."""
        fixed = dict(model.params)
        fixed.update(self.params)
        return ModelSpec(model.name, tuple(fixed.items()), (), model.folds)


@dataclass(frozen=True, slots=True)
class Round:
    """One round: how many candidates it fits, on what share of the training rows."""

    number: int
    candidates: int
    fraction: float

    def rows(self, train_rows: float) -> float:
        return train_rows * self.fraction


def candidates(layers: tuple[str, ...], model: ModelSpec) -> tuple[Candidate, ...]:
    """Every (layer, grid point): ``layers`` in the order given, the grid in the order written."""
    names = [name for name, _ in model.grid]
    points = list(itertools.product(*(values for _, values in model.grid))) or [()]
    return tuple(
        Candidate(layer, tuple(zip(names, point, strict=True)))
        for layer in layers
        for point in points
    )


def halving_rounds(count: int, train_rows: float) -> tuple[Round, ...]:
    """The rounds for ``count`` candidates over ``train_rows`` training rows (none for one
    candidate: it is fitted on every row at once). The winner's fit on every row follows them."""
    if count <= 1:
        return ()
    total = math.ceil(math.log2(count))
    floor = min(1.0, MIN_SAMPLE_ROWS / train_rows) if train_rows > 0 else 1.0
    rounds: list[Round] = []
    remaining = count
    for index in range(total):
        if remaining <= 1:
            break
        fraction = max(2.0 ** (index - total), floor)
        rounds.append(Round(index + 1, remaining, min(fraction, 1.0)))
        remaining = math.ceil(remaining / 2)
    return tuple(rounds)


def fits_on_rows(count: int, train_rows: float) -> float:
    """Row-fits of the whole search (each fit weighted by its share of the rows), the winner's
    included: what its training costs against an exhaustive search's ``count``."""
    return sum(r.candidates * r.fraction for r in halving_rounds(count, train_rows)) + 1.0


def describe_rounds(count: int, train_rows: float, layers: int) -> str:
    """EXPLAIN's line: ``24 candidates (8 layers x 3 parameter sets): 24 on ~500 rows, ...``."""
    rounds = halving_rounds(count, train_rows)
    sets = count // max(layers, 1)
    shown = [f"{r.candidates} on ~{r.rows(train_rows):,.0f} rows" for r in rounds]
    shown.append(f"the winner on all ~{train_rows:,.0f}")
    return (
        f"successive halving of {count} candidates ({layers} layers x {sets} parameter sets):"
        f" {', '.join(shown)} ({fits_on_rows(count, train_rows):.1f} full fits' rows against"
        f" {count} exhaustive)"
    )
