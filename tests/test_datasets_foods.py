"""The Foods-like dataset generator: layout, types, determinism, and signal in its images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vista_sql.datasets.foods import (
    BASE_FEATURES,
    FEATURE_COLUMNS,
    FoodsDataset,
    food_row,
    make_foods,
)
from vista_sql.errors import VistaError


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return make_foods(tmp_path_factory.mktemp("foods") / "out", 40, seed=3)


@pytest.fixture(scope="module")
def signal_rows(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return make_foods(tmp_path_factory.mktemp("signal") / "out", 500, seed=11)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_layout_columns_and_types(small: FoodsDataset) -> None:
    assert small.table_path == small.root / "foods.parquet"
    assert small.images_dir == small.root / "images"
    assert sorted(p.name for p in small.root.iterdir()) == ["foods.parquet", "images"]

    table = pq.read_table(small.table_path)
    assert tuple(table.column_names) == small.columns
    assert small.columns == ("id", *FEATURE_COLUMNS, "healthy")
    assert len(FEATURE_COLUMNS) == 9 + 36 + 84
    assert {"fat_x_sugars", "fat_x_sugars_x_salt", "energy_x_protein"} <= set(FEATURE_COLUMNS)
    assert table.num_rows == small.rows == 40
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("healthy").type == pa.int64()
    assert all(table.schema.field(name).type == pa.float64() for name in FEATURE_COLUMNS)
    assert table.column("id").to_pylist() == list(range(40))
    assert set(table.column("healthy").to_pylist()) == {0, 1}


def test_features_are_plausible_nutrition_facts_and_their_products(small: FoodsDataset) -> None:
    frame = pq.read_table(small.table_path).to_pandas()
    assert (frame["sugars"] <= frame["carbohydrates"]).all()
    assert (frame["saturated_fat"] <= frame["fat"]).all()
    grams = frame[["fat", "carbohydrates", "protein", "fibre", "salt"]].sum(axis=1)
    assert (grams <= 100.5).all()
    assert (frame[list(BASE_FEATURES)] >= 0).all().all()
    from_macros = 9 * frame["fat"] + 4 * frame["carbohydrates"] + 4 * frame["protein"]
    from_macros += 2 * frame["fibre"]
    assert np.allclose(frame["energy"], from_macros, rtol=0.15, atol=2)
    assert (frame["fat_x_sugars"] == frame["fat"] * frame["sugars"]).all()
    triple = frame["energy"] * frame["salt"] * frame["additives"]
    assert (frame["energy_x_salt_x_additives"] == triple).all()


def test_images_are_jpegs_at_the_cnn_input_size_named_by_id(small: FoodsDataset) -> None:
    names = sorted(p.name for p in small.images_dir.iterdir())
    assert names == sorted(f"{row_id}.jpg" for row_id in range(40))
    for name in names:
        with Image.open(small.images_dir / name) as image:
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            assert image.size == (227, 227)


def test_image_size_is_configurable(tmp_path: Path) -> None:
    dataset = make_foods(tmp_path / "out", 3, image_size=96)
    with Image.open(dataset.images_dir / "2.jpg") as image:
        assert image.size == (96, 96)


def test_same_seed_gives_byte_identical_files(small: FoodsDataset, tmp_path: Path) -> None:
    again = make_foods(tmp_path / "again", 40, seed=3)
    assert _files(again.root) == _files(small.root)
    other = make_foods(tmp_path / "other", 40, seed=4)
    assert other.table_path.read_bytes() != small.table_path.read_bytes()
    assert (other.images_dir / "0.jpg").read_bytes() != (small.images_dir / "0.jpg").read_bytes()


def test_fewer_rows_are_a_prefix_of_more_rows(small: FoodsDataset, tmp_path: Path) -> None:
    fewer = make_foods(tmp_path / "fewer", 15, seed=3)
    for row_id in range(15):
        name = f"{row_id}.jpg"
        assert (fewer.images_dir / name).read_bytes() == (small.images_dir / name).read_bytes()
    assert pq.read_table(fewer.table_path).equals(pq.read_table(small.table_path).slice(0, 15))


def test_parallel_workers_write_the_same_dataset(tmp_path: Path) -> None:
    done: list[int] = []
    serial = make_foods(tmp_path / "serial", 130, seed=5, workers=1)
    parallel = make_foods(tmp_path / "parallel", 130, seed=5, workers=2, progress=done.append)
    assert _files(parallel.root) == _files(serial.root)
    assert done == sorted(done)
    assert done[-1] == 130


def test_the_table_streams_in_row_groups_and_publishes_whole(
    small: FoodsDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are buffered into row groups and written as they come; the table appears under its
    name only when complete, and holds the same rows as one written at once."""
    import vista_sql.datasets.foods as foods

    monkeypatch.setattr(foods, "_ROW_GROUP_ROWS", 8)
    monkeypatch.setattr(foods, "_CHUNK_ROWS", 3)
    streamed = make_foods(tmp_path / "streamed", 40, seed=3)
    assert pq.ParquetFile(streamed.table_path).metadata.num_row_groups == 5  # 9, 9, 9, 9 and 4 rows
    assert pq.read_table(streamed.table_path).equals(pq.read_table(small.table_path))
    assert sorted(p.name for p in streamed.root.iterdir()) == ["foods.parquet", "images"]
    as_csv = make_foods(tmp_path / "csv", 10, seed=3, fmt="csv")
    assert pcsv.read_csv(as_csv.table_path).num_rows == 10


