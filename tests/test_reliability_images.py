"""Messy image directories through ``vista_sql.execute``: odd but valid images just work; bad ones
fail the statement naming them (``on_bad_image = 'fail'``, the default) or are skipped and counted
(``'skip'``); files that are not named by an id, and files that are not images, are reported."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reliability_support import (
    copy_images,
    huge_jpeg,
    picture,
    sixteen_bit,
    statement,
    tiny_foods,
    truncated_jpeg,
    with_alpha,
)

import vista_sql
from vista_sql.datasets.foods import FoodsDataset
from vista_sql.errors import DataError
from vista_sql.physical.result import OUTPUT_MARKER, write_marker

pytestmark = [pytest.mark.spark, pytest.mark.tf, pytest.mark.slow]

BAD = {0: "truncated", 1: "empty (0 bytes)", 2: "not an image"}
"""Rows whose image is broken, and a word of the reason each reports."""
ODD = (3, 4, 5, 6, 7, 8, 9)
"""Rows whose image is odd but valid: alpha, grayscale, CMYK, 16-bit, 10,000 x 10,000 pixels,
in a nested folder, with an upper-case extension."""
NO_IMAGE = 10
"""Row whose picture is a .gif: not an image file by extension, so the row has no image."""


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return tiny_foods(tmp_path_factory.mktemp("images") / "foods")


def break_images(data: FoodsDataset, directory: Path) -> None:
    (directory / "0.jpg").write_bytes(truncated_jpeg(data, 0))
    (directory / "1.jpg").write_bytes(b"")
    (directory / "2.jpg").write_text("this is a text file, not a picture\n")


@pytest.fixture(scope="module")
def zoo(foods: FoodsDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Foods images with every kind of oddity, breakage and stray file."""
    directory = copy_images(foods, tmp_path_factory.mktemp("zoo") / "images")
    break_images(foods, directory)
    for row in ODD:
        os.remove(directory / f"{row}.jpg")
    with_alpha(picture(foods, 3)).save(directory / "3.png")
    picture(foods, 4).convert("L").save(directory / "4.jpg")
    picture(foods, 5).convert("CMYK").save(directory / "5.jpg")
    sixteen_bit(picture(foods, 6)).save(directory / "6.png")
    huge_jpeg(directory / "7.jpg")
    (directory / "a" / "b").mkdir(parents=True)
    picture(foods, 8).save(directory / "a" / "b" / "8.jpg")
    picture(foods, 9).save(directory / "9.JPG")
    os.remove(directory / f"{NO_IMAGE}.jpg")
    picture(foods, NO_IMAGE).save(directory / f"{NO_IMAGE}.gif")
    picture(foods, 11).save(directory / "cat.jpg")
    (directory / "notes.txt").write_text("taken on a Tuesday\n")
    (directory / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return directory


def test_odd_images_work_and_bad_ones_are_skipped_counted_and_reported(
    spark: Any, zoo: Path, foods: FoodsDataset, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    sql = statement(
        zoo,
        foods.table_path,
        f"WITH (on_bad_image = 'skip', inference = 'staged') INTO '{target}'",
        layers="(fc7, fc8)",
    )
    result = vista_sql.execute(sql, spark=spark, progress=False)

    assert result.skipped_images == sorted(BAD)
    assert result.unnamed_files == ("cat.jpg",)
    assert set(result.other_files) == {f"{NO_IMAGE}.gif", "notes.txt", ".DS_Store"}
    assert result.unmatched == {"images": 0, "table": 1}
    used = sorted(set(range(12)) - set(BAD) - {NO_IMAGE})
    for row in result.to_pandas().itertuples():
        assert row.train_rows + row.validation_rows == len(used), row.layer

    report = json.loads((target / "report.json").read_text())
    assert report["skipped_images"] == [str(k) for k in sorted(BAD)]
    assert report["unnamed_files"] == ["cat.jpg"]
    assert set(report["other_files"]) == set(result.other_files)
    assert report["unmatched"] == {"images": 0, "table": 1}
    for layer, size in (("fc7", 4096), ("fc8", 1000)):
        rows = spark.read.parquet(str(target / layer / "features.parquet")).collect()
        assert sorted(r["id"] for r in rows) == used
        features = np.array([r["features"].toArray() for r in rows])
        assert features.shape == (len(used), 129 + size)
        assert np.isfinite(features).all()
        odd = [i for i, r in enumerate(rows) if r["id"] in ODD]
        assert len(odd) == len(ODD)
        assert np.abs(features[odd, 129:]).sum(axis=1).min() > 0, "odd images gave features"


def test_bad_images_fail_by_default_naming_the_first_and_the_count_and_keep_into_intact(
    spark: Any, foods: FoodsDataset, tmp_path: Path
) -> None:
    images = copy_images(foods, tmp_path / "images")
    break_images(foods, images)
    target = tmp_path / "out"
    target.mkdir()
    (target / "report.json").write_text('{"kept": true}\n')
    write_marker(str(target))  # an earlier INTO's output, which overwrite = true may replace
    sql = statement(images, foods.table_path, f"WITH (overwrite = true) INTO '{target}'")

    with pytest.raises(DataError) as raised:
        vista_sql.execute(sql, spark=spark, progress=False)

    assert raised.value.count == len(BAD)
    assert raised.value.ids == tuple(sorted(BAD))
    message = str(raised.value)
    assert "3 images could not be decoded" in message
    for row, reason in BAD.items():
        assert f"{row} (" in message and reason in message
    assert "on_bad_image = 'skip'" in message
    assert sorted(os.listdir(tmp_path)) == ["images", "out"], "no staging directory left"
    assert sorted(os.listdir(target)) == [OUTPUT_MARKER, "report.json"]
    assert (target / "report.json").read_text() == '{"kept": true}\n'


def test_files_not_named_by_an_id_fail_before_inference_unless_skipped(
    spark: Any, zoo: Path, foods: FoodsDataset
) -> None:
    with pytest.raises(DataError) as raised:
        vista_sql.execute(statement(zoo, foods.table_path), spark=spark, progress=False)
    error = raised.value
    assert error.count == 1
    assert error.ids == ("cat.jpg",)
    assert "not named by an id" in (error.description or "")
    assert error.highlight == f"'{zoo}'"


def test_two_files_of_one_id_in_nested_folders_are_duplicates(
    spark: Any, foods: FoodsDataset, tmp_path: Path
) -> None:
    images = copy_images(foods, tmp_path / "images")
    for folder in ("2023", "2024"):
        (images / folder).mkdir()
        picture(foods, 5).save(images / folder / "5.png")
    with pytest.raises(DataError) as raised:
        vista_sql.execute(statement(images, foods.table_path), spark=spark, progress=False)
    assert raised.value.ids == (5,)
    assert raised.value.count == 1
    assert "duplicated ids" in str(raised.value)
    assert raised.value.highlight == f"'{images}'"


@pytest.mark.parametrize("contents", [(), ("readme.txt", "5.gif")], ids=["empty", "no images"])
def test_a_directory_without_images_is_a_data_error_pointing_at_it(
    spark: Any, foods: FoodsDataset, tmp_path: Path, contents: tuple[str, ...]
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in contents:
        (images / name).write_text("x")
    with pytest.raises(DataError) as raised:
        vista_sql.execute(statement(images, foods.table_path), spark=spark, progress=False)
    assert "holds no images" in (raised.value.description or "")
    assert f"{len(contents)} other files" in (raised.value.description or "")
    assert raised.value.highlight == f"'{images}'"
