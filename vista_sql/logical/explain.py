"""EXPLAIN LOGICAL and EXPLAIN VERBOSE: the logical plans of a statement, as text or JSON.

EXPLAIN LOGICAL prints the lazy plan (before rewriting), then every alternative the rewrites
produce, in the driver's order. EXPLAIN VERBOSE prints the lazy plan, then, for every alternative,
the plan after each rule the driver applied, or ``SAME AS ABOVE`` when the rule changed nothing
(as DataFusion's EXPLAIN VERBOSE does). ``FORMAT JSON`` gives the same content as JSON text.

The cost model marks its choice with ``chosen`` (an alternative's name) and prints its estimates
beside each operator with ``annotate``; without them the output is the logical content alone.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from vista_sql.catalog import Catalog, current
from vista_sql.logical.driver import Alternative, Step, alternatives
from vista_sql.logical.lazy import lazy_plan
from vista_sql.logical.query import TransferQuery
from vista_sql.logical.render import Annotate, render_json, render_text

Format = Literal["text", "json"]

SAME_AS_ABOVE = "SAME AS ABOVE"


def explain_logical(
    query: TransferQuery,
    catalog: Catalog | None = None,
    *,
    format: Format = "text",
    chosen: str | None = None,
    annotate: Annotate | None = None,
) -> str:
    """The lazy plan and every alternative after rewriting."""
    catalog = catalog if catalog is not None else current()
    start = lazy_plan(query, catalog)
    found = alternatives(query, catalog)
    if format == "json":
        document = {
            "explain": "logical",
            "logical_plan": render_json(start),
            "alternatives": [
                {
                    **_header_json(alternative, chosen),
                    "plan": render_json(alternative.plan, annotate),
                }
                for alternative in found
            ],
        }
        return json.dumps(document, indent=2)
    parts = [
        "== Logical plan (lazy, before rewriting) ==",
        render_text(start),
        "",
        f"== Alternatives after rewriting ({len(found)}) ==",
    ]
    for number, alternative in enumerate(found, start=1):
        parts += [
            "",
            _header_text(number, alternative, chosen),
            render_text(alternative.plan, annotate),
        ]
    return "\n".join(parts)


def explain_verbose(
    query: TransferQuery,
    catalog: Catalog | None = None,
    *,
    format: Format = "text",
    chosen: str | None = None,
) -> str:
    """The lazy plan, then for every alternative the plan after each rewrite rule."""
    catalog = catalog if catalog is not None else current()
    start = lazy_plan(query, catalog)
    found = alternatives(query, catalog)
    if format == "json":
        document = {
            "explain": "verbose",
            "logical_plan": render_json(start),
            "alternatives": [
                {
                    **_header_json(alternative, chosen),
                    "steps": [_step_json(step) for step in alternative.steps],
                }
                for alternative in found
            ],
        }
        return json.dumps(document, indent=2)
    parts = ["== Logical plan (lazy, before rewriting) ==", render_text(start)]
    for number, alternative in enumerate(found, start=1):
        parts += ["", _header_text(number, alternative, chosen).replace("--", "==", 1)]
        for step in alternative.steps:
            parts += [_step_title(step), render_text(step.after) if step.changed else SAME_AS_ABOVE]
    return "\n".join(parts)


def _header_text(number: int, alternative: Alternative, chosen: str | None) -> str:
    mark = " (chosen)" if chosen is not None and chosen in alternative.names else ""
    same = (
        f" (same plan as {', '.join(alternative.equivalents)})" if alternative.equivalents else ""
    )
    return f"-- Alternative {number}: {alternative.name}{mark}{same}"


def _header_json(alternative: Alternative, chosen: str | None) -> dict[str, Any]:
    return {
        "name": alternative.name,
        "inference": alternative.inference,
        "placement": alternative.placement,
        "persist": alternative.persist,
        "equivalents": list(alternative.equivalents),
        "chosen": chosen is not None and chosen in alternative.names,
    }


def _step_title(step: Step) -> str:
    status = "changed" if step.changed else "unchanged"
    return f"-- {step.batch}: {step.rule} (pass {step.iteration}): {status}"


def _step_json(step: Step) -> dict[str, Any]:
    return {
        "batch": step.batch,
        "rule": step.rule,
        "pass": step.iteration,
        "changed": step.changed,
        "plan": render_json(step.after) if step.changed else None,
    }
