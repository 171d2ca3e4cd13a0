"""A Foods-like multimodal dataset: nutrition facts, a photograph per row, a ``healthy`` label.

The VISTA paper evaluates on *Foods*: about 20,000 foods, 130 numeric structured features (nutrition
facts and their pairwise and ternary interactions), one JPEG per food, and a binary label saying
whether the food is healthy. That data set is not public, so :func:`make_foods` generates one with
the same shape whose images carry real visual signal: the label depends on the nutrition facts and
on latents that only the picture shows, so a model on structured features alone is clearly worse
than one that also sees good image features, and which CNN layer the image features come from
matters.

Layout written by ``make_foods(out, rows)``::

    out/images/<id>.jpg   one RGB JPEG per row, image_size x image_size (default 227: AlexNet's)
    out/foods.parquet     (or foods.csv) columns: id, 129 float64 features, healthy

``id`` is the integer ``0 .. rows-1`` and names the image file, as SPEC.md's image sources expect,
so ``make_foods("data/foods", 2000)`` serves the statement of SPEC.md's example::

    TRANSFER FEATURES OF 'data/foods/images' AS i
      FROM CNN alexnet WEIGHTS RANDOM SEED 7 LAYERS (conv5, fc6, fc7, fc8)
      JOIN 'data/foods/foods.parquet' AS f ON i.id = f.id
      TRAIN LOGREG (max_iter = 10) LABEL healthy

**Rows.** Every row is a pure function of ``(seed, id)``: its random numbers come from
``numpy.random.SeedSequence([seed, id, stream])``, stream 0 for the row (latents, nutrition,
label) and stream 1 for its picture. So the same seed gives byte-identical files (with the same
versions of numpy, Pillow and pyarrow, whose random streams and encoders may change between
releases), rows do not depend on how many rows are made (the first 100 rows of 200 are the 100
rows of ``rows=100``), and rows can be made in parallel in any order.

**Latents.** Each row draws, independently:

- ``category``, uniform over salad, fried, dessert, grilled;
- ``grain`` (bool, p = 0.5): whole grains, seeds and herbs on the food, or a smooth surface;
- ``portion`` ~ U(0, 1): how much of the plate the dish covers (nutrition facts are per 100 g, so
  the serving size is visible only in the picture);
- ``vividness`` ~ U(0, 1): fresh, vividly coloured food versus dull, greyish, over-processed food.

**Features.** Nine nutrition facts per 100 g, drawn per category so that they are realistic and
correlated: the mass shares of water, fat, carbohydrates, protein and fibre come from a Dirichlet
distribution around the category's typical composition (concentration 12, so categories overlap);
sugars are a Beta-distributed share of carbohydrates and saturated fat a Beta share of fat; salt
is log-normal around the category's typical value (capped at 6 g); additives are a Poisson count;
energy is ``9 fat + 4 carbohydrates + 4 protein + 2 fibre`` kcal with 3 % measurement noise. Values
are rounded as on a label (energy to 1 kcal, grams to 0.1 g, salt to 0.01 g). The table holds those
nine (``BASE_FEATURES``), then all 36 pairwise products (``fat_x_sugars``) and all 84 ternary
products (``fat_x_sugars_x_salt``), in ``itertools.combinations`` order over ``BASE_FEATURES``:
129 features, all float64 (``additives`` too, so that every feature has one type; a CSV reader
that infers types may read columns whose values are all whole numbers as integers).

**Label.** ``healthy = 1`` when ``logit + noise > 0``, with ``noise`` ~ Logistic(0, 0.35) and::

    points = min(energy / 335, 10) + min(saturated_fat, 10) + min(sugars / 4.5, 10)
             + min(salt * 400 / 90, 10) - min(fibre / 0.9, 5) - min(protein / 1.6, 5)
             + 0.5 * additives                       # a continuous Nutri-Score, plus additives
    logit  = -1.0 * (points - 7.0) / 6.5             # structured part, about unit scale
             + 1.0 * (+1 if grain else -1)           # fine texture
             + 1.6 * (2 * vividness - 1)             # colour
             - 1.6 * (2 * portion - 1)               # global layout
             + {salad: 0.3, fried: -0.3, dessert: -0.3, grilled: 0}[category]

About half the rows are healthy. Knowing every latent, the best accuracy is about 0.91; knowing
only the nutrition facts (and the category, which they mostly reveal), about 0.69.

**Images.** A plate seen from above on a table, with the row's dish drawn procedurally (see
``_foods_render``): scattered leaves with veins and coloured extras (salad), round golden balls
with a dark crust and a shine (fried), layered slices (dessert), fillets with grill marks and
garnish (grilled). The latents sit at different spatial scales on purpose: ``grain`` is a zero-mean
2 px luminance speckle on the food (fine texture: it changes no mean colour), ``vividness`` is the
food's saturation (colour), ``portion`` sets the dish's extent and item count (global layout), and
the category shows as hue and item shape. Nuisances: table colour and wood grain, plate size,
position and tilt, item positions and rotations, exposure, colour temperature, a lighting gradient,
sensor noise. JPEG quality is fixed at 90 with 4:2:0 chroma subsampling.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from vista_sql.datasets._foods_render import CATEGORIES, render_food_jpeg
from vista_sql.datasets._output import is_integer, prepare_directory
from vista_sql.errors import VistaError, did_you_mean

BASE_FEATURES: tuple[str, ...] = (
    "energy",
    "fat",
    "saturated_fat",
    "sugars",
    "salt",
    "fibre",
    "protein",
    "carbohydrates",
    "additives",
)
"""Nutrition facts per 100 g: energy in kcal, additives as a count, the rest in grams."""

FEATURE_COLUMNS: tuple[str, ...] = (
    BASE_FEATURES
    + tuple("_x_".join(pair) for pair in itertools.combinations(BASE_FEATURES, 2))
    + tuple("_x_".join(triple) for triple in itertools.combinations(BASE_FEATURES, 3))
)
"""The 129 structured feature columns, in table order."""

ID_COLUMN = "id"
LABEL_COLUMN = "healthy"
TABLE_STEM = "foods"
FORMATS: tuple[str, ...] = ("parquet", "csv")

_ROW_STREAM = 0
_IMAGE_STREAM = 1
_MIN_IMAGE_SIZE = 32
_MAX_IMAGE_SIZE = 1024
_CHUNK_ROWS = 100
_PARALLEL_FROM_ROWS = 1000
_ROW_GROUP_ROWS = 16_384
"""Rows per Parquet row group (chunks are buffered up to this many before a write)."""


@dataclass(frozen=True, slots=True)
class _Composition:
    """A category's typical nutrition, the centre of the distributions its rows are drawn from."""

    shares: tuple[float, float, float, float, float]  # water, fat, carbohydrates, protein, fibre
    sugar_share: float
    saturated_share: float
    salt_grams: float
    additives: float


