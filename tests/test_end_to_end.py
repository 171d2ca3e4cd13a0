"""End to end through ``vista_sql.execute``: the roster, INTO, EXPLAIN ANALYZE, unmatched keys."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import vista_sql
from vista_sql.catalog import current
from vista_sql.datasets.foods import FoodsDataset, make_foods
from vista_sql.errors import VistaError
from vista_sql.physical.result import OUTPUT_MARKER

pytestmark = [pytest.mark.spark, pytest.mark.tf, pytest.mark.slow]

ROWS = 16
STRUCTURED = 129


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return make_foods(tmp_path_factory.mktemp("e2e") / "foods", rows=ROWS, seed=1, image_size=96)


def statement(data: FoodsDataset, cnn: str, layers: str, extra: str = "") -> str:
    return (
        f"TRANSFER FEATURES OF '{data.images_dir}' AS i FROM CNN {cnn} WEIGHTS RANDOM SEED 3"
        f" LAYERS {layers} JOIN '{data.table_path}' AS f ON i.id = f.id"
        f" TRAIN LOGREG (max_iter = 3) LABEL healthy VALIDATE 0.25 {extra}"
    )


# VGG16 runs end to end in test_reliability_memory.py too (AlexNet, VGG16 and ResNet50 under a
# memory limit); here the result's columns are checked in detail.
@pytest.mark.parametrize("cnn", ["alexnet", "resnet50"])
def test_roster_models_run_end_to_end(spark: Any, foods: FoodsDataset, cnn: str) -> None:
    info = current().cnn(cnn)
    assert info is not None
    result = vista_sql.execute(statement(foods, cnn, "TOP 2"), spark=spark, progress=False)
    frame = result.to_pandas()
    top_two = [info.layers[-1].name, info.layers[-2].name]
    assert list(frame["layer"]) == top_two
    for row in frame.itertuples():
        layer = info.layer(row.layer)
        assert layer is not None
        assert row.n_features == STRUCTURED + layer.feature_size("max2x2")
        assert 0.0 <= row.accuracy <= 1.0
        assert row.train_rows + row.validation_rows == ROWS
    assert set(result.models) == set(top_two)
    assert result.unmatched == {"images": 0, "table": 0}
    assert result.skipped_images == []
    assert result.best["layer"] in top_two
    assert "== Analyze: estimated vs measured ==" in result.explain()


def test_into_writes_features_models_and_report_and_never_clobbers(
    spark: Any, foods: FoodsDataset, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    sql = statement(foods, "alexnet", "(conv5, fc8)", f"INTO '{target}'")
    result = vista_sql.execute(sql, spark=spark, progress=False)
    assert sorted(os.listdir(target)) == [
        OUTPUT_MARKER,
        "conv5",
        "fc8",
        "metrics.png",
        "report.json",
    ]
    for layer, size in (("conv5", 4 * 256), ("fc8", 1000)):
        table = spark.read.parquet(str(target / layer / "features.parquet"))
        assert table.columns == ["id", "label", "features"]
        rows = table.collect()
        assert len(rows) == ROWS
        assert {r["label"] for r in rows} <= {0, 1}
        assert all(r["features"].size == STRUCTURED + size for r in rows)
        assert (target / layer / "model" / "metadata").is_dir()
    report = json.loads((target / "report.json").read_text())
    assert [row["layer"] for row in report["layers"]] == ["fc8", "conv5"]
    assert report["best_layer"] == str(result.best["layer"])
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".out.partial")]

    with pytest.raises(VistaError, match="already exists"):
        vista_sql.execute(sql, spark=spark, progress=False)
    again = statement(foods, "alexnet", "(fc8)", f"WITH (overwrite = true) INTO '{target}'")
    vista_sql.execute(again, spark=spark, progress=False)
    assert sorted(os.listdir(target)) == [
        OUTPUT_MARKER,
        "fc8",
        "metrics.png",
        "report.json",
    ]


def test_explain_analyze_runs_and_reports_estimates_beside_measurements(
    spark: Any, foods: FoodsDataset
) -> None:
    text = vista_sql.execute(
        "EXPLAIN ANALYZE " + statement(foods, "alexnet", "(fc7, fc8)"), spark=spark, progress=False
    )
    assert isinstance(text, str)
    assert "== Physical Plan:" in text
    for layer in ("fc7", "fc8"):
        for stage in ("inference", "training", "evaluation"):
            assert any(line.split()[:2] == [layer, stage] for line in text.splitlines()), (
                layer,
                stage,
            )
    document = json.loads(
        vista_sql.execute(
            "EXPLAIN ANALYZE FORMAT JSON " + statement(foods, "alexnet", "(fc8)"),
            spark=spark,
            progress=False,
        )
    )
    assert document["mode"] == "analyze"
    assert document["analyze"]["seconds"]["measured"] > 0


def test_keys_on_one_side_are_counted_not_lost(
    spark: Any, foods: FoodsDataset, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in sorted(os.listdir(foods.images_dir))[2:]:
        (images / name).write_bytes((foods.images_dir / name).read_bytes())
    (images / "9999.jpg").write_bytes((foods.images_dir / "0.jpg").read_bytes())
    sql = statement(foods, "alexnet", "(fc8)").replace(str(foods.images_dir), str(images))
    result = vista_sql.execute(sql, spark=spark, progress=False)
    assert result.unmatched == {"images": 1, "table": 2}
    row = result.to_pandas().iloc[0]
    assert row.train_rows + row.validation_rows == ROWS - 2
