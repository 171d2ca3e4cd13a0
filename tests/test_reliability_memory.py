"""Memory pressure: under an operating-system memory limit (a cgroup v1 child, see
``vista_sql.physical.cgroup``) that vista_sql detects as its budget, the chosen plan finishes for
every roster model without the kernel killing anything; below what any plan needs, vista_sql
refuses up front with a ResourceError saying how much is needed, before Spark even starts."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from reliability_support import NEEDS_MEMORY_CGROUP, statement, tiny_foods

from vista_sql.datasets.foods import FoodsDataset
from vista_sql.physical.cgroup import MemoryCgroup

REPO_ROOT = Path(__file__).resolve().parents[1]
ROSTER = ("alexnet", "vgg16", "resnet50")
BUDGET = 3 * 2**30
"""Enough for the tiny data with every roster model (the cost model asks about 2.5 GiB)."""
TOO_SMALL = 1 * 2**30

pytestmark = [
    pytest.mark.slow,
    NEEDS_MEMORY_CGROUP,
]


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return tiny_foods(tmp_path_factory.mktemp("memory") / "foods")


def vista_sql_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vista_sql.cli", *args]


def environment() -> dict[str, str]:
    paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def test_every_roster_model_finishes_under_a_detected_memory_limit(
    foods: FoodsDataset, tmp_path: Path
) -> None:
    """One script, one process tree in one cgroup: EXPLAIN (showing the detected budget), then a
    statement per roster model; no WITH (memory = ...): the limit is read from the cgroup."""
    transfers = [
        statement(foods.images_dir, foods.table_path, cnn=cnn, layers="TOP 1") for cnn in ROSTER
    ]
    script = tmp_path / "roster.sql"
    script.write_text(";\n".join([f"EXPLAIN {transfers[0]}", *transfers]) + ";\n")
    with MemoryCgroup.create(BUDGET) as group:
        finished = group.run(
            vista_sql_command("run", "--no-progress", str(script)),
            capture_output=True,
            text=True,
            env=environment(),
            cwd=tmp_path,
            timeout=900,
        )
        peak, kills = group.peak_bytes, group.oom_kills
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert kills in (0, None)
    assert peak is not None and peak <= BUDGET
    assert "per node of 3.0 GiB (fits)" in finished.stdout, "the cgroup limit was the budget"
    tables = [
        block for block in finished.stdout.split("\n\n") if block.lstrip().startswith("layer ")
    ]
    assert len(tables) == len(ROSTER), finished.stdout


def test_a_budget_below_any_plan_is_refused_up_front(foods: FoodsDataset, tmp_path: Path) -> None:
    with MemoryCgroup.create(TOO_SMALL) as group:
        finished = group.run(
            vista_sql_command(
                "run", "--no-progress", "-e", statement(foods.images_dir, foods.table_path)
            ),
            capture_output=True,
            text=True,
            env=environment(),
            cwd=tmp_path,
            timeout=300,
        )
        kills = group.oom_kills
    # 4: a resource error (SPEC.md's exit codes), refused before any Spark job runs
    assert finished.returncode == 4, finished.stderr[-3000:]
    assert kills in (0, None)
    assert "no plan fits in 1.0 GiB per node" in finished.stderr
    needed = re.search(r"needs (\d+(?:\.\d+)?) GiB", finished.stderr)
    assert needed is not None and float(needed.group(1)) > 1.0
    assert "Setting default log level" not in finished.stderr, "refused before Spark started"
    assert not list(tmp_path.iterdir()), "nothing was written"
