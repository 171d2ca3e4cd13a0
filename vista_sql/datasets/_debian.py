"""What the datasets built from Debian packages share: finding the files, the output directory, the
table writer, and the description of what was written.

The layout is the one ``make_foods`` writes and SPEC.md's sources expect: ``<out>/images/<id>.png``
(one image per row, named by the integer key) and ``<out>/<stem>.parquet`` with ``id``, the
numeric structured columns, the label, and string columns for provenance (strings are never
picked as default ``FEATURES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vista_sql.datasets import _output
from vista_sql.datasets._output import is_integer
from vista_sql.errors import VistaError

ID_COLUMN = "id"
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class RealDataset:
    """Where a dataset from real images was written, and what its table holds."""

    root: Path
    images_dir: Path
    table_path: Path
    rows: int
    seed: int
    image_size: int
    label: str
    feature_columns: tuple[str, ...]
    """The numeric structured columns (what ``FEATURES`` defaults to), in table order."""
    classes: tuple[str, ...]
    """The label's values by code: ``classes[label]`` names a row's class."""
    id_column: str = ID_COLUMN


def require_debian_file(path: Path, package: str, what: str) -> Path:
    """``path`` if it exists, else a VistaError saying which Debian package installs it."""
    if path.exists():
        return path
    raise VistaError(
        f"{what} not found: {path} does not exist. It comes from the Debian package {package};"
        f" install it with `sudo apt-get install {package}` (Debian or Ubuntu; `make real-data`"
        " does this), or on other systems copy the files of that package to the same path"
    )


def check_arguments(seed: int, image_size: int) -> None:
    """Seeds and sizes arrive from the command line and notebooks: refuse bools, floats, strings."""
    if not is_integer(seed) or seed < 0:
        raise VistaError(f"seed must be a non-negative integer, got {seed!r}")
    if not is_integer(image_size) or not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise VistaError(
            f"image_size must be an integer between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels,"
            f" got {image_size!r}"
        )


def prepare_directory(root: Path, table_path: Path, overwrite: bool) -> Path:
    """The images directory of a new dataset of PNG images (see ``_output.prepare_directory``)."""
    return _output.prepare_directory(root, [table_path], "png", overwrite)


def write_parquet(path: Path, columns: dict[str, np.ndarray | list[str]]) -> None:
    """One Parquet file with the columns in the given order (float64, int64 or string)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_arrays(
        [pa.array(values) for values in columns.values()], names=list(columns)
    )
    pq.write_table(table, path, compression="snappy")
