"""Values written in statements (TRAIN parameters, WITH options) and the checks they must pass.

A :class:`ValueSpec` says what one parameter or option accepts; :func:`literal` reads a value out of
the syntax tree, and :func:`check` turns it into the Python value the rest of vista_sql uses, or
raises ``ValueError`` with a sentence saying what is valid (the builder points it at the text).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from sqlglot import exp

from vista_sql.logical.plan import Value
from vista_sql.units import parse_size

Kind = Literal["int", "float", "bool", "choice", "sizes", "subset", "size", "string"]

_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """What values one parameter or option takes.

    Kinds: ``int``, ``float`` (with an optional range), ``bool``, ``choice`` (one of ``choices``,
    case-insensitive), ``sizes`` (MLP hidden layer sizes), ``subset`` (a random forest's feature
    subset strategy), ``size`` (a memory size, in bytes), ``string``.
    """

    kind: Kind
    spark_name: str = ""
    """The MLlib name of a model parameter (empty for WITH options)."""
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        """The valid values in words, for error messages."""
        if self.kind == "bool":
            return "TRUE or FALSE"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "sizes":
            return "hidden layer sizes: an integer > 0, or a string like '64,32'"
        if self.kind == "subset":
            return f"one of {', '.join(self.choices)}, a fraction in (0, 1] or an integer >= 1"
        if self.kind == "size":
            return "a memory size with a unit, like '24g', '512m' or '1.5GiB'"
        if self.kind == "string":
            return "a 'string'"
        noun = "an integer" if self.kind == "int" else "a number"
        return noun + self._range()

    def _range(self) -> str:
        if self.low is not None and self.high is not None:
            left = "[" if self.low_inclusive else "("
            right = "]" if self.high_inclusive else ")"
            return f" in {left}{_number(self.low)}, {_number(self.high)}{right}"
        if self.low is not None:
            return f" {'>=' if self.low_inclusive else '>'} {_number(self.low)}"
        return ""

    def in_range(self, value: float) -> bool:
        if self.low is not None and (
            value < self.low or (value == self.low and not self.low_inclusive)
        ):
            return False
        return self.high is None or not (
            value > self.high or (value == self.high and not self.high_inclusive)
        )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def literal(node: exp.Expr) -> Value:
    """The value a syntax-tree leaf holds: a string, a number, TRUE/FALSE or a bare word.

    Raises ValueError for anything else (a grid where one value is expected, say).
    """
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return str(node.this)
        text = str(node.this)
        if _INTEGER.fullmatch(text):
            return int(text)
        return float(text)
    if isinstance(node, exp.Var):
        return str(node.this)
    raise ValueError("expected one value")


def check(spec: ValueSpec, value: Value) -> Value:
    """``value`` as ``spec``'s Python value; ValueError (saying what is valid) when it is not."""
    problem = ValueError(f"expected {spec.describe()}")
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        raise problem
    if spec.kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise problem
        if spec.kind == "int" and not isinstance(value, int):
            raise problem
        number: int | float = value if spec.kind == "int" else float(value)
        if not math.isfinite(number) or not spec.in_range(number):
            raise problem
        return number
    if spec.kind == "choice":
        if isinstance(value, str):
            for choice in spec.choices:
                if choice.lower() == value.lower():
                    return choice
        raise problem
    if spec.kind == "sizes":
        return _sizes(value, problem)
    if spec.kind == "subset":
        return _subset(spec, value, problem)
    if spec.kind == "size":
        if isinstance(value, str):
            return parse_size(value)
        raise ValueError(f"expected {spec.describe()} (a bare number has no unit)")
    if isinstance(value, str):
        return value
    raise problem


def _sizes(value: Value, problem: ValueError) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        parts: list[str] = [str(value)]
    elif isinstance(value, str):
        parts = [part.strip() for part in value.split(",")] if value.strip() else []
    else:
        raise problem
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise problem
    return tuple(int(part) for part in parts)


def _subset(spec: ValueSpec, value: Value, problem: ValueError) -> str:
    if isinstance(value, bool):
        raise problem
    if isinstance(value, str):
        for choice in spec.choices:
            if choice.lower() == value.lower():
                return choice
        try:
            value = int(value) if _INTEGER.fullmatch(value.strip()) else float(value)
        except ValueError:
            raise problem from None
    if isinstance(value, int) and value >= 1:
        return str(value)
    if isinstance(value, float) and 0 < value <= 1:
        return str(value)
    raise problem
