"""The resources a plan must fit: memory and cores per node, nodes, GPU memory.

From the statement's WITH options where given, else from the machine: cores from the CPU affinity
mask, memory from ``/proc/meminfo``'s MemTotal, each lowered to the process's cgroup limit when
there is one (cgroup v2 ``memory.max`` / ``cpu.max``, v1 ``memory.limit_in_bytes`` /
``cpu.cfs_quota_us``, on the cgroup of this process and on its ancestors, whose limits bind too).
A container or a benchmark's memory controller therefore sizes the plan, not the host: the kernel
kills a process tree that exceeds its cgroup, whatever the host has free.

On a system without ``/proc`` or cgroups (macOS, a sandbox, a container without them mounted) or
where they cannot be read, memory falls back to ``sysconf`` (physical pages times page size) and
no cgroup limit applies; ``origin`` says which. Only when even that is unavailable is it a
:class:`ResourceError` that asks for ``WITH (memory = ...)``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

from vista_sql.errors import ResourceError
from vista_sql.logical.query import Options

UNLIMITED = 2**62
"""cgroup v1 reports 'no limit' as a page-rounded 2**63 - 1; anything this large means none."""


@dataclass(frozen=True, slots=True)
class Resources:
    """Per-node memory and cores, node count, and GPU memory per node (None: no GPU)."""

    memory_bytes: int
    cores: int
    nodes: int = 1
    gpu_memory_bytes: int | None = None
    origin: tuple[tuple[str, str], ...] = ()
    """Where each figure came from, e.g. ('memory', 'cgroup v1 memory.limit_in_bytes')."""

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0 or self.cores <= 0 or self.nodes <= 0:
            raise ValueError("resources must be positive")

    def with_memory(self, memory_bytes: int) -> Resources:
        """The same resources with another per-node memory (the search for a memory that fits)."""
        origin = (*(o for o in self.origin if o[0] != "memory"), ("memory", "search"))
        return replace(self, memory_bytes=memory_bytes, origin=origin)

    def describe(self) -> str:
        gpu = ""
        if self.gpu_memory_bytes is not None:
            gpu = f", GPU {self.gpu_memory_bytes / 2**30:.1f} GiB"
        nodes = f" x {self.nodes} nodes" if self.nodes > 1 else ""
        return f"{self.memory_bytes / 2**30:.1f} GiB, {self.cores} cores{nodes}{gpu}"

    def to_json(self) -> dict[str, object]:
        return {
            "memory_bytes": self.memory_bytes,
            "cores": self.cores,
            "nodes": self.nodes,
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "origin": dict(self.origin),
        }


def detect_resources(
    options: Options | None = None, root: str | os.PathLike[str] = "/", cpus: int | None = None
) -> Resources:
    """Resources from WITH options, the rest from the machine under ``root``.

    ``root`` and ``cpus`` (the affinity mask size) exist so tests can describe a machine.
    """
    options = options or Options()
    base = Path(root)
    origin: list[tuple[str, str]] = []
    if options.memory is not None:
        memory = options.memory
        origin.append(("memory", "WITH memory"))
    else:
        memory, source = _machine_memory(base)
        origin.append(("memory", source))
    if options.cores is not None:
        cores = options.cores
        origin.append(("cores", "WITH cores"))
    else:
        cores, source = _machine_cores(base, cpus)
        origin.append(("cores", source))
    nodes = options.nodes if options.nodes is not None else 1
    origin.append(("nodes", "WITH nodes" if options.nodes is not None else "local mode"))
    if options.gpu_memory is not None:
        origin.append(("gpu_memory", "WITH gpu_memory"))
    return Resources(memory, cores, nodes, options.gpu_memory, tuple(origin))


def _machine_memory(root: Path) -> tuple[int, str]:
    try:
        total, source = _meminfo_total(root), "/proc/meminfo MemTotal"
    except (OSError, ValueError, UnicodeDecodeError):
        total, source = _sysconf_memory(), "sysconf SC_PHYS_PAGES (no /proc/meminfo)"
    limit = _cgroup_limit(root, v2_file="memory.max", v1_controller="memory")
    if limit is not None and limit[0] < total:
        return limit[0], limit[1]
    return total, source


def _sysconf_memory() -> int:
    """Physical memory from ``sysconf``, where ``/proc/meminfo`` cannot be read."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        pages = page_size = -1
    if pages <= 0 or page_size <= 0:
        raise ResourceError(
            "cannot tell this machine's memory (no /proc/meminfo, no sysconf SC_PHYS_PAGES);"
            " give it with WITH (memory = '8g')"
        )
    return int(pages) * int(page_size)


