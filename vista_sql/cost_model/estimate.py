"""Estimates that say how much they know: exact (``=``), estimated (``~``) or unknown (``?``).

After DataFusion's ``Precision`` (Exact / Inexact / Absent): a number of rows counted from a file
listing is exact, one derived through a join or a cost constant is inexact, and one that needs a
statistic nobody measured is absent. Arithmetic keeps the weakest precision of its operands, so an
unknown input makes every result that depends on it unknown instead of a silent zero or a huge
sentinel. Estimates are never negative: sizes, counts and times cannot be.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from vista_sql.units import format_bytes


class Precision(Enum):
    """How much an estimate is worth; the value is the mark EXPLAIN prints before the number."""

    EXACT = "="
    INEXACT = "~"
    ABSENT = "?"

    def weakest(self, other: Precision) -> Precision:
        """The precision of a value computed from values of these two precisions."""
        if self is other or other is Precision.EXACT:
            return self
        if self is Precision.EXACT:
            return other
        return Precision.ABSENT if Precision.ABSENT in (self, other) else Precision.INEXACT


Number = int | float


@dataclass(frozen=True, slots=True)
class Estimate:
    """A non-negative quantity with its precision; ``value`` is None exactly when it is absent."""

    value: float | None
    precision: Precision

    def __post_init__(self) -> None:
        if (self.value is None) != (self.precision is Precision.ABSENT):
            raise ValueError("an estimate has a value exactly when it is not absent")
        if self.value is not None and (math.isnan(self.value) or self.value < 0):
            raise ValueError(f"an estimate is never negative or NaN, got {self.value}")

    @staticmethod
    def exact(value: Number) -> Estimate:
        return Estimate(float(value), Precision.EXACT)

    @staticmethod
    def inexact(value: Number) -> Estimate:
        return Estimate(float(value), Precision.INEXACT)

    @staticmethod
    def absent() -> Estimate:
        return ABSENT

    @staticmethod
    def of(value: Number | None, precision: Precision) -> Estimate:
        """``value`` with ``precision``, or absent when the value is None."""
        return ABSENT if value is None else Estimate(float(value), precision)

    @property
    def known(self) -> bool:
        return self.value is not None

    @property
    def lower_bound(self) -> float:
        """What is certainly needed: the value, or 0 when unknown (nothing is certain then)."""
        return 0.0 if self.value is None else self.value

    def or_infinity(self) -> float:
        """The value for ordering, unknown sorting after every known value."""
        return math.inf if self.value is None else self.value

    def inexact_(self) -> Estimate:
        """The same value, marked estimated (e.g. after a modelling assumption)."""
        if self.precision is Precision.EXACT:
            return Estimate(self.value, Precision.INEXACT)
        return self

    def map(self, fn: Callable[[float], float]) -> Estimate:
        """``fn(value)`` with this precision (weakened to inexact if exact: ``fn`` is a model)."""
        if self.value is None:
            return ABSENT
        return Estimate.inexact(fn(self.value))

    def __add__(self, other: Estimate | Number) -> Estimate:
        if self.value is None:
            return ABSENT
        if isinstance(other, Estimate):
            if other.value is None:
                return ABSENT
            return _make(self.value + other.value, self.precision.weakest(other.precision))
        if other < 0:
            raise ValueError(f"adding a negative number ({other}) to an estimate")
        return _make(self.value + other, self.precision)

    __radd__ = __add__

    def __mul__(self, other: Estimate | Number) -> Estimate:
        if self.value is None:
            return ABSENT
        if isinstance(other, Estimate):
            if other.value is None:
                return ABSENT
            return _make(self.value * other.value, self.precision.weakest(other.precision))
        if other < 0:
            raise ValueError(f"multiplying an estimate by a negative number ({other})")
        return _make(self.value * other, self.precision)

    __rmul__ = __mul__

    def __truediv__(self, other: Estimate | Number) -> Estimate:
        other = _lift(other)
        if self.value is None or other.value is None:
            return ABSENT
        if other.value == 0:
            raise ZeroDivisionError("estimate divided by zero")
        return Estimate(self.value / other.value, self.precision.weakest(other.precision))

    def minus_clamped(self, other: Estimate | Number) -> Estimate:
        """``self - other``, floored at zero (what is left of a budget)."""
        other = _lift(other)
        if self.value is None or other.value is None:
            return ABSENT
        return Estimate(max(0.0, self.value - other.value), self.precision.weakest(other.precision))

    def ceil(self) -> Estimate:
        return self if self.value is None else Estimate(math.ceil(self.value), self.precision)

    def format(self, unit: str = "") -> str:
        """``=1.2 GiB``, ``~45 s``, ``?``: the mark, then the number in ``unit``'s format."""
        if self.value is None:
            return "?"
        return self.precision.value + format_quantity(self.value, unit)

    def to_json(self) -> dict[str, object]:
        return {"value": self.value, "precision": self.precision.name.lower()}


def _make(value: float, precision: Precision) -> Estimate:
    """An estimate from arithmetic on valid ones (non-negative by construction): no checks."""
    estimate = object.__new__(Estimate)
    object.__setattr__(estimate, "value", value)
    object.__setattr__(estimate, "precision", precision)
    return estimate


ABSENT = Estimate(None, Precision.ABSENT)
ZERO = Estimate(0.0, Precision.EXACT)


def _lift(value: Estimate | Number) -> Estimate:
    return value if isinstance(value, Estimate) else Estimate.exact(value)


def total(values: Iterable[Estimate]) -> Estimate:
    """The sum of estimates (exact zero for none)."""
    result = ZERO
    for value in values:
        result = result + value
    return result


def largest(values: Iterable[Estimate]) -> Estimate:
    """The maximum; absent if any is absent (the unknown one might be the largest)."""
    result = ZERO
    for value in values:
        if value.value is None:
            return ABSENT
        if result.value is None or value.value >= result.value:
            precision = value.precision.weakest(result.precision)
            result = Estimate(value.value, precision)
        else:
            result = Estimate(result.value, result.precision.weakest(value.precision))
    return result


def smallest(a: Estimate, b: Estimate) -> Estimate:
    """The minimum of two estimates; absent if either is absent."""
    if a.value is None or b.value is None:
        return ABSENT
    return Estimate(min(a.value, b.value), a.precision.weakest(b.precision))


_COUNT = (("G", 1e9), ("M", 1e6), ("K", 1e3))


def format_count(value: float) -> str:
    """A count with a decimal suffix: ``16.0K`` rows, ``3`` rows."""
    for name, size in _COUNT:
        if value >= size:
            return f"{value / size:.1f}{name}"
    return f"{value:.0f}"


def format_seconds(value: float) -> str:
    """Seconds, minutes or hours, two significant figures below 10: ``0.42 s``, ``12 min``."""
    if value >= 2 * 3600:
        return f"{value / 3600:.1f} h"
    if value >= 600:
        return f"{value / 60:.0f} min"
    if value >= 10:
        return f"{value:.0f} s"
    return f"{value:.2g} s"


def format_quantity(value: float, unit: str) -> str:
    if unit == "bytes":
        return format_bytes(value)
    if unit == "seconds":
        return format_seconds(value)
    if unit == "rows":
        return format_count(value)
    return f"{value:g}"