_COMPOSITIONS: dict[str, _Composition] = {
    "salad": _Composition((0.84, 0.06, 0.05, 0.025, 0.025), 0.50, 0.15, 0.6, 0.5),
    "fried": _Composition((0.42, 0.17, 0.30, 0.09, 0.02), 0.08, 0.30, 1.4, 2.0),
    "dessert": _Composition((0.28, 0.17, 0.48, 0.05, 0.02), 0.65, 0.55, 0.25, 3.0),
    "grilled": _Composition((0.62, 0.09, 0.04, 0.23, 0.02), 0.30, 0.38, 1.1, 1.0),
}
_DIRICHLET_CONCENTRATION = 12.0
_BETA_CONCENTRATION = 8.0

# The label's constants (see the module docstring). POINTS_CENTRE and POINTS_SCALE are the mean and
# standard deviation of ``points`` over 40,000 generated rows (seed 0), rounded, fixed here so that
# the label of a row never depends on the other rows.
_POINTS_CENTRE = 7.0
_POINTS_SCALE = 6.5
_STRUCTURED_WEIGHT = 1.0
_GRAIN_WEIGHT = 1.0
_VIVIDNESS_WEIGHT = 1.6
_PORTION_WEIGHT = 1.6
_CATEGORY_EFFECT = {"salad": 0.3, "fried": -0.3, "dessert": -0.3, "grilled": 0.0}
_LABEL_NOISE_SCALE = 0.35


