"""The cost model's inputs: data statistics from listings and footers, resources from the machine
(respecting cgroup limits) or from WITH."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vista_sql
from vista_sql.cost_model.estimate import Precision
from vista_sql.cost_model.resources import Resources, detect_resources
from vista_sql.cost_model.stats import DataStats, gather_stats
from vista_sql.logical.builder import build
from vista_sql.logical.query import Options, TransferQuery

GiB = 2**30


def query(images: str, table: str, extra: str = "") -> TransferQuery:
    sql = (
        f"TRANSFER FEATURES OF '{images}' AS i FROM CNN alexnet WEIGHTS RANDOM SEED 1"
        f" LAYERS (fc7, fc8) JOIN '{table}' AS t ON i.id = t.id {extra}"
        " TRAIN LOGREG LABEL label"
    )
    built = build(vista_sql.parse_one(sql), sql)
    assert isinstance(built, TransferQuery)
    return built


@pytest.fixture
def images(tmp_path: Path) -> Path:
    directory = tmp_path / "images"
    directory.mkdir()
    for i, size in enumerate([100, 250, 50]):
        (directory / f"{i}.jpg").write_bytes(b"x" * size)
    (directory / "3.PNG").write_bytes(b"y" * 400)
    (directory / "notes.txt").write_text("not an image")
    (directory / "nested").mkdir()
    return directory


def test_images_are_counted_and_sized_from_the_listing(images: Path, tmp_path: Path) -> None:
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": [0, 1], "label": [0, 1], "x": [1.0, 2.0]}), table)
    stats = gather_stats(query(str(images), str(table)))
    assert stats.image_rows.value == 4
    assert stats.image_bytes.value == 800
    assert stats.image_bytes.precision is Precision.EXACT
    assert stats.average_image_bytes.value == 200


def test_parquet_rows_come_from_footers_and_features_exclude_key_and_label(
    images: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "table"
    directory.mkdir()
    for part in range(3):
        pq.write_table(
            pa.table(
                {
                    "id": list(range(part * 10, part * 10 + 10)),
                    "label": [part % 3] * 10,
                    "a": [1.5] * 10,
                    "b": [1] * 10,
                    "name": ["n"] * 10,
                }
            ),
            directory / f"part-{part}.parquet",
        )
    stats = gather_stats(query(str(images), str(directory)))
    assert stats.table_rows.value == 30
    assert stats.table_rows.precision is Precision.EXACT
    assert stats.feature_columns.value == 2  # a and b: numeric, not the key, not the label
    assert stats.label_classes.value == 3
    assert stats.table_format == "parquet"


def test_features_clause_counts_exactly(images: Path, tmp_path: Path) -> None:
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": [0], "label": [0], "a": [1.0], "b": [2.0]}), table)
    sql_query = query(str(images), str(table), extra="FEATURES (a)")
    assert gather_stats(sql_query).feature_columns.value == 1


def test_small_csv_is_counted_exactly(images: Path, tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("id,label,a,name\n1,0,0.5,x\n2,1,1.5,y\n3,1,,z\n")
    stats = gather_stats(query(str(images), str(table)))
    assert stats.table_rows.value == 3
    assert stats.table_rows.precision is Precision.EXACT
    assert stats.feature_columns.value == 1
    assert stats.table_format == "csv"


def test_large_csv_rows_are_estimated_from_size(images: Path, tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    lines = ["id,label,a"] + [f"{i:06d},{i % 2},{i * 0.5:.2f}" for i in range(20_000)]
    table.write_text("\n".join(lines) + "\n")
    stats = gather_stats(query(str(images), str(table)))
    assert stats.table_rows.precision is Precision.INEXACT
    assert stats.table_rows.value == pytest.approx(20_000, rel=0.05)


def test_json_lines(images: Path, tmp_path: Path) -> None:
    table = tmp_path / "t.json"
    table.write_text(
        '{"id": 1, "label": 0, "a": 0.5, "flag": true}\n{"id": 2, "label": 1, "a": 2}\n'
    )
    stats = gather_stats(query(str(images), str(table)))
    assert stats.table_rows.value == 2
    assert stats.feature_columns.value == 1  # a; a boolean is not a number


def test_dataframe_sources_are_unknown_not_zero(tmp_path: Path) -> None:
    sql = (
        "TRANSFER FEATURES OF imgs FROM CNN alexnet WEIGHTS RANDOM SEED 1 LAYERS (fc8)"
        " JOIN tab ON imgs.id = tab.id TRAIN LOGREG LABEL label"
    )
    built = build(vista_sql.parse_one(sql), sql)
    assert isinstance(built, TransferQuery)
    stats = gather_stats(built, tables={"imgs": object(), "tab": object()})
    assert not stats.image_rows.known
    assert not stats.table_rows.known
    assert stats.average_image_bytes.format() == "?"


def test_stats_from_numbers_the_executor_has() -> None:
    stats = DataStats.of(image_rows=10, image_bytes=1000, table_rows=10, feature_columns=5)
    assert stats.image_rows.precision is Precision.EXACT
    assert stats.table_bytes.value == 10 * 7 * 8
    estimated = DataStats.of(
        image_rows=None, image_bytes=None, table_rows=10, feature_columns=5, exact=False
    )
    assert not estimated.image_rows.known
    assert estimated.table_rows.precision is Precision.INEXACT


def machine(
    root: Path,
    *,
    mem_total_kib: int = 16 * 2**20,
    cgroup: str,
    mountinfo: str,
    files: dict[str, str],
) -> Path:
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "meminfo").write_text(f"MemTotal:       {mem_total_kib} kB\nMemFree: 1 kB\n")
    (root / "proc" / "self" / "cgroup").write_text(cgroup)
    (root / "proc" / "self" / "mountinfo").write_text(mountinfo)
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
V1_MOUNT = (
    "30 23 0:26 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
    "31 23 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
)


def test_machine_memory_is_meminfo_without_limits(tmp_path: Path) -> None:
    root = machine(tmp_path, cgroup="0::/\n", mountinfo=V2_MOUNT, files={})
    found = detect_resources(root=root, cpus=8)
    assert found == Resources(16 * GiB, 8, 1, None, found.origin)
    assert dict(found.origin)["memory"] == "/proc/meminfo MemTotal"


def test_cgroup_v2_limits_memory_and_cores(tmp_path: Path) -> None:
    root = machine(
        tmp_path,
        cgroup="0::/job/step\n",
        mountinfo=V2_MOUNT,
        files={
            "sys/fs/cgroup/job/step/memory.max": "max\n",
            "sys/fs/cgroup/job/memory.max": str(3 * GiB),
            "sys/fs/cgroup/job/step/cpu.max": "150000 100000\n",
        },
    )
    found = detect_resources(root=root, cpus=8)
    assert found.memory_bytes == 3 * GiB  # the ancestor's limit binds
    assert found.cores == 2  # 1.5 CPUs of quota, rounded up
    assert dict(found.origin)["memory"] == "cgroup v2 memory.max"


def test_cgroup_v1_memory_limit_in_bytes(tmp_path: Path) -> None:
    root = machine(
        tmp_path,
        cgroup="4:memory:/bench/run\n3:cpu,cpuacct:/bench\n0::/\n",
        mountinfo=V1_MOUNT,
        files={
            "sys/fs/cgroup/memory/bench/run/memory.limit_in_bytes": str(2 * GiB),
            "sys/fs/cgroup/memory/bench/memory.limit_in_bytes": "9223372036854771712",
            "sys/fs/cgroup/cpu,cpuacct/bench/cpu.cfs_quota_us": "-1",
            "sys/fs/cgroup/cpu,cpuacct/bench/cpu.cfs_period_us": "100000",
        },
    )
    found = detect_resources(root=root, cpus=4)
    assert found.memory_bytes == 2 * GiB
    assert found.cores == 4
    assert dict(found.origin)["memory"] == "cgroup v1 memory.limit_in_bytes"


def test_a_cgroup_limit_above_the_machine_does_not_raise_memory(tmp_path: Path) -> None:
    root = machine(
        tmp_path,
        mem_total_kib=2**20,
        cgroup="0::/a\n",
        mountinfo=V2_MOUNT,
        files={"sys/fs/cgroup/a/memory.max": str(64 * GiB)},
    )
    assert detect_resources(root=root, cpus=2).memory_bytes == GiB


def test_with_options_win_over_the_machine(tmp_path: Path) -> None:
    root = machine(tmp_path, cgroup="0::/\n", mountinfo=V2_MOUNT, files={})
    found = detect_resources(Options(memory=5 * GiB, cores=3, nodes=2), root=root, cpus=8)
    assert (found.memory_bytes, found.cores, found.nodes) == (5 * GiB, 3, 2)
    assert dict(found.origin)["memory"] == "WITH memory"


def test_this_machine_is_detected() -> None:
    found = detect_resources()
    assert found.memory_bytes > 0 and found.cores >= 1


def test_decide_runs_the_whole_chain_from_the_sources(images: Path, tmp_path: Path) -> None:
    from vista_sql.catalog import roster
    from vista_sql.cost_model import decide

    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": [0, 1, 2, 3], "label": [0, 1, 0, 1], "x": [1.0] * 4}), table)
    decision = decide(query(str(images), str(table)), roster())
    assert decision.stats.image_rows.value == 4
    assert decision.stats.table_rows.value == 4
    assert decision.resources == detect_resources()
    assert decision.chosen.fit.status == "fits"
