"""Where every dataset generator writes: ``<out>/images/<id>.<ext>`` beside its table, refusing to
clobber what it did not write."""

from __future__ import annotations

import numbers
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from vista_sql.errors import VistaError

IMAGES_DIRNAME = "images"


def is_integer(value: object) -> bool:
    """An int or a numpy integer, but not a bool (``True`` rows would be a mistake)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def prepare_directory(
    root: Path, tables: Iterable[Path], image_extension: str, overwrite: bool
) -> Path:
    """Refuse a non-empty ``root`` unless ``overwrite``; then remove only what a run writes (the
    ``tables`` and ``images/<digits>.<image_extension>``). Returns the empty images directory."""
    images_dir = root / IMAGES_DIRNAME
    if root.exists() and not root.is_dir():
        raise VistaError(f"cannot write the dataset to {str(root)!r}: it is not a directory")
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise VistaError(
                f"output directory {str(root)!r} is not empty; choose an empty or new directory,"
                " or pass overwrite=True (--overwrite) to replace the dataset in it"
            )
        if images_dir.exists():
            own = re.compile(rf"[0-9]+\.{re.escape(image_extension)}")
            foreign = sorted(
                entry.name
                for entry in images_dir.iterdir()
                if not (entry.is_file() and own.fullmatch(entry.name))
            )
            if foreign:
                raise VistaError(
                    f"will not overwrite {str(images_dir)!r}: it holds files this generator did"
                    f" not write ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''});"
                    " move them away or choose another directory"
                )
            shutil.rmtree(images_dir)
        for table in tables:
            table.unlink(missing_ok=True)
    images_dir.mkdir(parents=True, exist_ok=True)
    return images_dir