@dataclass(frozen=True, slots=True)
class FoodsDataset:
    """Where :func:`make_foods` wrote a dataset, and what its table holds."""

    root: Path
    images_dir: Path
    table_path: Path
    rows: int
    seed: int
    image_size: int
    id_column: str = ID_COLUMN
    label: str = LABEL_COLUMN
    feature_columns: tuple[str, ...] = FEATURE_COLUMNS

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column of the table, in order: id, the features, the label."""
        return (self.id_column, *self.feature_columns, self.label)


@dataclass(frozen=True, slots=True)
class FoodRow:
    """One generated row with its hidden latents: what explains its label and its picture."""

    id: int
    category: str
    grain: bool
    portion: float
    vividness: float
    nutrition: tuple[float, ...]
    """The nine facts, in ``BASE_FEATURES`` order."""
    logit: float
    """The noise-free health logit; ``healthy`` is its sign after label noise."""
    healthy: int


def food_row(row_id: int, *, seed: int = 0) -> FoodRow:
    """Row ``row_id`` of the dataset of ``seed``, without its picture (see the module docstring)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, row_id, _ROW_STREAM]))
    category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    grain = bool(rng.integers(2))
    portion = float(rng.uniform())
    vividness = float(rng.uniform())
    nutrition = _nutrition_facts(rng, _COMPOSITIONS[category])
    logit = health_logit(nutrition, category, grain=grain, portion=portion, vividness=vividness)
    noise = float(rng.logistic(0.0, _LABEL_NOISE_SCALE))
    return FoodRow(
        id=row_id,
        category=category,
        grain=grain,
        portion=portion,
        vividness=vividness,
        nutrition=nutrition,
        logit=logit,
        healthy=int(logit + noise > 0),
    )


