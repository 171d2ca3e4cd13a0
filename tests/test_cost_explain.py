"""EXPLAIN of a decision: the sections SPEC.md asks for, deterministic, and the same in JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cost_support import GiB, decide, resources, statement, stats

from vista_sql.cost_model.explain import explain_json, explain_text

SQL = statement()


def test_plain_explain_has_the_plan_the_configuration_the_estimate_and_the_alternatives() -> None:
    decision = decide(SQL)
    text = explain_text(decision)
    sections = re.findall(r"^== (.*?) ==$", text, flags=re.MULTILINE)
    assert [s.split(":")[0].split(" (")[0] for s in sections] == [
        "Physical Plan",
        "Spark Configuration",
        "Estimate",
        "Alternatives",
    ]
    lines = text.splitlines()
    # One numbered operator per line, every operator with its estimates and their precision.
    numbered = [line for line in lines if re.match(r"^\s*\d+\s{2}", line)]
    assert len(numbered) == len(decision.chosen.facts.nodes)
    for line in numbered[1:]:
        assert re.search(r"rows [=~?]", line), line
        assert re.search(r"task memory [=~?]", line), line
    assert f"spark.driver.memory={decision.chosen.config.heap_bytes // 2**20}m" in text
    # Every alternative appears with its reason; the chosen one is marked.
    for plan in decision.alternatives:
        row = next(line for line in lines if line[2:].startswith(plan.alternative + " "))
        assert decision.reason(plan) in row
    assert sum(1 for line in lines if line.startswith("* ")) == 1


def test_cost_adds_stages_regions_statistics_and_constants() -> None:
    decision = decide(SQL)
    text = explain_text(decision, "cost")
    for plan in decision.alternatives:
        assert f"== Cost of {plan.alternative} ==" in text
    for stage in ("inference", "train", "total"):
        assert re.search(rf"^  {stage}\s+[=~?]", text, flags=re.MULTILINE)
    for region in ("python workers", "user memory", "unified memory", "jvm overhead"):
        assert region in text
    assert "== Statistics ==" in text and "== Constants ==" in text
    assert "inference_flops_per_core [measured]" in text


def test_explain_is_deterministic() -> None:
    """Same statement and resources, same bytes: again in this process, and in a fresh process
    with another hash seed (set order and object ids differ there)."""
    first = explain_text(decide(SQL), "cost")
    assert explain_text(decide(SQL), "cost") == first
    assert not re.search(r"0x[0-9a-f]{6,}", first)  # no object ids
    program = (
        "import sys; sys.path.insert(0, 'tests');"
        "from cost_support import decide, statement;"
        "from vista_sql.cost_model.explain import explain_text;"
        "sys.stdout.write(explain_text(decide(statement()), 'cost'))"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    fresh = subprocess.run(
        [sys.executable, "-c", program], cwd=root, env=env, capture_output=True, text=True
    )
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout == first


def test_different_resources_give_different_text() -> None:
    assert explain_text(decide(SQL, machine=resources(4 * GiB))) != explain_text(
        decide(SQL, machine=resources(16 * GiB, cores=4))
    )


def test_json_has_the_same_content() -> None:
    decision = decide(SQL, data=stats(5_000))
    document = explain_json(decision, "cost")
    json.dumps(document)  # serializable as is
    assert document["chosen"] == decision.chosen.alternative
    assert document["plan"]["id"] == 1
    assert len(document["operators"]) == len(decision.chosen.facts.nodes)
    assert document["config"]["spark_conf"] == decision.chosen.config.as_spark_conf()
    names = [a["name"] for a in document["alternatives"]]
    assert names == [p.alternative for p in decision.alternatives]
    assert [a["reason"] for a in document["alternatives"]] == [
        decision.reason(p) for p in decision.alternatives
    ]
    assert document["estimate"]["seconds"]["precision"] == "inexact"
    assert {"seconds_by_stage", "memory_by_region"} <= set(document["alternatives"][0]["cost"])


def test_unknown_prints_a_question_mark() -> None:
    text = explain_text(decide(statement("blindnet", "fc2, fc3"), "blindnet"))
    assert "(time ?, peak memory ?)" in text
    assert "runtime      ?" in text


@pytest.mark.parametrize(
    "options", ["inference = 'eager', persist = 'disk'", "inference = 'lazy'", ""]
)
def test_analyze_shares_every_operator_among_the_stages_that_run_it(options: str) -> None:
    """EXPLAIN ANALYZE's per-stage estimates add up to the plan's, and a persisted node read by
    several layers costs each of them a read (the bottom layer's inference also writes it and
    computes what lies under it)."""
    from vista_sql.logical.plan import Persist
    from vista_sql.physical.analyze import stage_rows
    from vista_sql.physical.executor import LayerRun, RunOutcome
    from vista_sql.physical.train import Trained

    decision = decide(statement(options=options), data=stats(20_000, 100_000))
    plan = decision.chosen.plan
    order = ["conv2", "fc3", "fc4"]
    trained = Trained(None, {}, 1.0, 1.0, 8, 2, {})  # type: ignore[arg-type]
    outcome = RunOutcome([LayerRun(layer, 1, trained, 1.0, 10) for layer in order])
    rows = stage_rows(decision, plan, outcome, order)
    runtime = decision.chosen.runtime
    assert sum(r.estimate.lower_bound for r in rows) == pytest.approx(
        runtime.total.lower_bound, rel=1e-9
    )
    persisted = [n for n in plan.walk() if isinstance(n, Persist)]
    if options.startswith("inference = 'eager'"):
        (persist,) = {id(n): n for n in persisted}.values()
        read = runtime.of(plan.numbering()[id(persist)])
        assert read is not None and read.passes == len(order)
        inference = {r.layer: r.estimate.lower_bound for r in rows if r.stage == "inference"}
        for layer in order[1:]:
            assert inference[layer] >= read.once.lower_bound > 0
        assert inference["conv2"] > read.once.lower_bound + read.extra.lower_bound
