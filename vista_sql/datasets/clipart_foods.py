"""A Foods-like multimodal table from Open Clip Art food drawings (Debian ``openclipart-png``).

The VISTA paper's *Foods* pairs nutrition facts with a photograph and a ``healthy`` label. Debian's
``openclipart-png`` (public domain; ``sudo apt-get install openclipart-png``) holds about 370
food drawings in ``/usr/share/openclipart/png/food``, filed by kind. :func:`make_clipart_foods`
turns every drawing into a row: the picture, nutrition facts drawn for its kind of food, and a
``healthy`` label that depends on both, so the picture adds what the numbers miss.

Layout written by ``make_clipart_foods(out)``::

    out/images/<id>.png           one RGB PNG per drawing, image_size x image_size
    out/clipart_foods.parquet     id, energy_kcal, fat_g, sugars_g, fibre_g, protein_g, salt_g,
                                  healthy, category, source

**Rows.** Every PNG under ``food/`` except black-and-white copies of a colour drawing (a name with
``_bw`` whose colour twin exists: the same drawing twice would leak between training and
validation), in sorted path order; ``id`` is 0 .. n-1 in that order (313 rows with the package's
1:0.18 release). ``category`` comes from the folder (``CATEGORY_OF_FOLDER``): fruit, vegetables,
dairy, drinks, alcohol, breads, desserts, meat, and ``assorted`` for the drawings filed at the top
(mostly dishes: pizza, lasagna, burritos, fries, soups; some fruit and vegetables; a few menus
and kitchen things). ``source`` is the
file's path under ``food/``.

**Images.** The drawing's RGBA (or grey, or palette) pixels composited on white, fitted inside an
``image_size`` square keeping its aspect ratio (Lanczos), centred on white, saved as RGB PNG.
Eleven drawings are huge (about 10,500 x 16,000 pixels, 170 million): they are decoded whole (about
3 s and 1.3 GB each; Pillow cannot decode a PNG at reduced scale), box-reduced by an integer factor
first, then fitted.

**Nutrition** per 100 g, drawn per row: each fact is log-normal with sigma 0.5 around the
geometric mean of its category's typical value (``TYPICAL``, rounded from common food-composition
tables) and the average food's (the geometric mean of ``TYPICAL`` over categories), weighted
``KIND_WEIGHT`` = 0.3 and 0.7. So a dessert is sweeter and fatter than a fruit on average,
but the kinds overlap widely and the numbers tell them apart only partly: that is what leaves
the picture something to add. Values are rounded as on a label (energy to 1 kcal, grams to
0.1 g, salt to 0.01 g).

**Label.** ``healthy = 1`` when ``logit + noise > 0``, with ``noise`` ~ Logistic(0, 0.4) and::

    points = min(energy / 80, 10) + min(sugars / 4.5, 10) + min(fat / 3, 10)
             + min(salt / 0.225, 10) - min(fibre / 0.9, 5) - min(protein / 1.6, 5)
    logit  = -(points - 7.5) / 4                     # structured: a continuous Nutri-Score
             + CATEGORY_EFFECT[category]             # visible only in the picture

``CATEGORY_EFFECT`` (fruit and vegetables +4.5, alcohol -6, desserts -3.6, drinks -2.4, ...) is
what a nutritionist adds beyond the numbers (whole foods, alcohol, added sugar). About half the rows
are healthy. Simulated with the category known exactly (a perfect picture model), logistic
regression reaches about 0.71 accuracy on the numbers alone, 0.89 on the category alone and 0.92
on both; CNN features of 300 drawings identify the category far less well (see
``benchmarks/bench_real_layers.py``). Rows depend only on ``seed`` and the file's path
(``numpy.random.SeedSequence([seed, crc32(source)])``).
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vista_sql.datasets._debian import (
    ID_COLUMN,
    RealDataset,
    check_arguments,
    prepare_directory,
    require_debian_file,
    write_parquet,
)
from vista_sql.errors import VistaError

DEBIAN_PACKAGE = "openclipart-png"
FOOD_DIR = Path("/usr/share/openclipart/png/food")
TABLE_STEM = "clipart_foods"
LABEL_COLUMN = "healthy"

CATEGORY_OF_FOLDER: dict[str, str] = {
    "": "assorted",
    "fruit": "fruit",
    "vegetables": "vegetables",
    "dairy": "dairy",
    "beverages": "drinks",
    "beverages/alcohol": "alcohol",
    "breads_and_carbs": "breads",
    "desserts": "desserts",
    "meats_and_eggs": "meat",
}
"""Folder under ``food/`` (``""`` for the top) -> category."""


@dataclass(frozen=True, slots=True)
class Nutrition:
    """Facts per 100 g: energy in kcal, salt and the rest in grams."""

    energy_kcal: float
    fat_g: float
    sugars_g: float
    fibre_g: float
    protein_g: float
    salt_g: float


FEATURE_COLUMNS: tuple[str, ...] = (
    "energy_kcal",
    "fat_g",
    "sugars_g",
    "fibre_g",
    "protein_g",
    "salt_g",
)

TYPICAL: dict[str, Nutrition] = {
    "fruit": Nutrition(55.0, 0.3, 11.0, 2.4, 0.8, 0.01),
    "vegetables": Nutrition(30.0, 0.3, 3.5, 2.8, 1.5, 0.05),
    "dairy": Nutrition(250.0, 18.0, 3.0, 0.1, 15.0, 1.2),
    "drinks": Nutrition(40.0, 0.5, 9.0, 0.1, 0.5, 0.02),
    "alcohol": Nutrition(80.0, 0.1, 3.0, 0.1, 0.3, 0.01),
    "breads": Nutrition(260.0, 3.5, 4.0, 5.0, 9.0, 1.1),
    "desserts": Nutrition(380.0, 18.0, 35.0, 1.5, 5.0, 0.4),
    "meat": Nutrition(230.0, 14.0, 0.5, 0.1, 22.0, 1.6),
    "assorted": Nutrition(230.0, 11.0, 3.0, 2.0, 9.0, 1.3),
}
"""Typical per-100 g values of each category (rounded from common food-composition tables)."""

KIND_WEIGHT = 0.3
"""How much of a food's expected facts come from its kind; the rest from the average food."""