def test_csv_holds_the_same_values_as_parquet(small: FoodsDataset, tmp_path: Path) -> None:
    as_csv = make_foods(tmp_path / "csv", 40, seed=3, fmt="csv")
    assert as_csv.table_path == as_csv.root / "foods.csv"
    from_csv = pcsv.read_csv(as_csv.table_path)
    from_parquet = pq.read_table(small.table_path)
    assert from_csv.column_names == from_parquet.column_names
    for name in from_parquet.column_names:
        assert from_csv.column(name).to_pylist() == from_parquet.column(name).to_pylist(), name


def test_refuses_a_non_empty_directory_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_foods(out, 12, seed=1)
    with pytest.raises(VistaError, match="is not empty") as caught:
        make_foods(out, 5, seed=1)
    assert "overwrite=True" in str(caught.value)

    (out / "notes.txt").write_text("kept")
    replaced = make_foods(out, 5, seed=2, overwrite=True)
    assert sorted(p.name for p in replaced.images_dir.iterdir()) == [f"{i}.jpg" for i in range(5)]
    assert pq.read_table(replaced.table_path).num_rows == 5
    assert (out / "notes.txt").read_text() == "kept"

    make_foods(out, 5, seed=2, fmt="csv", overwrite=True)
    assert not (out / "foods.parquet").exists()


def test_overwrite_leaves_foreign_image_files_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_foods(out, 3)
    (out / "images" / "cat.png").write_bytes(b"not ours")
    with pytest.raises(VistaError, match="did not write"):
        make_foods(out, 3, overwrite=True)
    assert (out / "images" / "cat.png").read_bytes() == b"not ours"


def test_an_existing_file_is_not_an_output_directory(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(VistaError, match="not a directory"):
        make_foods(path, 3)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"rows": 0}, "rows must be a positive integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"rows": True}, "rows must be a positive integer"),
        ({"image_size": 8}, "image_size must be an integer between"),
        ({"image_size": 64.0}, "image_size must be an integer between"),
        ({"fmt": "parket"}, "did you mean parquet"),
        ({"workers": 0}, "workers must be an integer of at least 1"),
    ],
)
def test_bad_arguments_are_errors(
    tmp_path: Path, arguments: dict[str, object], message: str
) -> None:
    call: dict[str, object] = {"rows": 3, **arguments}
    with pytest.raises(VistaError, match=message):
        make_foods(tmp_path / "out", **call)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_label_noise_is_moderate_and_classes_balanced() -> None:
    rows = [food_row(row_id, seed=0) for row_id in range(3000)]
    labels = np.array([row.healthy for row in rows])
    best_possible = np.mean((np.array([row.logit for row in rows]) > 0) == labels)
    assert 0.85 <= best_possible <= 0.95
    assert 0.4 <= labels.mean() <= 0.6


def test_the_label_depends_on_every_visual_latent() -> None:
    rows = [food_row(row_id, seed=1) for row_id in range(3000)]
    labels = np.array([row.healthy for row in rows], dtype=float)
    grain = np.array([row.grain for row in rows], dtype=float)
    portion = np.array([row.portion for row in rows])
    vividness = np.array([row.vividness for row in rows])
    assert np.corrcoef(grain, labels)[0, 1] > 0.15
    assert np.corrcoef(vividness, labels)[0, 1] > 0.15
    assert np.corrcoef(portion, labels)[0, 1] < -0.15


# Where each statistic sits in the vector _image_statistics returns.
_MEAN_COLOURS = slice(0, 15)
_CENTRE_COLOUR = slice(12, 15)
_CHROMA_95TH = 16
_TEXTURE_RATIO = 21


