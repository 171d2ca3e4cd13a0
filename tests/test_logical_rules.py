"""Golden-file tests of the rewrite rules: ``tests/fixtures/rules/<rule>.txt``.

Each case is a statement in and the plan out, after the rule (and the rules named in ``# prepare``,
applied first) rewrote the statement's lazy plan. The first output line says whether the rule
changed the plan. Besides the text, every case checks the laws every rule keeps: it returns the same
object exactly when it changes nothing, running it again changes nothing, and the result is well
formed with the same (layer, model) outputs.

File format, cases separated by a blank line::

    # title: what the case shows
    # prepare: fuse_pooling, reuse_layers      (optional: rules applied before, in order)
    # placement: after_join                    (optional; default before_join)
    TRANSFER FEATURES ... ;                    (one or more lines, the last ending with ;)
    changed                                    (or unchanged)
     1  Workload ...                           (the plan, as render_text draws it)

To rewrite the expected outputs from the code, run with ``VISTA_SQL_UPDATE_GOLDEN=1``, then read
the diff before committing it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import pytest

from vista_sql.catalog import roster
from vista_sql.grammar.dialect import parse_one
from vista_sql.logical.builder import build
from vista_sql.logical.columns import problems, workload_outputs
from vista_sql.logical.dag import sharing_key
from vista_sql.logical.lazy import lazy_plan
from vista_sql.logical.plan import Plan
from vista_sql.logical.query import Placement, TransferQuery
from vista_sql.logical.render import render_text
from vista_sql.logical.rules import (
    Rule,
    RuleContext,
    fuse_pooling,
    persist_shared,
    place_join,
    reuse_layers,
    stage_layers,
)

FIXTURES = Path(__file__).parent / "fixtures" / "rules"
UPDATE = os.environ.get("VISTA_SQL_UPDATE_GOLDEN") == "1"

RULES: dict[str, Rule] = {
    "fuse_pooling": fuse_pooling,
    "reuse_layers": reuse_layers,
    "stage_layers": stage_layers,
    "place_join": place_join,
    "persist_shared": persist_shared,
}


@dataclass(frozen=True)
class Case:
    title: str
    prepare: tuple[str, ...]
    placement: Placement
    statement: str
    expected: str


def read_cases(path: Path) -> list[Case]:
    cases = []
    for block in path.read_text().strip().split("\n\n"):
        lines = block.strip("\n").splitlines()
        headers = {}
        while lines and lines[0].startswith("# "):
            key, _, value = lines.pop(0)[2:].partition(":")
            headers[key.strip()] = value.strip()
        end = next(index for index, line in enumerate(lines) if line.rstrip().endswith(";"))
        prepare = tuple(name.strip() for name in headers.get("prepare", "").split(",") if name)
        cases.append(
            Case(
                title=headers["title"],
                prepare=prepare,
                placement=cast(Placement, headers.get("placement", "before_join")),
                statement="\n".join(lines[: end + 1]),
                expected="\n".join(lines[end + 1 :]),
            )
        )
    return cases


def write_cases(path: Path, cases: list[Case]) -> None:
    blocks = []
    for case in cases:
        lines = [f"# title: {case.title}"]
        if case.prepare:
            lines.append(f"# prepare: {', '.join(case.prepare)}")
        if case.placement != "before_join":
            lines.append(f"# placement: {case.placement}")
        blocks.append("\n".join([*lines, case.statement, case.expected]))
    path.write_text("\n\n".join(blocks) + "\n")


def run_case(rule: Rule, case: Case) -> str:
    catalog = roster()
    statement = build(parse_one(case.statement), case.statement, catalog)
    assert isinstance(statement, TransferQuery)
    ctx = RuleContext(catalog=catalog, placement=case.placement)
    plan: Plan = lazy_plan(statement, catalog)
    for name in case.prepare:
        plan = RULES[name](plan, ctx)
    after = rule(plan, ctx)
    changed = after is not plan
    assert changed == (sharing_key(after) != sharing_key(plan)), "changed iff a new object"
    assert rule(after, ctx) is after, "running the rule again must change nothing"
    assert problems(after, catalog) == []
    assert workload_outputs(after) == workload_outputs(plan)
    return ("changed" if changed else "unchanged") + "\n" + render_text(after)


@pytest.mark.parametrize("rule_name", sorted(RULES))
def test_rule_goldens(rule_name: str) -> None:
    path = FIXTURES / f"{rule_name}.txt"
    cases = read_cases(path)
    assert cases, f"{path} has no cases"
    actual = [run_case(RULES[rule_name], case) for case in cases]
    if UPDATE:
        write_cases(path, [replace(c, expected=a) for c, a in zip(cases, actual, strict=True)])
        return
    for case, output in zip(cases, actual, strict=True):
        assert output == case.expected, f"{path.name}: {case.title}"
