"""Sources and INTO given as Hadoop file-system URIs: passed to Spark as they are, checked and
listed through the driver's JVM (its Hadoop FileSystem), staged and published there too."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import vista_sql
from vista_sql.datasets.foods import FoodsDataset, make_foods
from vista_sql.errors import DataError, VistaError
from vista_sql.physical.hadoop import HadoopPath, is_uri

sys.path.insert(0, os.path.dirname(__file__))
from tiny_cnn import register_tiny_cnn

pytestmark = [pytest.mark.spark]


def test_uris_are_told_from_paths() -> None:
    assert is_uri("hdfs://nn:8020/data") and is_uri("s3a://bucket/x") and is_uri("file:///tmp")
    assert is_uri("file:/tmp/x")
    assert not is_uri("/tmp/x") and not is_uri("data/foods") and not is_uri("C:\\data")


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    data = make_foods(tmp_path_factory.mktemp("uri") / "foods", rows=16, seed=5, image_size=40)
    (data.images_dir / "_hidden").mkdir()
    (data.images_dir / "_hidden" / "7.jpg").write_bytes(b"x")
    (data.images_dir / "notes.txt").write_text("not an image")
    return data


def test_the_jvm_file_system_lists_a_file_uri(spark: Any, foods: FoodsDataset) -> None:
    directory = HadoopPath(spark, foods.images_dir.as_uri())
    assert directory.exists() and directory.is_dir()
    assert not directory.child("nope").exists()
    listed = {e.path: e.size for e in directory.walk()}
    on_disk = {
        str(p.relative_to(foods.images_dir)): p.stat().st_size
        for p in foods.images_dir.rglob("*")
        if p.is_file()
    }
    assert listed == on_disk
    # a Hadoop 'file:' path (one slash) is the same file system
    assert HadoopPath(spark, f"file:{foods.table_path}").exists()


@pytest.mark.tf
@pytest.mark.slow
def test_a_file_uri_source_and_into_run_end_to_end(
    spark: Any, foods: FoodsDataset, tmp_path: Path
) -> None:
    tiny = register_tiny_cnn(tmp_path / "cache")
    into = tmp_path / "out"

    def statement(images: str, table: str, target: str) -> str:
        return (
            f"TRANSFER FEATURES OF '{images}' AS i FROM CNN {tiny} LAYERS (conv2, fc2)"
            f" JOIN '{table}' AS f ON i.id = f.id TRAIN LOGREG (max_iter = 5)"
            f" LABEL healthy VALIDATE 0.25 WITH (cache = false) INTO '{target}'"
        )

    by_uri = vista_sql.execute(
        statement(foods.images_dir.as_uri(), foods.table_path.as_uri(), into.as_uri()),
        spark=spark,
        progress=False,
    )
    by_path = vista_sql.execute(
        statement(str(foods.images_dir), str(foods.table_path), str(tmp_path / "local")),
        spark=spark,
        progress=False,
    )
    metrics = ["layer", "n_features", "accuracy", "f1", "train_rows", "validation_rows"]
    assert by_uri.to_pandas()[metrics].equals(by_path.to_pandas()[metrics])
    assert by_uri.other_files == by_path.other_files == ("_hidden/7.jpg", "notes.txt")
    report = json.loads((into / "report.json").read_text())
    assert [row["layer"] for row in report["layers"]] == ["fc2", "conv2"]
    assert (into / "metrics.png").is_file()
    rows = spark.read.parquet(into.as_uri() + "/fc2/features.parquet").count()
    assert rows == 16
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    with pytest.raises(VistaError, match="already exists"):
        vista_sql.execute(
            statement(foods.images_dir.as_uri(), foods.table_path.as_uri(), into.as_uri()),
            spark=spark,
            progress=False,
        )


def test_an_unreachable_namenode_is_a_data_error_naming_the_uri(
    spark: Any, foods: FoodsDataset
) -> None:
    uri = "hdfs://no-such-namenode.invalid:8020/foods/images"
    sql = (
        f"TRANSFER FEATURES OF '{uri}' AS i FROM CNN alexnet WEIGHTS RANDOM SEED 1 LAYERS (fc8)"
        f" JOIN '{foods.table_path}' AS f ON i.id = f.id TRAIN LOGREG LABEL healthy"
        " WITH (cache = false)"
    )
    with pytest.raises(DataError) as caught:
        vista_sql.execute(sql, spark=spark, progress=False)
    message = str(caught.value)
    assert uri in message
    assert "\tat " not in message and "Py4J" not in message