def _image_statistics(path: Path) -> np.ndarray:
    """Mean colour per quadrant and centre, colourfulness, and texture energy at two scales."""
    with Image.open(path) as image:
        pixels = np.asarray(image, dtype=np.float64)
    height, width, _ = pixels.shape
    half_h, half_w = height // 2, width // 2
    regions = [
        pixels[:half_h, :half_w],
        pixels[:half_h, half_w:],
        pixels[half_h:, :half_w],
        pixels[half_h:, half_w:],
        pixels[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4],
    ]
    colours = [region.mean(axis=(0, 1)) for region in regions]
    chroma = pixels.max(axis=2) - pixels.min(axis=2)
    luminance = pixels.mean(axis=2)
    padded = np.pad(luminance, 1, mode="edge")
    blurred = (
        sum(padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)) / 9
    )
    fine = np.abs(luminance - blurred)
    blocks = luminance[: height // 4 * 4, : width // 4 * 4]
    blocks = blocks.reshape(height // 4, 4, width // 4, 4).mean(axis=(1, 3))
    coarse = np.abs(np.diff(blocks, axis=0)).mean() + np.abs(np.diff(blocks, axis=1)).mean()
    texture = [fine.mean(), (fine > 8).mean(), coarse, fine.mean() / (coarse + 1)]
    colourfulness = [chroma.mean(), np.percentile(chroma, 95), (chroma > 40).mean()]
    return np.concatenate([*colours, colourfulness, texture])


def _standardize(matrix: np.ndarray) -> np.ndarray:
    return (matrix - matrix.mean(axis=0)) / (matrix.std(axis=0) + 1e-9)


def _logistic_regression_accuracy(
    features: np.ndarray, labels: np.ndarray, folds: int = 5
) -> float:
    """Mean held-out accuracy of an L2 logistic regression fitted by Newton's method, k-fold."""
    design = np.column_stack([np.ones(len(labels)), _standardize(features)])
    penalty = np.eye(design.shape[1])
    penalty[0, 0] = 0.0
    fold_of_row = np.arange(len(labels)) % folds
    accuracies = []
    for fold in range(folds):
        train, test = fold_of_row != fold, fold_of_row == fold
        weights = np.zeros(design.shape[1])
        for _ in range(25):
            probability = 1.0 / (1.0 + np.exp(-design[train] @ weights))
            gradient = design[train].T @ (probability - labels[train]) + penalty @ weights
            curvature = (design[train] * (probability * (1 - probability))[:, None]).T
            hessian = curvature @ design[train] + penalty
            weights -= np.linalg.solve(hessian, gradient)
        predicted = (design[test] @ weights > 0).astype(int)
        accuracies.append(float(np.mean(predicted == labels[test])))
    return float(np.mean(accuracies))


@pytest.fixture(scope="module")
def signal_statistics(signal_rows: FoodsDataset) -> np.ndarray:
    paths = [signal_rows.images_dir / f"{row_id}.jpg" for row_id in range(signal_rows.rows)]
    return np.stack([_image_statistics(path) for path in paths])


def test_images_carry_signal_the_structured_features_lack(
    signal_rows: FoodsDataset, signal_statistics: np.ndarray
) -> None:
    table = pq.read_table(signal_rows.table_path)
    labels = np.asarray(table.column("healthy"))
    nutrition = np.log1p(np.column_stack([np.asarray(table.column(c)) for c in BASE_FEATURES]))
    chance = max(labels.mean(), 1 - labels.mean())

    structured = _logistic_regression_accuracy(nutrition, labels)
    both = _logistic_regression_accuracy(np.column_stack([nutrition, signal_statistics]), labels)

    assert structured >= chance + 0.06
    assert both >= structured + 0.04


def test_each_visual_latent_shows_at_its_own_scale(
    signal_rows: FoodsDataset, signal_statistics: np.ndarray
) -> None:
    rows = [food_row(row_id, seed=signal_rows.seed) for row_id in range(signal_rows.rows)]

    def correlation(statistic: int | slice, latent: str) -> float:
        values = np.array([getattr(row, latent) for row in rows], dtype=float)
        columns = signal_statistics[:, statistic].reshape(len(rows), -1)
        return max(abs(np.corrcoef(column, values)[0, 1]) for column in columns.T)

    assert correlation(_TEXTURE_RATIO, "grain") > 0.4
    assert correlation(_MEAN_COLOURS, "grain") < 0.2  # a speckle, not a colour
    assert correlation(_CHROMA_95TH, "vividness") > 0.4
    assert correlation(_TEXTURE_RATIO, "vividness") < 0.2  # a colour, not a texture
    assert correlation(_CENTRE_COLOUR, "portion") > 0.4  # the dish covers the plate's middle