CATEGORY_EFFECT: dict[str, float] = {
    "fruit": 4.5,
    "vegetables": 4.5,
    "dairy": 0.0,
    "drinks": -2.4,
    "alcohol": -6.0,
    "breads": 0.9,
    "desserts": -3.6,
    "meat": -1.2,
    "assorted": -1.8,
}
NUTRITION_SIGMA = 0.5
POINTS_CENTRE = 7.5
POINTS_SCALE = 4.0
LABEL_NOISE_SCALE = 0.4
REDUCE_ABOVE = 4
"""A drawing more than this many times the output size (both ways) is box-reduced first."""


@dataclass(frozen=True, slots=True)
class Drawing:
    """One food drawing: its path under ``food/`` and its category."""

    source: str
    category: str


def list_drawings(food_dir: Path = FOOD_DIR) -> list[Drawing]:
    """Every drawing kept (see the module docstring), in sorted path order."""
    require_debian_file(food_dir, DEBIAN_PACKAGE, "Open Clip Art Library food drawings")
    found = sorted(path.relative_to(food_dir).as_posix() for path in food_dir.rglob("*.png"))
    kept = set(found)
    drawings: list[Drawing] = []
    for source in found:
        if "_bw" in source and source.replace("_bw", "", 1) in kept:
            continue
        folder = source.rpartition("/")[0]
        if folder not in CATEGORY_OF_FOLDER:
            raise VistaError(f"{food_dir / source}: folder {folder!r} has no category here")
        drawings.append(Drawing(source, CATEGORY_OF_FOLDER[folder]))
    if not drawings:
        raise VistaError(f"no food drawings in {food_dir}; reinstall {DEBIAN_PACKAGE}")
    return drawings


def expected_log_facts(category: str) -> dict[str, float]:
    """The log-normal centres (log scale) of a ``category`` food's facts, by column."""
    return {
        name: KIND_WEIGHT * math.log(getattr(TYPICAL[category], name))
        + (1.0 - KIND_WEIGHT) * _average_log(name)
        for name in FEATURE_COLUMNS
    }


def _average_log(name: str) -> float:
    return sum(math.log(getattr(typical, name)) for typical in TYPICAL.values()) / len(TYPICAL)


