"""The feature store end to end on Spark, with the tiny registered CNN.

A statement over the same images as an earlier one reads the layers that one materialized:
the same features and metrics as a fresh run, and no image decoded. The proof of the latter is
direct: after the first run every image file is overwritten with zeros, keeping its size and
modification time (so the store's fingerprint still matches); decoding any of them would fail the
statement (``on_bad_image`` is ``fail``). A changed image is inferred again, the rest read, and the
result is a fresh run's (``test_store_incremental`` grows, shrinks and edits a directory).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import vista_sql
from vista_sql.datasets.foods import FoodsDataset, make_foods
from vista_sql.physical.store import FeatureStore, image_fingerprint

pytestmark = [pytest.mark.spark, pytest.mark.tf, pytest.mark.slow]

ROWS = 24


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return make_foods(tmp_path_factory.mktemp("store") / "foods", rows=ROWS, seed=4, image_size=32)


@pytest.fixture
def images(foods: FoodsDataset, tmp_path: Path) -> Path:
    """A private copy of the images (new files: a fingerprint of their own)."""
    return Path(shutil.copytree(foods.images_dir, tmp_path / "images"))


def statement(
    images: Path,
    foods: FoodsDataset,
    cnn: str,
    layers: str,
    options: str,
    into: Path | None = None,
) -> str:
    target = f" INTO '{into}'" if into is not None else ""
    return (
        f"TRANSFER FEATURES OF '{images}' AS i FROM CNN {cnn} LAYERS ({layers})"
        f" JOIN '{foods.table_path}' AS f ON i.id = f.id TRAIN LOGREG (max_iter = 3)"
        f" LABEL healthy VALIDATE 0.4 WITH ({options}){target}"
    )


def cached(directory: Path, extra: str = "") -> str:
    return f"cache = true, cache_dir = '{directory}'" + (f", {extra}" if extra else "")


def zero_images(images: Path) -> None:
    """Overwrite every image with zeros, keeping size and mtime: undecodable, same fingerprint."""
    before = image_fingerprint(images)
    for path in images.iterdir():
        stat = path.stat()
        path.write_bytes(bytes(stat.st_size))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert image_fingerprint(images) == before


def outcome(result: Any) -> dict[str, tuple[object, ...]]:
    """Per layer: the metrics and the fitted coefficients (equal features give equal models);
    NaN (AUC of a one-class split) as None so that equal outcomes compare equal."""
    found: dict[str, tuple[object, ...]] = {}
    for row in result.rows():
        model = result.models[row["layer"]]
        values = [row["accuracy"], row["f1"], row["auc"], *model.coefficients, model.intercept]
        found[row["layer"]] = tuple(None if v is None or v != v else round(v, 10) for v in values)
    return found


def features(into: Path, layer: str) -> np.ndarray:
    table = pq.read_table(into / layer / "features.parquet").to_pandas().sort_values("id")
    return np.stack([np.asarray(v["values"]) for v in table["features"]])


def test_a_second_statement_reads_stored_layers_without_touching_the_images(
    spark: Any, tiny: str, foods: FoodsDataset, images: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    fresh = vista_sql.execute(
        statement(images, foods, tiny, "fc1, fc2", "cache = false", tmp_path / "fresh"),
        spark=spark,
        progress=False,
    )
    first = vista_sql.execute(
        statement(images, foods, tiny, "conv1, fc1, fc2", cached(cache)),
        spark=spark,
        progress=False,
    )
    assert sorted(w.split()[0] for w in first.store["written"]) == [
        "tiny.conv1",
        "tiny.fc1",
        "tiny.fc2",
    ]
    assert first.store["read"] == [] and first.store["failures"] == []

    zero_images(images)
    second_sql = statement(images, foods, tiny, "fc1, fc2", cached(cache), tmp_path / "second")
    plan = vista_sql.explain(second_sql)
    chosen = plan.split("== Spark Configuration ==")[0]
    assert "reads stored tiny.fc1" in chosen and "reads stored tiny.fc2" in chosen
    assert "Infer" not in chosen and "Decode" not in chosen and "ImageScan" not in chosen
    second = vista_sql.execute(second_sql, spark=spark, progress=False)
    assert len(second.store["read"]) == 2 and second.store["written"] == []
    assert "StoredScan" in second.plan
    assert outcome(second) == outcome(fresh)
    for layer in ("fc1", "fc2"):
        np.testing.assert_array_equal(
            features(tmp_path / "second", layer), features(tmp_path / "fresh", layer)
        )


def test_a_layer_not_stored_resumes_from_a_stored_tensor_below_it(
    spark: Any, tiny: str, foods: FoodsDataset, images: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    fresh = vista_sql.execute(
        statement(images, foods, tiny, "fc1", "cache = false"), spark=spark, progress=False
    )
    staged = vista_sql.execute(
        statement(
            images,
            foods,
            tiny,
            "conv1, conv2",
            cached(cache, "inference = staged, persist = serialized"),
        ),
        spark=spark,
        progress=False,
    )
    written = sorted(w.split()[0] for w in staged.store["written"])
    assert written == ["tiny.conv1", "tiny.conv1:resume", "tiny.conv2"]

    zero_images(images)
    sql = statement(images, foods, tiny, "fc1", cached(cache))
    chosen = vista_sql.explain(sql).split("== Spark Configuration ==")[0]
    assert "Infer tiny (imagenet) conv1:resume -> {fc1}" in chosen
    assert "reads stored tiny.conv1:resume" in chosen and "Decode" not in chosen
    resumed = vista_sql.execute(sql, spark=spark, progress=False)
    assert outcome(resumed) == outcome(fresh)
    assert [w.split()[0] for w in resumed.store["written"]] == ["tiny.fc1"]


def test_a_changed_image_is_never_read_stale(
    spark: Any, tiny: str, foods: FoodsDataset, images: Path, tmp_path: Path
) -> None:
    """The plan that reads the 23 stored rows and infers the changed image is offered (and
    costed: for the tiny CNN, inferring 24 images is cheaper, and chosen); either way the result
    is a fresh run's, and the entries are stored again for the images as they are now, in place
    of the old ones (``test_store_incremental`` runs the mixed plan)."""
    cache = tmp_path / "cache"
    sql = statement(images, foods, tiny, "conv2, fc2", cached(cache))
    vista_sql.execute(sql, spark=spark, progress=False)
    store = FeatureStore(cache)
    assert len(store.entries()) == 2

    (images / "3.jpg").write_bytes((images / "5.jpg").read_bytes())  # another picture, same id
    assert "/stored" in vista_sql.explain(sql).split("== Alternatives")[1]
    changed = vista_sql.execute(sql, spark=spark, progress=False)
    assert len(changed.store["written"]) == 2
    fresh = vista_sql.execute(
        statement(images, foods, tiny, "conv2, fc2", "cache = false"), spark=spark, progress=False
    )
    assert outcome(changed) == outcome(fresh)
    # The new entries replaced the old ones; cache = false neither read nor wrote anything.
    assert len(store.entries()) == 2
    assert fresh.store["read"] == [] and fresh.store["written"] == []
    assert "new or changed" not in vista_sql.explain(sql)


def test_bad_images_are_stored_with_their_error_and_skipped_again(
    spark: Any, tiny: str, foods: FoodsDataset, images: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    (images / "2.jpg").write_bytes(b"not an image")
    sql = statement(images, foods, tiny, "fc2", cached(cache, "on_bad_image = skip"))
    first = vista_sql.execute(sql, spark=spark, progress=False)
    assert first.skipped_images == [2] and len(first.store["written"]) == 1
    entry = FeatureStore(cache).entries()[0]
    assert entry.rows == ROWS and entry.errors == 1
    again = vista_sql.execute(sql, spark=spark, progress=False)
    assert again.store["read"] and again.skipped_images == [2]
    assert outcome(again) == outcome(first)


def test_the_store_stays_within_its_size_limit(
    spark: Any,
    tiny: str,
    foods: FoodsDataset,
    images: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("VISTA_SQL_CACHE_SIZE", "12k")
    result = vista_sql.execute(
        statement(images, foods, tiny, "conv1, conv2, fc1, fc2", cached(cache)),
        spark=spark,
        progress=False,
    )
    store = FeatureStore(cache, 12 * 1024)
    sizes = [entry.file_bytes for entry in store.entries()]
    assert len(result.store["written"]) == 4
    assert sum(sizes) <= 12 * 1024 and len(sizes) < 4
