"""A multimodal table from Zalando's Fashion-MNIST photographs (Debian ``dataset-fashion-mnist``).

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; MIT) is 70,000 28x28 grayscale product photographs of
10 classes. Debian installs it in ``/usr/share/datasets/fashion-mnist`` (``sudo apt-get install
dataset-fashion-mnist``). :func:`make_fashion_mnist` picks ``rows`` images of the chosen classes
from its training split, upscales them, and pairs them with catalogue attributes drawn for each
garment, so that a model sees a product's picture and its structured data, as a shop would. The
default pair, T-shirt/top vs shirt, is the hardest of the dataset (most confusions of the
benchmark CNNs); pullover vs coat is the next hardest.

Layout written by ``make_fashion_mnist(out)``::

    out/images/<id>.png         one grayscale PNG per row, image_size x image_size
    out/fashion_mnist.parquet   id, price_eur, weight_g, cotton_share, warmth, label, class, source

**Rows.** ``rows`` images, split evenly between ``classes`` (the first classes get one more when
it does not divide), drawn without replacement from the training split with
``numpy.random.default_rng(seed)``, then shuffled; ``id`` is 0 .. rows-1. ``label`` is the class's
position in ``classes`` (0 for the first), ``class`` its name, ``source`` the training image it
came from (``train-images-idx3-ubyte.gz#<index>``).

**Images.** The 28x28 image (a light garment on black, as published), resized to ``image_size``
with Pillow's bicubic filter, saved as 8-bit grayscale PNG (lossless; the decoder converts it to
RGB as Keras does).

**Structured columns.** Attributes of the product, not measurements of the picture, drawn per
garment from its class's typical values (``ATTRIBUTES``) with noise large enough that classes
overlap: with them alone a classifier separates T-shirts from shirts with about 0.72 accuracy and
pullovers from coats with about 0.74 (2,000 rows, logistic regression), so the picture must add
the rest. Given the class they are independent of the picture and of each other:

- ``price_eur``: log-normal, median the class's price, sigma 0.5;
- ``weight_g``: log-normal, median the class's weight, sigma 0.35;
- ``cotton_share``: Beta with the class's mean and concentration 5 (so a share in (0, 1));
- ``warmth``: Normal around the class's warmth (0 summer .. 5 winter), sd 1.5, cut at 0.

Every value is rounded as a catalogue would print it (price to cents, weight to grams, share to
0.01, warmth to 0.1). A garment's attributes depend only on ``seed`` and its training image index
(``numpy.random.SeedSequence([seed, index])``), so the same image gets the same attributes in any
selection.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vista_sql.datasets._debian import (
    ID_COLUMN,
    RealDataset,
    check_arguments,
    is_integer,
    prepare_directory,
    require_debian_file,
    write_parquet,
)
from vista_sql.errors import VistaError, did_you_mean

DEBIAN_PACKAGE = "dataset-fashion-mnist"
DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGES_FILE = "train-images-idx3-ubyte.gz"
LABELS_FILE = "train-labels-idx1-ubyte.gz"
TABLE_STEM = "fashion_mnist"
LABEL_COLUMN = "label"

CLASSES: tuple[str, ...] = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
"""Fashion-MNIST's classes by label code (0 "T-shirt/top" .. 9 "Ankle boot"), as names here."""


@dataclass(frozen=True, slots=True)
class Attributes:
    """A class's typical catalogue attributes: the centres the rows are drawn around."""

    price_eur: float
    weight_g: float
    cotton_share: float
    warmth: float


ATTRIBUTES: dict[str, Attributes] = {
    "t-shirt": Attributes(15.0, 160.0, 0.85, 1.0),
    "trouser": Attributes(45.0, 500.0, 0.60, 2.5),
    "pullover": Attributes(40.0, 420.0, 0.45, 4.0),
    "dress": Attributes(40.0, 280.0, 0.50, 1.5),
    "coat": Attributes(55.0, 560.0, 0.35, 4.8),
    "sandal": Attributes(30.0, 300.0, 0.10, 0.5),
    "shirt": Attributes(22.0, 190.0, 0.75, 1.5),
    "sneaker": Attributes(60.0, 700.0, 0.20, 1.0),
    "bag": Attributes(50.0, 600.0, 0.30, 0.0),
    "ankle-boot": Attributes(80.0, 900.0, 0.10, 3.0),
}

FEATURE_COLUMNS: tuple[str, ...] = ("price_eur", "weight_g", "cotton_share", "warmth")
PRICE_SIGMA = 0.5
WEIGHT_SIGMA = 0.35
COTTON_CONCENTRATION = 5.0
WARMTH_SD = 1.5


def load_fashion_mnist(data_dir: Path = DATA_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The training split: (60000, 28, 28) uint8 images and (60000,) uint8 labels."""
    images_path = require_debian_file(data_dir / IMAGES_FILE, DEBIAN_PACKAGE, "Fashion-MNIST")
    labels_path = require_debian_file(data_dir / LABELS_FILE, DEBIAN_PACKAGE, "Fashion-MNIST")
    images = _read_idx(images_path, magic=2051)
    labels = _read_idx(labels_path, magic=2049)
    if len(images) != len(labels):
        raise VistaError(f"{images_path} has {len(images)} images but {len(labels)} labels")
    return images, labels


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (LeCun's MNIST format): big-endian magic, dimensions, then uint8 data."""
    with gzip.open(path, "rb") as stream:
        data = stream.read()
    (found,) = struct.unpack(">i", data[:4])
    if found != magic:
        raise VistaError(f"{path} is not an IDX file of the expected kind (magic {found})")
    dimensions = magic & 0xFF
    shape = struct.unpack(f">{dimensions}i", data[4 : 4 + 4 * dimensions])
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dimensions)
    if values.size != int(np.prod(shape)):
        raise VistaError(f"{path} is truncated: {values.size} values for shape {shape}")
    return values.reshape(shape)


