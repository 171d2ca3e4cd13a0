"""Estimates: precision propagates, unknown stays unknown, nothing is ever negative."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vista_sql.cost_model.estimate import (
    ABSENT,
    Estimate,
    Precision,
    format_bytes,
    format_seconds,
    largest,
    smallest,
    total,
)

values = st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False)
precisions = st.sampled_from([Precision.EXACT, Precision.INEXACT, Precision.ABSENT])


@st.composite
def estimates(draw: st.DrawFn) -> Estimate:
    precision = draw(precisions)
    if precision is Precision.ABSENT:
        return ABSENT
    return Estimate(draw(values), precision)


def test_precision_marks_are_the_ones_explain_prints() -> None:
    assert Estimate.exact(3).format() == "=3"
    assert Estimate.inexact(3).format() == "~3"
    assert ABSENT.format("bytes") == "?"


def test_unknown_is_never_a_number() -> None:
    assert not ABSENT.known
    assert ABSENT.value is None
    assert ABSENT.lower_bound == 0
    assert ABSENT.or_infinity() == math.inf
    assert (ABSENT + 5).format() == "?"
    assert (Estimate.exact(2) * ABSENT) is ABSENT


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_negative_or_nan_estimates_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="never negative"):
        Estimate.inexact(bad)


def test_arithmetic_refuses_negative_scalars() -> None:
    with pytest.raises(ValueError, match="negative"):
        Estimate.exact(1) * -2
    with pytest.raises(ValueError, match="negative"):
        Estimate.exact(1) + -2


def test_value_and_precision_must_agree() -> None:
    with pytest.raises(ValueError):
        Estimate(None, Precision.EXACT)
    with pytest.raises(ValueError):
        Estimate(1.0, Precision.ABSENT)


@given(estimates(), estimates())
def test_arithmetic_keeps_the_weakest_precision_and_stays_non_negative(
    a: Estimate, b: Estimate
) -> None:
    for result in (a + b, a * b, a.minus_clamped(b), largest([a, b]), smallest(a, b)):
        weakest = a.precision.weakest(b.precision)
        if weakest is Precision.ABSENT:
            assert result is ABSENT or not result.known
        else:
            assert result.known
            assert result.value is not None and result.value >= 0
            assert result.precision is weakest


@given(st.lists(estimates(), max_size=6))
def test_total_is_unknown_exactly_when_a_part_is(parts: list[Estimate]) -> None:
    result = total(parts)
    assert result.known == all(p.known for p in parts)
    if result.known:
        assert result.value == pytest.approx(sum(p.lower_bound for p in parts))


@given(values, values)
def test_exact_times_exact_is_exact(a: float, b: float) -> None:
    assert (Estimate.exact(a) * Estimate.exact(b)).precision is Precision.EXACT
    assert (Estimate.exact(a) * 2).precision is Precision.EXACT
    assert Estimate.exact(a).map(lambda v: v * 2).precision is Precision.INEXACT


def test_formats() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1.5 * 2**30) == "1.5 GiB"
    assert format_seconds(0.42) == "0.42 s"
    assert format_seconds(45) == "45 s"
    assert format_seconds(1200) == "20 min"
    assert format_seconds(3 * 3600) == "3.0 h"
    assert Estimate.inexact(16_000).format("rows") == "~16.0K"


def test_calibration_rows_compare_prediction_and_measurement() -> None:
    from vista_sql.cost_model.calibration import Measurement, Prediction, compare, error_table

    predictions = [Prediction("a", 10.0, 2e9), Prediction("b", None, None)]
    measurements = [
        Measurement("b", 5.0, 1e9),
        Measurement("a", 12.0, 2.6e9),
        Measurement("c", 1, 1),
    ]
    rows = compare(predictions, measurements)
    assert [r.label for r in rows] == ["b", "a"]  # measured order, unmatched left out
    b, a = rows
    assert a.time_ratio == pytest.approx(1.2)
    assert a.memory_ratio == pytest.approx(1.3)
    assert not a.memory_on_target  # 30% off
    assert b.time_ratio is None and not b.memory_on_target
    text = error_table(predictions, measurements)
    assert "MISS" in text and "1.30" in text
