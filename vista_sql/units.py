"""Sizes in bytes: the binary units, the one parser of a size a user writes, the one formatter.

Units are binary throughout (k = KiB = 1024 bytes), as the JVM and Spark read ``spark.*.memory``
and as ``/proc`` and cgroups report memory. Everything in ``vista_sql`` that reads or prints a size
uses this module; it imports nothing, so every layer may.
"""

from __future__ import annotations

import re

KiB = 2**10
MiB = 2**20
GiB = 2**30
TiB = 2**40
DOUBLE_BYTES = 8
"""A float64: MLlib vectors and coefficients, Spark doubles."""

_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?b?)", re.IGNORECASE)
_FACTORS = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": TiB, "p": 2**50}
_BINARY = (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB))


def parse_size(text: str) -> int:
    """Bytes in a memory size: ``'24g'``, ``'512m'``, ``'1.5GiB'``, ``'100kb'``, ``'1073741824'``.

    Units are binary (k = KiB = 1024 bytes, as the JVM and Spark read them), case-insensitive, with
    or without ``b``/``ib``; a bare number is bytes.
    """
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(
            f"expected a memory size with a unit, like '24g', '512m' or '1.5GiB', got {text!r}"
        )
    amount, prefix, suffix = match.groups()
    if not prefix and suffix.lower() == "ib":
        raise ValueError(f"expected a unit like KiB, MiB or GiB, got {text!r}")
    if not prefix and not suffix and not amount.isdigit():
        raise ValueError(f"a memory size without a unit is bytes, a whole number; got {text!r}")
    size = round(float(amount) * _FACTORS[prefix.lower()])
    if size <= 0:
        raise ValueError(f"expected a memory size above zero, got {text!r}")
    return size


def format_byte_pair(first: float, second: float) -> tuple[str, str]:
    """Two sizes formatted so that they read differently when they differ (``2.5 GiB`` and
    ``2.5 GiB`` becomes ``2534.2 MiB`` and ``2560.0 MiB``)."""
    a, b = format_bytes(first), format_bytes(second)
    if a == b and first != second:
        a, b = f"{first / MiB:.1f} MiB", f"{second / MiB:.1f} MiB"
    return a, b


def format_bytes(value: float | None) -> str:
    """Bytes in binary units with one decimal: ``1.5 GiB``, ``512 B``; ``?`` when unknown."""
    if value is None:
        return "?"
    for name, size in _BINARY:
        if value >= size:
            return f"{value / size:.1f} {name}"
    return f"{value:.0f} B"
