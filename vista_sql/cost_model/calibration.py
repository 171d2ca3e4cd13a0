"""Hooks to hold the cost model to account: predicted vs measured runtime and peak memory.

The calibration benchmark (``benchmarks/bench_calibration.py runs``) runs plans, measures them,
and compares with what the model predicted. Peak memory is the whole process tree's (the driver's
Python, the JVM, the PySpark daemon and every Python worker, as ``physical.monitor`` samples it),
since that is what a node's memory limit applies to. The target is a memory ratio (measured /
predicted) within 1 +- 0.25.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vista_sql.cost_model.estimate import format_seconds
from vista_sql.units import format_bytes

if TYPE_CHECKING:
    from vista_sql.cost_model.optimizer import PhysicalPlan

MEMORY_TARGET = 0.25
"""Largest acceptable relative error of the predicted peak memory."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the cost model predicted for one labelled run (None: unknown)."""

    label: str
    seconds: float | None
    peak_bytes: float | None


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one labelled run measured."""

    label: str
    seconds: float
    peak_bytes: float


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    """Prediction beside measurement, with the error ratios (measured / predicted)."""

    label: str
    predicted_seconds: float | None
    measured_seconds: float
    predicted_peak: float | None
    measured_peak: float

    @property
    def time_ratio(self) -> float | None:
        if not self.predicted_seconds:
            return None
        return self.measured_seconds / self.predicted_seconds

    @property
    def memory_ratio(self) -> float | None:
        if not self.predicted_peak:
            return None
        return self.measured_peak / self.predicted_peak

    @property
    def memory_on_target(self) -> bool:
        ratio = self.memory_ratio
        return ratio is not None and abs(ratio - 1) <= MEMORY_TARGET


def prediction_of(label: str, plan: PhysicalPlan) -> Prediction:
    """The prediction of a ``PhysicalPlan`` (``Decision.chosen`` or any alternative)."""
    return Prediction(label, plan.time.value, plan.peak.value)


def compare(
    predictions: Iterable[Prediction], measurements: Iterable[Measurement]
) -> list[CalibrationRow]:
    """Rows for the labels present on both sides, in the measurements' order."""
    predicted = {p.label: p for p in predictions}
    rows = []
    for measured in measurements:
        prediction = predicted.get(measured.label)
        if prediction is None:
            continue
        rows.append(
            CalibrationRow(
                measured.label,
                prediction.seconds,
                measured.seconds,
                prediction.peak_bytes,
                measured.peak_bytes,
            )
        )
    return rows


def error_table(predictions: Iterable[Prediction], measurements: Iterable[Measurement]) -> str:
    """A plain-text table of the comparison (for the README and the benchmark's output)."""
    rows = compare(predictions, measurements)
    header = (
        f"{'run':<40} {'pred time':>10} {'meas time':>10} {'ratio':>6}"
        f" {'pred peak':>10} {'meas peak':>10} {'ratio':>6}  target"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.label:<40} {_seconds(row.predicted_seconds):>10}"
            f" {format_seconds(row.measured_seconds):>10} {_ratio(row.time_ratio):>6}"
            f" {format_bytes(row.predicted_peak):>10} {format_bytes(row.measured_peak):>10}"
            f" {_ratio(row.memory_ratio):>6}  {'ok' if row.memory_on_target else 'MISS'}"
        )
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "?" if value is None else format_seconds(value)


def _ratio(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"
