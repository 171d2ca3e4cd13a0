"""GPU memory in the cost model: per concurrent task, fitted by batch size and concurrency.

There is no GPU here: ``WITH (gpu_memory = '...')`` states one, and detection is tested on
``nvidia-smi``'s output.
"""

from __future__ import annotations

from functools import cache

import pytest

import vista_sql
from vista_sql.catalog import roster
from vista_sql.cost_model.decide import decide
from vista_sql.cost_model.explain import explain_text
from vista_sql.cost_model.optimizer import Decision
from vista_sql.cost_model.stats import DataStats
from vista_sql.errors import ResourceError
from vista_sql.logical.builder import build
from vista_sql.logical.query import TransferQuery
from vista_sql.physical import gpu

GiB = 2**30


@cache
def decision(gpu_memory: str | None, cores: int = 4) -> Decision:
    given = f", gpu_memory = '{gpu_memory}'" if gpu_memory else ""
    sql = (
        "TRANSFER FEATURES OF 'images' AS i FROM CNN vgg16 WEIGHTS RANDOM SEED 7 LAYERS (fc6, fc7)"
        " JOIN 'table.parquet' AS t ON i.id = t.id TRAIN LOGREG LABEL label"
        f" WITH (memory = '64g', cores = {cores}{given})"
    )
    query = build(vista_sql.parse_one(sql), sql, roster())
    assert isinstance(query, TransferQuery)
    stats = DataStats.of(
        image_rows=10_000,
        image_bytes=10_000 * 20_000,
        table_rows=10_000,
        feature_columns=10,
        table_bytes=1_000_000,
    )
    return decide(query, roster(), stats=stats)


def gpu_region(plan_decision: Decision) -> tuple[float, float]:
    region = next(r for r in plan_decision.chosen.memory.regions if r.name == "gpu")
    assert region.limit is not None
    return region.need.lower_bound, region.limit


@pytest.mark.parametrize("memory", ["64g", "8g", "3g", "1500m"])
def test_the_chosen_plan_fits_the_gpu(memory: str) -> None:
    need, limit = gpu_region(decision(memory))
    assert 0 < need <= limit


def test_less_gpu_memory_means_fewer_or_smaller_concurrent_batches() -> None:
    work = []
    for memory in ("64g", "16g", "4g", "2g"):
        choice = decision(memory).chosen.choice
        work.append((choice.executor_cores * choice.batch_size, choice.executor_cores))
    assert work == sorted(work, reverse=True)
    assert work[0] > work[-1]
    # Plenty of GPU memory: the most concurrency and the largest batch the search tries.
    assert work[0] == (4 * 64, 4)


def test_each_concurrent_task_holds_its_own_model_on_the_gpu() -> None:
    chosen = decision("8g").chosen
    region = next(r for r in chosen.memory.regions if r.name == "gpu")
    assert region.detail.startswith(f"{chosen.choice.executor_cores} x ")


def test_a_gpu_too_small_for_any_task_is_refused() -> None:
    with pytest.raises(ResourceError) as raised:
        decision("512m")
    assert "gpu" in str(raised.value.description)


def test_explain_reports_the_gpu() -> None:
    text = explain_text(decision("8g"), "cost")
    assert "GPU 8.0 GiB" in text
    assert "gpu_memory: WITH gpu_memory" in text
    assert any(line.strip().startswith("gpu ") for line in text.splitlines())


def test_nvidia_smi_output_gives_the_smallest_gpu_and_the_count() -> None:
    assert gpu.parse_nvidia_smi("81559\n") == (81559 * 2**20, 1)
    assert gpu.parse_nvidia_smi("81559\n40960\n") == (40960 * 2**20, 2)
    assert gpu.parse_nvidia_smi("") is None
    assert gpu.parse_nvidia_smi("No devices were found\n") is None


def test_detected_gpu_memory_is_used_unless_the_statement_gives_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gpu, "detect_gpu_memory", lambda: (16 * GiB, 2))

    def options(extra: str = "") -> object:
        sql = (
            "TRANSFER FEATURES OF 'images' AS i FROM CNN vgg16 LAYERS (fc6) JOIN 't.parquet' AS t"
            f" ON i.id = t.id TRAIN LOGREG LABEL label WITH (memory = '8g', cores = 2{extra})"
        )
        built = build(vista_sql.parse_one(sql), sql, roster())
        assert isinstance(built, TransferQuery)
        return built.options

    detected = gpu.machine_resources(options())  # type: ignore[arg-type]
    assert detected.gpu_memory_bytes == 16 * GiB
    assert ("gpu_memory", "nvidia-smi (smallest of 2 GPUs)") in detected.origin
    given = gpu.machine_resources(options(", gpu_memory = '4g'"))  # type: ignore[arg-type]
    assert given.gpu_memory_bytes == 4 * GiB
    monkeypatch.setattr(gpu, "detect_gpu_memory", lambda: None)
    assert gpu.machine_resources(options()).gpu_memory_bytes is None  # type: ignore[arg-type]