def _machine_cores(root: Path, cpus: int | None) -> tuple[int, str]:
    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
            source = "CPU affinity"
        except AttributeError:
            cpus = os.cpu_count() or 1
            source = "os.cpu_count"
    else:
        source = "CPU affinity"
    quota = _cgroup_cpus(root)
    if quota is not None and quota[0] < cpus:
        return quota
    return cpus, source


def _meminfo_total(root: Path) -> int:
    for line in (root / "proc" / "meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise OSError("no MemTotal in /proc/meminfo")


@dataclass(frozen=True, slots=True)
class _Mount:
    root: str
    point: str
    fstype: str
    options: frozenset[str]


def _mounts(root: Path) -> list[_Mount]:
    mounts: list[_Mount] = []
    for line in _lines(root / "proc" / "self" / "mountinfo"):
        left, _, right = line.partition(" - ")
        parts, tail = left.split(), right.split()
        if len(parts) < 5 or len(tail) < 3:
            continue
        mounts.append(_Mount(parts[3], parts[4], tail[0], frozenset(tail[2].split(","))))
    return mounts


def _cgroup_dirs(root: Path, controller: str | None) -> list[Path]:
    """The directories of this process's cgroup (v2 when ``controller`` is None), leaf first,
    then each ancestor up to the mount point."""
    for line in _lines(root / "proc" / "self" / "cgroup"):
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if controller is None and hierarchy == "0" and controllers == "":
            mount = next((m for m in _mounts(root) if m.fstype == "cgroup2"), None)
            point = mount.point if mount else "/sys/fs/cgroup"
            mount_root = mount.root if mount else "/"
        elif controller is not None and controller in controllers.split(","):
            mount = next(
                (m for m in _mounts(root) if m.fstype == "cgroup" and controller in m.options),
                None,
            )
            point = mount.point if mount else f"/sys/fs/cgroup/{controller}"
            mount_root = mount.root if mount else "/"
        else:
            continue
        relative = os.path.relpath(path, mount_root) if path.startswith(mount_root) else "."
        base = root / point.lstrip("/")
        leaf = Path(os.path.normpath(base / relative))
        dirs = []
        current = leaf
        while True:
            dirs.append(current)
            if current == base or base not in current.parents:
                break
            current = current.parent
        return dirs
    return []


def _lines(path: Path) -> list[str]:
    """The lines of a /proc file; none when it is missing or unreadable (no /proc: no cgroups)."""
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    if text in ("max", "-1", ""):
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= UNLIMITED else value


def _cgroup_limit(root: Path, v2_file: str, v1_controller: str) -> tuple[int, str] | None:
    """The tightest memory limit on this process's cgroup and its ancestors, v2 then v1."""
    best: tuple[int, str] | None = None
    for directory in _cgroup_dirs(root, None):
        value = _read_int(directory / v2_file)
        if value is not None and (best is None or value < best[0]):
            best = (value, f"cgroup v2 {v2_file}")
    for directory in _cgroup_dirs(root, v1_controller):
        value = _read_int(directory / "memory.limit_in_bytes")
        if value is not None and (best is None or value < best[0]):
            best = (value, "cgroup v1 memory.limit_in_bytes")
    return best


def _cgroup_cpus(root: Path) -> tuple[int, str] | None:
    """The CPU quota of this process's cgroup as whole cores (rounded up), v2 then v1."""
    best: tuple[int, str] | None = None
    for directory in _cgroup_dirs(root, None):
        try:
            quota, period = (directory / "cpu.max").read_text().split()
            cores = 0 if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
        except (OSError, ValueError, UnicodeDecodeError, ZeroDivisionError):
            continue
        if cores and (best is None or cores < best[0]):
            best = (cores, "cgroup v2 cpu.max")
    for directory in _cgroup_dirs(root, "cpu"):
        quota_us = _read_int(directory / "cpu.cfs_quota_us")
        period_us = _read_int(directory / "cpu.cfs_period_us")
        if quota_us is not None and period_us:
            cores = max(1, math.ceil(quota_us / period_us))
            if best is None or cores < best[0]:
                best = (cores, "cgroup v1 cpu.cfs_quota_us")
    return best
