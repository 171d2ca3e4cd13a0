"""The VISTA authors' 2018 decision procedure (``benchmarks/authors_2018.py``), the baseline policy
of the benchmarks, reproduces their own worked example and the rules it is made of.

Expected values are worked by hand from their code's constants (GB): the example at the bottom of
their ``vista.py`` is ``Vista("vista-example", 32, 8, 8, 'alexnet', 3, 0, ..., 20129, 130)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from authors_2018 import decide


def test_their_example_32_gb_8_cores_8_nodes_alexnet_3_layers_foods() -> None:
    decision = decide(32, 8, 8, "alexnet", 3, 20129, 130)
    # cores: core region 28.5 - 2.5 i >= 2.4 for i <= 10.4; their loop tries 7 (8 - 1) first
    assert decision.cores == 7
    assert decision.heap_gb == 15  # 32 - 3 - 7 x 2
    # user 7 x max(0.3 + 2 x 0.1, 0.5) + 0.2 = 3.7; core 15 - 0.3 - 3.7 = 11.0
    assert decision.memory_fraction == pytest.approx(11.0 / 14.7)
    # largest table 2 x (154,587 + 130) x 4 B x 20,129 = 23.2 GB: 232.03 partitions of 0.1 GB
    # over 56 cores -> 5 waves of 56
    assert decision.partitions == 280
    assert decision.join == "broadcast"  # 1.2 x 130 x 4 B x 20,129 = 0.012 GB < 0.1
    # two largest stored tables 23.18 GB < storage 15 x 0.748 x 0.5 x 8 nodes = 44.9 GB
    assert decision.persistence == "deserialized"
    assert (decision.inference, decision.placement) == ("staged", "after_join")


def test_one_small_node_serializes_and_keeps_a_core_free() -> None:
    decision = decide(16, 4, 1, "vgg16", 3, 20129, 130)
    # core region 12.5 - 3.8 i >= 2.4 for i <= 2.66
    assert decision.cores == 2
    assert decision.heap_gb == 7  # 16 - 3 - 2 x 3
    assert decision.memory_fraction == pytest.approx(4.9 / 6.7)  # user 1.8, core 4.9
    assert decision.partitions == 234  # ceil(232.03 / 2) = 117, x 2
    # 23.18 GB against 7 x 0.731 x 0.5 = 2.56 GB of storage
    assert decision.persistence == "serialized"
    # two cores: their loop stops before the last core, so one core is all it ever uses
    assert decide(24, 2, 1, "alexnet", 4, 2000, 130).cores == 1


def test_a_large_structured_table_is_shuffled_and_too_little_memory_is_refused() -> None:
    assert decide(32, 8, 2, "resnet50", 5, 200_000, 130).join == "shuffle"  # 0.116 GB
    with pytest.raises(ValueError, match="no core count fits"):
        decide(8, 4, 1, "vgg16", 3, 1000, 130)


def test_the_decision_as_vista_sql_options_and_session_settings() -> None:
    decision = decide(32, 8, 8, "alexnet", 3, 20129, 130)
    assert decision.with_options() == [
        "inference = staged",
        "placement = after_join",
        "join = broadcast",
        "persist = deserialized",
        "executor_cores = 7",
        "partitions = 280",
    ]
    local = decision.spark_conf(local=True)
    assert local["spark.master"] == "local[7]" and local["spark.driver.memory"] == "15g"
    assert float(local["spark.memory.fraction"]) == pytest.approx(11.0 / 14.7, abs=1e-4)
    cluster = decision.spark_conf(local=False)
    assert cluster["spark.executor.memory"] == "15g" and cluster["spark.executor.cores"] == "7"
