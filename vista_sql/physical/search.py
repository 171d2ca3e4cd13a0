"""Running a successive-halving search over the (layer, parameters) candidates
(``WITH (search = 'halving')``; the schedule: ``vista_sql.logical.search``).

Every layer's branch table is materialized first (the inference is the plan's, shared as in any
plan); then each round fits the surviving candidates on its sample of the training rows with
``physical.train.train`` and scores them on every held-out row, and the better half (rounded up)
goes on, ranked by AUC for a binary label, else weighted F1 (what a grid search ranks by); the
winner is fitted on every training row. Every candidate's last fit is kept: its round, its
sample's size and its metrics.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from vista_sql.logical.plan import ModelSpec, Value
from vista_sql.logical.search import Candidate, candidates, halving_rounds
from vista_sql.physical.train import Trained, split_counts, train

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass(frozen=True)
class CandidateFit:
    """A candidate's last fit: in which round (the winner's fit on every row is the round after
    the last), on how many training rows, with what metrics."""

    candidate: Candidate
    round: int
    trained: Trained
    won: bool = False

    def row(self) -> dict[str, Any]:
        return {
            "layer": self.candidate.layer,
            "params": dict(self.candidate.params),
            "round": self.round,
            "train_rows": self.trained.train_rows,
            **{name: self.trained.metrics.get(name) for name in ("accuracy", "f1", "auc")},
            "train_seconds": round(self.trained.train_seconds, 3),
            "winner": self.won,
        }


@dataclass(frozen=True)
class SearchOutcome:
    fits: tuple[CandidateFit, ...]
    """Every candidate's last fit, in the candidates' order."""
    rounds: int
    train_seconds: float
    """All fits' wall time (scoring included)."""
    history: tuple[CandidateFit, ...] = ()
    """Every fit of every round (a candidate once per round it took part in)."""

    @property
    def winner(self) -> CandidateFit:
        return next(fit for fit in self.fits if fit.won)

    def of_layer(self, layer: str) -> CandidateFit:
        """The layer's candidate that went furthest (the better metric among those that went
        as far): the winner for the winning layer."""
        mine = [fit for fit in self.fits if fit.candidate.layer == layer]
        return max(mine, key=lambda fit: (fit.won, fit.round, _ranked(fit.trained)))

    def layer_seconds(self, layer: str) -> float:
        """The layer's share of the search's wall time (its fits' share of all fits' time: fits
        of a round run at once), so the layers' shares add up to the search's time."""
        everyone = sum(_seconds(f) for f in self.history)
        mine = sum(_seconds(f) for f in self._all(layer))
        return self.train_seconds * mine / everyone if everyone > 0 else 0.0

    def _all(self, layer: str) -> list[CandidateFit]:
        return [fit for fit in self.history if fit.candidate.layer == layer]


def _seconds(fit: CandidateFit) -> float:
    return fit.trained.train_seconds + fit.trained.evaluate_seconds


PARALLEL_FITS = 4
"""Fits of one round run at once (Spark jobs from driver threads)."""


def _ranked(trained: Trained) -> float:
    """The metric the search ranks by (binary labels: AUC; else weighted F1); NaN ranks last."""
    value = trained.metrics.get("auc")
    if value is None:
        value = trained.metrics.get("f1")
    return -math.inf if value is None or value != value else float(value)


def halving_search(
    tables: dict[str, DataFrame],
    model: ModelSpec,
    *,
    n_features: dict[str, int],
    n_classes: int,
    validate: float,
    seed: int,
    train_rows: int,
    on_round: Any = None,
) -> SearchOutcome:
    """Successive halving over every (layer of ``tables``, grid point of ``model``)."""
    found = candidates(tuple(tables), model)
    order = {candidate: index for index, candidate in enumerate(found)}
    started = time.perf_counter()
    last: dict[Candidate, CandidateFit] = {}
    history: list[CandidateFit] = []
    lock = threading.Lock()
    alive = list(found)
    rounds = halving_rounds(len(found), train_rows)
    fractions = tuple(r.fraction for r in rounds if r.fraction < 1.0)
    # each layer's split and samples counted once (one job), not once a fit
    counts = {
        layer: split_counts(table, validate, seed, fractions) for layer, table in tables.items()
    }

    def fit(candidate: Candidate, number: int, sample: float) -> CandidateFit:
        trained = train(
            tables[candidate.layer],
            candidate.spec(model),
            n_features=n_features[candidate.layer],
            n_classes=n_classes,
            validate=validate,
            seed=seed,
            sample=sample,
            counts=counts[candidate.layer],
        )
        params: dict[str, Value] = {**dict(model.params), **dict(candidate.params)}
        done = CandidateFit(candidate, number, replace(trained, best_params=params))
        with lock:
            last[candidate] = done
            history.append(done)
        return done

    for current in rounds:
        if on_round is not None:
            on_round(current)
        # A fit on a small sample waits on Spark's per-job latency more than it computes: the
        # round's fits run as concurrent jobs (MLlib's CrossValidator ``parallelism`` does the
        # same), in the candidates' order of results.
        with ThreadPoolExecutor(min(PARALLEL_FITS, len(alive))) as pool:
            scored = list(pool.map(lambda c, r=current: fit(c, r.number, r.fraction), alive))
        keep = math.ceil(len(alive) / 2)
        best = sorted(scored, key=lambda f: (-_ranked(f.trained), order[f.candidate]))[:keep]
        alive = sorted((f.candidate for f in best), key=order.__getitem__)
    winner = alive[0]
    final = fit(winner, len(rounds) + 1, 1.0)
    last[winner] = replace(final, won=True)
    history[-1] = last[winner]
    return SearchOutcome(
        fits=tuple(last[c] for c in found),
        rounds=len(rounds),
        train_seconds=time.perf_counter() - started,
        history=tuple(history),
    )