def food_jpeg(row: FoodRow, *, seed: int = 0, image_size: int = 227) -> bytes:
    """The JPEG bytes of ``row``'s picture in the dataset of ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, row.id, _IMAGE_STREAM]))
    return render_food_jpeg(
        rng,
        category=row.category,
        grain=row.grain,
        portion=row.portion,
        vividness=row.vividness,
        image_size=image_size,
    )


def health_logit(
    nutrition: tuple[float, ...],
    category: str,
    *,
    grain: bool,
    portion: float,
    vividness: float,
) -> float:
    """The noise-free log-odds that a food is healthy (formula in the module docstring)."""
    energy, _fat, saturated, sugars, salt, fibre, protein, _carbs, additives = nutrition
    points = (
        min(energy / 335.0, 10.0)
        + min(saturated, 10.0)
        + min(sugars / 4.5, 10.0)
        + min(salt * 400.0 / 90.0, 10.0)
        - min(fibre / 0.9, 5.0)
        - min(protein / 1.6, 5.0)
        + 0.5 * additives
    )
    structured = -_STRUCTURED_WEIGHT * (points - _POINTS_CENTRE) / _POINTS_SCALE
    visual = (
        _GRAIN_WEIGHT * (1.0 if grain else -1.0)
        + _VIVIDNESS_WEIGHT * (2.0 * vividness - 1.0)
        - _PORTION_WEIGHT * (2.0 * portion - 1.0)
    )
    return structured + visual + _CATEGORY_EFFECT[category]


def _nutrition_facts(rng: np.random.Generator, typical: _Composition) -> tuple[float, ...]:
    shares = rng.dirichlet(np.array(typical.shares) * _DIRICHLET_CONCENTRATION) * 100.0
    _water, fat, carbs, protein, fibre = (round(float(grams), 1) for grams in shares)
    sugars = min(carbs, round(carbs * _beta(rng, typical.sugar_share), 1))
    saturated = min(fat, round(fat * _beta(rng, typical.saturated_share), 1))
    salt = round(min(6.0, float(rng.lognormal(math.log(typical.salt_grams), 0.5))), 2)
    additives = float(rng.poisson(typical.additives))
    energy = (9.0 * fat + 4.0 * carbs + 4.0 * protein + 2.0 * fibre) * (1 + rng.normal(0.0, 0.03))
    return (
        float(round(energy)),
        fat,
        saturated,
        sugars,
        salt,
        fibre,
        protein,
        carbs,
        additives,
    )


def _beta(rng: np.random.Generator, mean: float) -> float:
    return float(rng.beta(mean * _BETA_CONCENTRATION, (1.0 - mean) * _BETA_CONCENTRATION))


def make_foods(
    out_dir: str | Path,
    rows: int,
    *,
    seed: int = 0,
    image_size: int = 227,
    fmt: str = "parquet",
    overwrite: bool = False,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> FoodsDataset:
    """Write the Foods-like dataset of ``seed`` with ``rows`` rows into ``out_dir``.

    ``out_dir`` must be missing or empty unless ``overwrite`` is true; then the images and tables
    a previous run wrote there are replaced (nothing else is deleted). ``workers`` processes draw
    the images (default: one for fewer than 1,000 rows, else the usable cores, at most 4); the
    output is the same for any number of workers. Workers are started with ``spawn``, so a script
    that calls this needs the usual ``if __name__ == "__main__":`` guard. ``progress`` is called
    with the number of rows done after each chunk of rows.
    """
    _check_arguments(rows, seed, image_size, fmt, workers)
    rows, seed, image_size = int(rows), int(seed), int(image_size)
    root = Path(out_dir)
    table_path = root / f"{TABLE_STEM}.{fmt}"
    tables = [root / f"{TABLE_STEM}.{f}" for f in FORMATS]
    images_dir = prepare_directory(root, tables, "jpg", overwrite)

    # The table streams to disk chunk by chunk (a Parquet row group, or CSV rows, per chunk) under
    # a temporary name, renamed once complete: memory stays one chunk whatever ``rows`` is.
    partial = table_path.with_name(f".{table_path.name}.partial")
    with _TableWriter(partial, fmt) as writer:
        for start, chunk_nutrition, chunk_labels in _generate(
            rows, seed, image_size, images_dir, _worker_count(rows, workers)
        ):
            writer.write(start, chunk_nutrition, chunk_labels)
            if progress is not None:
                progress(start + len(chunk_labels))
    os.replace(partial, table_path)
    return FoodsDataset(
        root=root,
        images_dir=images_dir,
        table_path=table_path,
        rows=rows,
        seed=seed,
        image_size=image_size,
    )


def feature_matrix(nutrition: np.ndarray) -> np.ndarray:
    """The ``(n, 129)`` feature matrix, in ``FEATURE_COLUMNS`` order, from ``(n, 9)`` facts."""
    columns = [nutrition[:, index] for index in range(len(BASE_FEATURES))]
    indices = range(len(BASE_FEATURES))
    columns += [nutrition[:, i] * nutrition[:, j] for i, j in itertools.combinations(indices, 2)]
    columns += [
        nutrition[:, i] * nutrition[:, j] * nutrition[:, k]
        for i, j, k in itertools.combinations(indices, 3)
    ]
    return np.stack(columns, axis=1)


def _check_arguments(rows: int, seed: int, image_size: int, fmt: str, workers: int | None) -> None:
    if not is_integer(rows) or rows < 1:
        raise VistaError(f"rows must be a positive integer, got {rows!r}")
    if not is_integer(seed) or seed < 0:
        raise VistaError(f"seed must be a non-negative integer, got {seed!r}")
    if not is_integer(image_size) or not _MIN_IMAGE_SIZE <= image_size <= _MAX_IMAGE_SIZE:
        raise VistaError(
            f"image_size must be an integer between {_MIN_IMAGE_SIZE} and {_MAX_IMAGE_SIZE} "
            f"pixels, got {image_size!r}"
        )
    if fmt not in FORMATS:
        raise VistaError(f"unknown table format {fmt!r}; {did_you_mean(fmt, FORMATS)}")
    if workers is not None and (not is_integer(workers) or workers < 1):
        raise VistaError(f"workers must be an integer of at least 1, got {workers!r}")


def _worker_count(rows: int, workers: int | None) -> int:
    if workers is not None:
        return int(workers)
    if rows < _PARALLEL_FROM_ROWS:
        return 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, usable or 1))


def _generate(
    rows: int, seed: int, image_size: int, images_dir: Path, workers: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Chunks ``(start, nutrition, labels)`` in row order, images written as a side effect."""
    starts = range(0, rows, _CHUNK_ROWS)
    stops = [min(start + _CHUNK_ROWS, rows) for start in starts]
    if workers == 1:
        for start, stop in zip(starts, stops, strict=True):
            yield start, *_generate_chunk(seed, start, stop, image_size, str(images_dir))
        return
    # "spawn", not "fork": the caller may hold threads (Spark's JVM gateway, TensorFlow), which a
    # forked child would inherit in an unknown state.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        chunks = pool.map(
            _generate_chunk,
            itertools.repeat(seed),
            starts,
            stops,
            itertools.repeat(image_size),
            itertools.repeat(str(images_dir)),
        )
        for start, (chunk_nutrition, chunk_labels) in zip(starts, chunks, strict=True):
            yield start, chunk_nutrition, chunk_labels


