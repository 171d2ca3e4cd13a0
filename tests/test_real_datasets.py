"""The datasets built from Debian's Fashion-MNIST and Open Clip Art packages.

Most tests build small stand-ins of the packages' files in a temporary directory (IDX files,
RGBA drawings in category folders), so they run where the packages are not installed; the last
ones read the installed packages and skip, saying how to install them, when they are absent.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vista_sql.datasets import clipart_foods, fashion_mnist
from vista_sql.datasets.clipart_foods import list_drawings, make_clipart_foods
from vista_sql.datasets.fashion_mnist import make_fashion_mnist
from vista_sql.errors import VistaError


def write_idx(path: Path, values: np.ndarray, magic: int) -> None:
    header = struct.pack(">i", magic) + struct.pack(f">{values.ndim}i", *values.shape)
    path.write_bytes(gzip.compress(header + values.astype(np.uint8).tobytes()))


@pytest.fixture
def fake_fashion(tmp_path: Path) -> Path:
    """A training split of 60 images: class c's images are filled with the value 10 * c + i."""
    data = tmp_path / "fashion-mnist"
    data.mkdir()
    labels = np.repeat(np.arange(10), 6)
    images = np.zeros((60, 28, 28), np.uint8)
    for index, label in enumerate(labels):
        images[index] = 10 * label + index % 6
    write_idx(data / fashion_mnist.IMAGES_FILE, images, 2051)
    write_idx(data / fashion_mnist.LABELS_FILE, labels, 2049)
    return data


def read_table(path: Path) -> dict[str, list[object]]:
    return pq.read_table(path).to_pydict()