def make_fashion_mnist(
    out_dir: str | Path,
    *,
    classes: tuple[str, ...] | list[str] = ("t-shirt", "shirt"),
    rows: int = 2000,
    seed: int = 0,
    image_size: int = 224,
    overwrite: bool = False,
    data_dir: str | Path = DATA_DIR,
) -> RealDataset:
    """Write ``rows`` Fashion-MNIST garments of ``classes`` with their attributes into ``out_dir``.

    ``classes`` are names from ``CLASSES`` (case-insensitive), at least two. ``out_dir`` must be
    missing or empty unless ``overwrite``; then only the images and the table a previous run
    wrote are replaced. Raises VistaError saying how to install ``dataset-fashion-mnist`` when
    its files are missing.
    """
    chosen = _check_classes(classes)
    check_arguments(seed, image_size)
    if not is_integer(rows) or rows < len(chosen):
        raise VistaError(f"rows must be an integer of at least {len(chosen)}, got {rows!r}")
    images, labels = load_fashion_mnist(Path(data_dir))
    indices = select_rows(labels, chosen, int(rows), int(seed))
    root = Path(out_dir)
    table_path = root / f"{TABLE_STEM}.parquet"
    images_dir = prepare_directory(root, table_path, overwrite)

    from PIL import Image

    for row_id, index in enumerate(indices):
        picture = Image.fromarray(images[index])
        picture = picture.resize((image_size, image_size), Image.Resampling.BICUBIC)
        picture.save(images_dir / f"{row_id}.png", format="PNG")
    class_codes = [CLASSES.index(name) for name in chosen]
    row_classes = [chosen[class_codes.index(int(labels[i]))] for i in indices]
    attributes = np.array(
        [
            garment_attributes(name, int(index), int(seed))
            for name, index in zip(row_classes, indices, strict=True)
        ]
    ).reshape(len(indices), len(FEATURE_COLUMNS))
    columns: dict[str, np.ndarray | list[str]] = {
        ID_COLUMN: np.arange(len(indices), dtype=np.int64)
    }
    for position, name in enumerate(FEATURE_COLUMNS):
        columns[name] = attributes[:, position]
    columns[LABEL_COLUMN] = np.array([chosen.index(n) for n in row_classes], dtype=np.int64)
    columns["class"] = row_classes
    columns["source"] = [f"{IMAGES_FILE}#{int(index)}" for index in indices]
    write_parquet(table_path, columns)
    return RealDataset(
        root=root,
        images_dir=images_dir,
        table_path=table_path,
        rows=len(indices),
        seed=int(seed),
        image_size=int(image_size),
        label=LABEL_COLUMN,
        feature_columns=FEATURE_COLUMNS,
        classes=chosen,
    )


def _check_classes(classes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    if isinstance(classes, str) or len(classes) < 2:
        raise VistaError(f"classes must name at least two classes, got {classes!r}")
    chosen = tuple(str(name).lower() for name in classes)
    for name in chosen:
        if name not in CLASSES:
            raise VistaError(f"unknown Fashion-MNIST class {name!r}; {did_you_mean(name, CLASSES)}")
    if len(set(chosen)) != len(chosen):
        raise VistaError(f"classes must be distinct, got {classes!r}")
    return chosen


def select_rows(labels: np.ndarray, classes: tuple[str, ...], rows: int, seed: int) -> np.ndarray:
    """Training image indices: ``rows`` split evenly between ``classes``, shuffled."""
    rng = np.random.default_rng(seed)
    picked: list[np.ndarray] = []
    for position, name in enumerate(classes):
        wanted = rows // len(classes) + (1 if position < rows % len(classes) else 0)
        pool = np.flatnonzero(labels == CLASSES.index(name))
        if wanted > len(pool):
            raise VistaError(
                f"rows={rows} needs {wanted} {name} images; the training split has {len(pool)}"
            )
        picked.append(np.sort(rng.choice(pool, size=wanted, replace=False)))
    indices = np.concatenate(picked)
    return indices[rng.permutation(len(indices))]


def garment_attributes(name: str, index: int, seed: int) -> tuple[float, float, float, float]:
    """(price_eur, weight_g, cotton_share, warmth) of training image ``index`` of class ``name``."""
    typical = ATTRIBUTES[name]
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    price = float(rng.lognormal(np.log(typical.price_eur), PRICE_SIGMA))
    weight = float(rng.lognormal(np.log(typical.weight_g), WEIGHT_SIGMA))
    mean = typical.cotton_share
    cotton = float(rng.beta(mean * COTTON_CONCENTRATION, (1.0 - mean) * COTTON_CONCENTRATION))
    warmth = max(0.0, float(rng.normal(typical.warmth, WARMTH_SD)))
    return (round(price, 2), float(round(weight)), round(cotton, 2), round(warmth, 1))