def _generate_chunk(
    seed: int, start: int, stop: int, image_size: int, images_dir: str
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start .. stop-1``: their facts and labels, their pictures written to disk."""
    nutrition = np.empty((stop - start, len(BASE_FEATURES)), dtype=np.float64)
    labels = np.empty(stop - start, dtype=np.int64)
    for offset, row_id in enumerate(range(start, stop)):
        row = food_row(row_id, seed=seed)
        nutrition[offset] = row.nutrition
        labels[offset] = row.healthy
        image = food_jpeg(row, seed=seed, image_size=image_size)
        Path(images_dir, f"{row_id}.jpg").write_bytes(image)
    return nutrition, labels


class _TableWriter:
    """Writes the table's rows chunk by chunk: id, the 129 features, the label."""

    def __init__(self, path: Path, fmt: str) -> None:
        import pyarrow as pa

        self._path, self._fmt = path, fmt
        self._schema = pa.schema(
            [(ID_COLUMN, pa.int64())]
            + [(name, pa.float64()) for name in FEATURE_COLUMNS]
            + [(LABEL_COLUMN, pa.int64())]
        )
        self._writer: Any = None
        self._pending: list[Any] = []
        self._pending_rows = 0

    def __enter__(self) -> _TableWriter:
        if self._fmt == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self._path, self._schema, compression="snappy")
        else:
            import pyarrow.csv as pcsv

            self._writer = pcsv.CSVWriter(self._path, self._schema)
        return self

    def write(self, start: int, nutrition: np.ndarray, labels: np.ndarray) -> None:
        import pyarrow as pa

        features = feature_matrix(nutrition)
        arrays = [pa.array(np.arange(start, start + len(labels), dtype=np.int64))]
        arrays += [pa.array(features[:, index]) for index in range(features.shape[1])]
        arrays.append(pa.array(labels))
        self._pending.append(pa.Table.from_arrays(arrays, schema=self._schema))
        self._pending_rows += len(labels)
        if self._pending_rows >= _ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._pending:
            table = pa.concat_tables(self._pending).combine_chunks()
            if self._fmt == "parquet":
                self._writer.write_table(table, row_group_size=len(table))
            else:
                self._writer.write_table(table)
            self._pending, self._pending_rows = [], 0

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if kind is None:
            self._flush()
        self._writer.close()
        if kind is not None:
            self._path.unlink(missing_ok=True)
