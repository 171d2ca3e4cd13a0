"""Shared pieces of the reliability tests: a tiny Foods dataset, statements, odd and bad images,
and a view of a process tree through /proc (to find Spark's Python workers and the JVM)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vista_sql.datasets.foods import FoodsDataset, make_foods
from vista_sql.physical.cgroup import unavailable_reason

ROWS = 12
SEED = 0
"""12 rows of seed 0: labels 1,0,1,0,1,0,0,1,0,0,0,1, so any 8 of them still hold both classes."""
IMAGE_SIZE = 64
METRIC_KEYS = ("layer", "n_features", "accuracy", "f1", "auc", "train_rows")
"""What a run's metrics are compared by (JSON-ready)."""
NEEDS_MEMORY_CGROUP = pytest.mark.skipif(
    unavailable_reason() is not None,
    reason=f"needs a writable cgroup v1 memory controller: {unavailable_reason()}",
)


def metric_rows(result: Any) -> list[dict[str, Any]]:
    """A TransferResult's per-layer metrics, ``METRIC_KEYS`` of each row."""
    return [{k: row[k] for k in METRIC_KEYS} for row in result.rows()]


def tiny_foods(directory: Path) -> FoodsDataset:
    return make_foods(directory, rows=ROWS, seed=SEED, image_size=IMAGE_SIZE)


def statement(
    images: str | Path,
    table: str | Path,
    extra: str = "",
    *,
    cnn: str = "alexnet",
    layers: str = "(fc8)",
    weights: str = "RANDOM SEED 3",
) -> str:
    """A small TRANSFER statement over ``images`` and ``table`` (paths, or names when unquoted)."""

    def source(value: str | Path) -> str:
        return f"'{value}'" if isinstance(value, Path) or "/" in str(value) else str(value)

    return (
        f"TRANSFER FEATURES OF {source(images)} AS i FROM CNN {cnn} WEIGHTS {weights}"
        f" LAYERS {layers} JOIN {source(table)} AS f ON i.id = f.id"
        f" TRAIN LOGREG (max_iter = 3) LABEL healthy VALIDATE 0.25 {extra}"
    )


def copy_images(data: FoodsDataset, target: Path) -> Path:
    shutil.copytree(data.images_dir, target)
    return target


# --- images ---------------------------------------------------------------------------------------


def picture(data: FoodsDataset, row: int) -> Image.Image:
    with Image.open(data.images_dir / f"{row}.jpg") as image:
        return image.convert("RGB")


def truncated_jpeg(data: FoodsDataset, row: int) -> bytes:
    whole = (data.images_dir / f"{row}.jpg").read_bytes()
    return whole[: len(whole) // 2]


def with_alpha(image: Image.Image) -> Image.Image:
    rgba = image.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(image.size))
    return rgba


def sixteen_bit(image: Image.Image) -> Image.Image:
    gray = np.asarray(image.convert("L"), dtype=np.uint16) * 257
    return Image.fromarray(gray.astype(np.uint16))


def huge_jpeg(path: Path, side: int = 10_000) -> None:
    """A side x side JPEG (a flat colour, so the file stays small; decoding it is the test)."""
    Image.new("RGB", (side, side), (200, 120, 40)).save(path, quality=50)


# --- process trees --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    parent: int
    state: str
    command: str


def processes() -> dict[int, Proc]:
    """Every process now: pid -> (parent, state, command line)."""
    found: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry)] = Proc(int(entry), int(fields[1]), fields[0], command.strip())
    return found


def descendants(root: int) -> list[Proc]:
    table = processes()
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.parent, []).append(proc.pid)
    found: list[Proc] = []
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found.append(table[pid])
        stack.extend(children.get(pid, []))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def inferring_workers(root: int) -> list[int]:
    """Spark Python workers under ``root`` that have TensorFlow loaded: inside inference.

    A worker is a process forked by ``pyspark.daemon`` (same command line, its parent the daemon).
    """
    tree = {proc.pid: proc for proc in descendants(root)}
    workers = []
    for proc in tree.values():
        parent = tree.get(proc.parent)
        if parent is None or "pyspark.daemon" not in parent.command:
            continue
        try:
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
        except OSError:
            continue
        if "libtensorflow" in maps:
            workers.append(proc.pid)
    return workers
