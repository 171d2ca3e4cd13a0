"""The machine a calibration was measured on: what makes its constants its own.

Read from ``/proc`` only (no TensorFlow, no Spark), so that EXPLAIN can compare the calibration's
machine with this one.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from vista_sql.cost_model.resources import _meminfo_total

CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
"""The CPU features that change TensorFlow's CPU kernels (oneDNN picks its code by them)."""


def this_machine() -> dict[str, Any]:
    """What makes this machine's constants its own: CPU model and features, cores, memory."""
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
            if model and flags:
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu_flags": [f for f in CPU_FLAGS if f in flags],
        "cores": len(os.sched_getaffinity(0)),
        "memory_bytes": memory_total(),
    }


def same_machine(recorded: Any, here: dict[str, Any]) -> bool:
    """Whether a calibration's recorded machine is this one (CPU, its features, cores)."""
    if not isinstance(recorded, dict):
        return False
    return all(recorded.get(k) == here.get(k) for k in ("cpu", "cpu_flags", "cores"))


def describe_machine(recorded: Any) -> str:
    if not isinstance(recorded, dict):
        return str(recorded)
    flags = ",".join(recorded.get("cpu_flags") or []) or "no AVX2"
    gib = (recorded.get("memory_bytes") or 0) / 2**30
    cores = recorded.get("cores", "?")
    return f"{recorded.get('cpu', '?')} ({flags}), {cores} cores, {gib:.1f} GiB"


def memory_total() -> int:
    """MemTotal of ``/proc/meminfo`` in bytes (0 when it cannot be read)."""
    try:
        return _meminfo_total(Path("/"))
    except (OSError, ValueError):
        return 0