def test_fashion_layout_balance_and_labels(tmp_path: Path, fake_fashion: Path) -> None:
    out = tmp_path / "out"
    made = make_fashion_mnist(
        out, classes=("Coat", "pullover"), rows=9, image_size=40, data_dir=fake_fashion
    )
    assert made.classes == ("coat", "pullover") and made.rows == 9
    table = read_table(made.table_path)
    assert list(table) == ["id", *fashion_mnist.FEATURE_COLUMNS, "label", "class", "source"]
    assert table["id"] == list(range(9))
    assert sorted(table["class"]) == ["coat"] * 5 + ["pullover"] * 4  # the first gets the extra
    assert all(
        label == ("coat", "pullover").index(name)
        for label, name in zip(table["label"], table["class"], strict=True)
    )
    sources = [int(str(source).split("#")[1]) for source in table["source"]]
    assert len(set(sources)) == 9
    for row_id, (source, name) in enumerate(zip(sources, table["class"], strict=True)):
        assert fashion_mnist.CLASSES[source // 6] == name
        with Image.open(made.images_dir / f"{row_id}.png") as image:
            assert image.size == (40, 40) and image.mode == "L"
            assert np.asarray(image).max() == 10 * (source // 6) + source % 6  # flat: same value
    assert sorted(p.name for p in out.iterdir()) == ["fashion_mnist.parquet", "images"]


def test_fashion_attributes_follow_the_class_and_the_image(
    tmp_path: Path, fake_fashion: Path
) -> None:
    first = make_fashion_mnist(
        tmp_path / "a", classes=("t-shirt", "coat"), rows=12, image_size=32, data_dir=fake_fashion
    )
    again = make_fashion_mnist(
        tmp_path / "b", classes=("t-shirt", "coat"), rows=12, image_size=32, data_dir=fake_fashion
    )
    assert read_table(first.table_path) == read_table(again.table_path)
    table = read_table(first.table_path)
    by_source = {
        source: tuple(table[c][i] for c in fashion_mnist.FEATURE_COLUMNS)
        for i, source in enumerate(table["source"])
    }
    fewer = read_table(
        make_fashion_mnist(
            tmp_path / "c",
            classes=("coat", "t-shirt"),
            rows=4,
            image_size=32,
            data_dir=fake_fashion,
        ).table_path
    )
    for i, source in enumerate(fewer["source"]):
        if source in by_source:  # the same garment has the same attributes in any selection
            assert tuple(fewer[c][i] for c in fashion_mnist.FEATURE_COLUMNS) == by_source[source]
    for name in ("t-shirt", "coat"):
        draws = np.array(
            [fashion_mnist.garment_attributes(name, index, seed=0) for index in range(400)]
        )
        typical = fashion_mnist.ATTRIBUTES[name]
        assert np.median(draws[:, 0]) == pytest.approx(typical.price_eur, rel=0.1)
        assert draws[:, 2].mean() == pytest.approx(typical.cotton_share, abs=0.03)
        assert (draws[:, 2] >= 0).all() and (draws[:, 2] <= 1).all() and (draws[:, 3] >= 0).all()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"classes": ("t-shirt", "shrit")}, "unknown Fashion-MNIST class 'shrit'; did you mean"),
        ({"classes": ("t-shirt",)}, "at least two classes"),
        ({"classes": ("coat", "Coat")}, "must be distinct"),
        ({"rows": 13, "classes": ("coat", "bag")}, "needs 7 coat images; the training split has 6"),
        ({"rows": 1}, "rows must be an integer of at least 2"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"image_size": 8}, "image_size must be an integer between 32 and 1024"),
    ],
)
def test_fashion_arguments_are_checked(
    tmp_path: Path, fake_fashion: Path, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(VistaError, match=message):
        make_fashion_mnist(tmp_path / "out", data_dir=fake_fashion, **arguments)  # type: ignore[arg-type]


def test_missing_packages_say_how_to_install_them(tmp_path: Path) -> None:
    with pytest.raises(VistaError) as caught:
        make_fashion_mnist(tmp_path / "out", data_dir=tmp_path / "nowhere")
    assert "sudo apt-get install dataset-fashion-mnist" in str(caught.value)
    with pytest.raises(VistaError) as caught:
        make_clipart_foods(tmp_path / "out", food_dir=tmp_path / "nowhere")
    assert "sudo apt-get install openclipart-png" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_an_occupied_directory_needs_overwrite(tmp_path: Path, fake_fashion: Path) -> None:
    out = tmp_path / "out"
    make_fashion_mnist(out, rows=4, image_size=32, data_dir=fake_fashion)
    with pytest.raises(VistaError, match="is not empty"):
        make_fashion_mnist(out, rows=4, image_size=32, data_dir=fake_fashion)
    (out / "notes.txt").write_text("mine")
    make_fashion_mnist(out, rows=2, image_size=32, data_dir=fake_fashion, overwrite=True)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["0.png", "1.png"]
    assert (out / "notes.txt").read_text() == "mine"
    (out / "images" / "keep.jpg").write_bytes(b"x")
    with pytest.raises(VistaError, match="holds files this generator did not write"):
        make_fashion_mnist(out, rows=2, image_size=32, data_dir=fake_fashion, overwrite=True)


def drawing(size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    """A transparent canvas with an opaque rectangle in its middle half."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    width, height = size
    image.paste((*colour, 255), (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    return image


@pytest.fixture
def fake_food(tmp_path: Path) -> Path:
    food = tmp_path / "food"
    for folder in ("fruit", "desserts", "beverages/alcohol"):
        (food / folder).mkdir(parents=True)
    drawing((400, 200), (200, 30, 30)).save(food / "fruit" / "apple.png")
    drawing((400, 200), (200, 30, 30)).convert("LA").save(food / "fruit" / "apple_bw.png")
    drawing((100, 300), (30, 30, 200)).save(food / "fruit" / "plum_bw.png")  # no colour twin
    drawing((2000, 2000), (240, 200, 40)).save(food / "desserts" / "cake.png")
    drawing((50, 50), (120, 80, 20)).convert("P").save(food / "beverages" / "alcohol" / "ale.png")
    drawing((60, 90), (10, 160, 10)).save(food / "pizza.png")
    return food


def test_clipart_rows_categories_and_pictures(tmp_path: Path, fake_food: Path) -> None:
    assert [(d.source, d.category) for d in list_drawings(fake_food)] == [
        ("beverages/alcohol/ale.png", "alcohol"),
        ("desserts/cake.png", "desserts"),
        ("fruit/apple.png", "fruit"),
        ("fruit/plum_bw.png", "fruit"),
        ("pizza.png", "assorted"),
    ]
    made = make_clipart_foods(tmp_path / "out", image_size=64, food_dir=fake_food)
    table = read_table(made.table_path)
    assert list(table) == [
        "id",
        *clipart_foods.FEATURE_COLUMNS,
        "healthy",
        "category",
        "source",
    ]
    assert table["source"][2] == "fruit/apple.png" and table["category"][4] == "assorted"
    assert set(table["healthy"]) <= {0, 1}
    with Image.open(made.images_dir / "2.png") as image:  # 400x200 apple: fitted to 64x32
        assert image.mode == "RGB" and image.size == (64, 64)
        pixels = np.asarray(image).astype(int)
    assert (pixels[:16] == 255).all() and (pixels[-16:] == 255).all()  # letterbox: white
    assert (pixels[20:44, 4:12] == 255).all()  # transparent: white, not black
    assert np.abs(pixels[32, 32] - [200, 30, 30]).max() <= 2  # the opaque middle keeps its colour
    with Image.open(made.images_dir / "1.png") as image:  # the huge cake, reduced then fitted
        assert np.abs(np.asarray(image)[32, 32].astype(int) - [240, 200, 40]).max() <= 2
    again = make_clipart_foods(tmp_path / "again", image_size=64, food_dir=fake_food)
    assert read_table(again.table_path) == table
    other_seed = make_clipart_foods(tmp_path / "seed", seed=5, image_size=64, food_dir=fake_food)
    assert read_table(other_seed.table_path)["energy_kcal"] != table["energy_kcal"]


def test_clipart_label_follows_nutrition_and_category() -> None:
    """Over many draws: fruit is healthier than desserts, and fewer points mean healthier."""

    def rate(category: str) -> float:
        rows = [
            clipart_foods.food_row(clipart_foods.Drawing(f"{category}/{i}.png", category), 0)
            for i in range(300)
        ]
        return float(np.mean([healthy for _, healthy in rows]))

    assert rate("fruit") > 0.8 > 0.2 > rate("desserts")
    light = clipart_foods.Nutrition(50.0, 0.5, 2.0, 3.0, 2.0, 0.05)
    heavy = clipart_foods.Nutrition(450.0, 25.0, 30.0, 0.5, 3.0, 1.5)
    assert (
        clipart_foods.health_logit(light, "dairy") > 0 > clipart_foods.health_logit(heavy, "dairy")
    )
    assert clipart_foods.health_logit(light, "fruit") > clipart_foods.health_logit(light, "alcohol")


def test_installed_fashion_mnist(tmp_path: Path) -> None:
    if not (fashion_mnist.DATA_DIR / fashion_mnist.IMAGES_FILE).exists():
        pytest.skip("Debian package dataset-fashion-mnist not installed (`make real-data`)")
    made = make_fashion_mnist(tmp_path / "out", rows=20, image_size=32)
    table = read_table(made.table_path)
    assert table["label"].count(0) == table["label"].count(1) == 10
    images, labels = fashion_mnist.load_fashion_mnist()
    assert images.shape == (60000, 28, 28) and np.bincount(labels).tolist() == [6000] * 10


def test_installed_clipart_drawings() -> None:
    if not clipart_foods.FOOD_DIR.exists():
        pytest.skip("Debian package openclipart-png not installed (`make real-data`)")
    drawings = list_drawings()
    assert len(drawings) > 250
    counts = {c: sum(d.category == c for d in drawings) for c in clipart_foods.TYPICAL}
    assert all(count > 0 for count in counts.values()), counts