def nutrition_facts(category: str, rng: np.random.Generator) -> Nutrition:
    """One food's facts: log-normal around its centres (``expected_log_facts``), rounded."""
    centre = expected_log_facts(category)

    def draw(name: str) -> float:
        return float(rng.lognormal(centre[name], NUTRITION_SIGMA))

    return Nutrition(
        energy_kcal=float(round(draw("energy_kcal"))),
        fat_g=round(draw("fat_g"), 1),
        sugars_g=round(draw("sugars_g"), 1),
        fibre_g=round(draw("fibre_g"), 1),
        protein_g=round(draw("protein_g"), 1),
        salt_g=round(draw("salt_g"), 2),
    )


def health_logit(facts: Nutrition, category: str) -> float:
    """The noise-free log-odds that a food is healthy (formula in the module docstring)."""
    points = (
        min(facts.energy_kcal / 80.0, 10.0)
        + min(facts.sugars_g / 4.5, 10.0)
        + min(facts.fat_g / 3.0, 10.0)
        + min(facts.salt_g / 0.225, 10.0)
        - min(facts.fibre_g / 0.9, 5.0)
        - min(facts.protein_g / 1.6, 5.0)
    )
    return -(points - POINTS_CENTRE) / POINTS_SCALE + CATEGORY_EFFECT[category]


def food_row(drawing: Drawing, seed: int) -> tuple[Nutrition, int]:
    """A drawing's facts and label under ``seed``."""
    key = zlib.crc32(drawing.source.encode())
    rng = np.random.default_rng(np.random.SeedSequence([seed, key]))
    facts = nutrition_facts(drawing.category, rng)
    noise = float(rng.logistic(0.0, LABEL_NOISE_SCALE))
    return facts, int(health_logit(facts, drawing.category) + noise > 0)


def render_drawing(path: Path, image_size: int) -> Image.Image:
    """The drawing on white, fitted and centred in an ``image_size`` square, RGB.

    ``reduce`` and ``thumbnail`` resample RGBA with premultiplied alpha (Pillow converts to RGBa
    first), so transparent pixels' hidden colours do not bleed into the edges.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as opened:
            opened.load()
            image = opened.convert("RGBA")
    factor = min(image.width, image.height) // (REDUCE_ABOVE * image_size)
    if factor > 1:
        image = image.reduce(factor)
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, image).convert("RGB")
    flat.thumbnail((image_size, image_size), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (image_size, image_size), (255, 255, 255))
    canvas.paste(flat, ((image_size - flat.width) // 2, (image_size - flat.height) // 2))
    return canvas


def make_clipart_foods(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 224,
    overwrite: bool = False,
    food_dir: str | Path = FOOD_DIR,
) -> RealDataset:
    """Write every clip-art food drawing with nutrition facts and a ``healthy`` label.

    ``out_dir`` must be missing or empty unless ``overwrite``; then only the images and the
    table a previous run wrote are replaced. Raises VistaError saying how to install
    ``openclipart-png`` when its files are missing. Takes about a minute (the huge drawings).
    """
    check_arguments(seed, image_size)
    drawings = list_drawings(Path(food_dir))
    root = Path(out_dir)
    table_path = root / f"{TABLE_STEM}.parquet"
    images_dir = prepare_directory(root, table_path, overwrite)
    facts: list[Nutrition] = []
    labels: list[int] = []
    for row_id, drawing in enumerate(drawings):
        canvas = render_drawing(Path(food_dir) / drawing.source, int(image_size))
        canvas.save(images_dir / f"{row_id}.png", format="PNG")
        row_facts, healthy = food_row(drawing, int(seed))
        facts.append(row_facts)
        labels.append(healthy)
    columns: dict[str, np.ndarray | list[str]] = {
        ID_COLUMN: np.arange(len(drawings), dtype=np.int64)
    }
    for name in FEATURE_COLUMNS:
        columns[name] = np.array([getattr(row, name) for row in facts], dtype=np.float64)
    columns[LABEL_COLUMN] = np.array(labels, dtype=np.int64)
    columns["category"] = [drawing.category for drawing in drawings]
    columns["source"] = [drawing.source for drawing in drawings]
    write_parquet(table_path, columns)
    return RealDataset(
        root=root,
        images_dir=images_dir,
        table_path=table_path,
        rows=len(drawings),
        seed=int(seed),
        image_size=int(image_size),
        label=LABEL_COLUMN,
        feature_columns=FEATURE_COLUMNS,
        classes=("unhealthy", "healthy"),
    )
