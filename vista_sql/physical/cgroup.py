"""Run a command under an operating-system memory limit: a child cgroup (v1 memory controller).

The kernel counts every process of a cgroup together (driver, JVM, Python workers, whatever they
fork) and kills one when the total exceeds ``memory.limit_in_bytes``: the limit a container or a
small machine imposes, and what vista_sql's cost model must plan for. Tests and benchmarks use this
to run ``vista-sql run ...`` (or a naive pipeline) under a budget and read back its peak and
whether the kernel killed anything::

    with MemoryCgroup.create(3 * 2**30) as group:
        finished = group.run(["vista-sql", "run", "-e", sql], capture_output=True, text=True)
        print(finished.returncode, group.peak_bytes, group.oom_kills)

or from a shell: ``python -m vista_sql.physical.cgroup --memory 3g -- vista-sql run q.sql``.

The child cgroup is made under this process's own memory cgroup (``/proc/self/cgroup``), named
``vista-<pid>-<n>``; the command enters it through ``/bin/sh`` (the shell writes its own pid to
``cgroup.procs``, then ``exec``s the command), so nothing runs in this process between ``fork``
and ``exec``. Swap is limited too where the kernel accounts it (``memory.memsw.limit_in_bytes``),
so a process over budget is killed rather than swapped. Removing the group kills what is left in
it (the command's own descendants, by pid), then removes the directory.

Only cgroup v1 is supported (this project's machines mount it); :func:`unavailable_reason` says
why a group cannot be made elsewhere (no v1 memory controller, not writable), for a skip message.
Nothing here imports Spark.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from vista_sql.units import parse_size

_ENTER = 'echo $$ > "$0" && exec "$@"'
"""The shell wrapper: move this shell into the cgroup whose cgroup.procs is $0, then exec."""

_counter = itertools.count()


def memory_root() -> Path | None:
    """This process's cgroup v1 memory directory, or None when there is no v1 memory controller."""
    point = None
    mount_root = "/"
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
        cgroups = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in mountinfo:
        left, _, right = line.partition(" - ")
        parts, tail = left.split(), right.split()
        v1 = len(parts) >= 5 and len(tail) >= 3 and tail[0] == "cgroup"
        if v1 and "memory" in tail[2].split(","):
            mount_root, point = parts[3], parts[4]
            break
    if point is None:
        return None
    for line in cgroups:
        _hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            relative = os.path.relpath(path, mount_root) if path.startswith(mount_root) else "."
            return Path(os.path.normpath(Path(point) / relative))
    return None


def unavailable_reason() -> str | None:
    """Why a child memory cgroup cannot be made here, or None when it can."""
    root = memory_root()
    if root is None:
        return "no cgroup v1 memory controller is mounted for this process"
    if not os.access(root, os.W_OK):
        return f"the memory cgroup {root} is not writable (needs root or a delegated cgroup)"
    return None


@dataclass
class MemoryCgroup:
    """A child memory cgroup with a limit; use :meth:`create`, and remove it when done."""

    path: Path
    limit_bytes: int

    @classmethod
    def create(cls, limit_bytes: int, name: str | None = None) -> MemoryCgroup:
        """Make the group under this process's memory cgroup, limited to ``limit_bytes``."""
        reason = unavailable_reason()
        root = memory_root()
        if reason is not None or root is None:
            raise OSError(f"cannot make a memory cgroup: {reason}")
        path = root / (name or f"vista-{os.getpid()}-{next(_counter)}")
        path.mkdir()
        group = cls(path, limit_bytes)
        try:
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            swap = path / "memory.memsw.limit_in_bytes"
            if swap.exists():
                # swap accounting may be off: then the memory limit alone applies
                with contextlib.suppress(OSError):
                    swap.write_text(str(limit_bytes))
        except BaseException:
            group.remove()
            raise
        return group

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped so that it runs inside this group (and so do its descendants)."""
        return ["/bin/sh", "-c", _ENTER, str(self.path / "cgroup.procs"), *argv]

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the group; ``kwargs`` as for ``subprocess.Popen``."""
        return subprocess.Popen(self.command(argv), **kwargs)

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside the group to completion; ``kwargs`` as for ``subprocess.run``."""
        return subprocess.run(self.command(argv), **kwargs)

    def processes(self) -> list[int]:
        """The pids in the group now."""
        try:
            text = (self.path / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    @property
    def peak_bytes(self) -> int | None:
        """The most memory the group's processes held together (memory.max_usage_in_bytes)."""
        return _read_int(self.path / "memory.max_usage_in_bytes")

    @property
    def usage_bytes(self) -> int | None:
        return _read_int(self.path / "memory.usage_in_bytes")

    @property
    def oom_kills(self) -> int | None:
        """Processes the kernel killed for exceeding the limit (None if the kernel does not say)."""
        try:
            lines = (self.path / "memory.oom_control").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return None

    def remove(self, timeout: float = 30.0) -> None:
        """Kill what is left in the group (by pid), then remove it."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.processes()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # still busy: killed processes not reaped yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def __enter__(self) -> MemoryCgroup:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vista_sql.physical.cgroup --memory 3g -- COMMAND...``: run, report, clean up."""
    parser = argparse.ArgumentParser(
        prog="python -m vista_sql.physical.cgroup",
        description="Run a command under a memory limit (a cgroup v1 memory controller child).",
    )
    parser.add_argument("--memory", required=True, help="the limit, e.g. 3g or 512m")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --")
    reason = unavailable_reason()
    if reason is not None:
        print(f"cgroup: {reason}", file=sys.stderr)
        return 2
    with MemoryCgroup.create(parse_size(args.memory)) as group:
        code = group.run(command).returncode
        peak = group.peak_bytes
        print(
            f"cgroup: exit {code}, peak {peak if peak is not None else '?'} bytes of"
            f" {group.limit_bytes}, oom kills {group.oom_kills}",
            file=sys.stderr,
        )
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention


if __name__ == "__main__":
    sys.exit(main())
