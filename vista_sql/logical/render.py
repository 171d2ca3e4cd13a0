"""Draw plans: an indented tree of numbered operators, or the same content as nested dicts (JSON).

Nodes only describe themselves (``describe()``); this module decides the layout. Operators are
numbered in pre-order. A node used by several parents (shared work) is drawn once, where it first
appears, and every later use is one line referring to its number, as Spark's ``ReusedExchange``
does, so the text shows exactly which work is shared. The output depends only on the plan's
structure and sharing, never on ``id()`` values or set order: the same plan gives the same text.

An optional ``annotate(node) -> str`` callback (the cost model's estimates) is printed beside each
operator, after its description.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from vista_sql.logical.plan import Plan

Annotate = Callable[[Plan], str]
"""Text to print beside an operator (e.g. its estimates); empty for nothing."""


def render_text(plan: Plan, annotate: Annotate | None = None, indent: int = 2) -> str:
    """The plan as an indented tree, one numbered operator per line.

    ::

        1  Workload layers=[fc7, fc6]
        2    Evaluate fc7 [accuracy, f1, auc]
        ...
        5          Join inner ON i.id = f.id
        ...
                   (reused 5) Join inner ON i.id = f.id
    """
    numbers = plan.numbering()
    width = len(str(len(numbers)))
    lines: list[str] = []
    printed: set[int] = set()

    def draw(node: Plan, depth: int) -> None:
        number = numbers[id(node)]
        pad = " " * (indent * depth)
        if number in printed:
            lines.append(f"{'':>{width}}  {pad}(reused {number}) {node.describe()}")
            return
        printed.add(number)
        note = annotate(node) if annotate is not None else ""
        lines.append(f"{number:>{width}}  {pad}{node.describe()}" + (f"  {note}" if note else ""))
        for child in node.children:
            draw(child, depth + 1)

    draw(plan, 0)
    return "\n".join(lines)


def render_json(plan: Plan, annotate: Annotate | None = None) -> dict[str, Any]:
    """The plan as nested dicts: ``{"id", "operator", "description", "fields", "children"}`` per
    operator (plus ``"annotation"`` when ``annotate`` is given); a later use of a shared node is
    ``{"reused": id, "operator", "description"}``. ``fields`` holds the node's own values (not its
    children, not its source position) in JSON types."""
    numbers = plan.numbering()
    printed: set[int] = set()

    def convert(node: Plan) -> dict[str, Any]:
        number = numbers[id(node)]
        operator = type(node).__name__
        if number in printed:
            return {"reused": number, "operator": operator, "description": node.describe()}
        printed.add(number)
        entry: dict[str, Any] = {
            "id": number,
            "operator": operator,
            "description": node.describe(),
            "fields": _fields(node),
        }
        if annotate is not None:
            entry["annotation"] = annotate(node)
        entry["children"] = [convert(child) for child in node.children]
        return entry

    return convert(plan)


def _fields(node: Plan) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in dataclasses.fields(node):  # type: ignore[arg-type]
        value = getattr(node, field.name)
        if not field.compare or _holds_plans(value):
            continue
        values[field.name] = _json_value(value)
    return values


def _holds_plans(value: object) -> bool:
    return isinstance(value, Plan) or (
        isinstance(value, tuple) and bool(value) and all(isinstance(v, Plan) for v in value)
    )


def _json_value(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _json_value(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if field.compare
        }
    if isinstance(value, tuple | list):
        return [_json_value(item) for item in value]
    return value
