"""Run a command under an operating-system memory limit: a child of this process's memory cgroup.

Why a cgroup and not ``setrlimit``: ``RLIMIT_AS`` caps each process's *virtual* address space,
and TensorFlow and the JVM reserve far more virtual memory than they ever touch (TensorFlow's
allocator and thread stacks, the JVM's heap reservation and code cache), so an rlimit low enough
to matter kills them at start-up for memory they would never use; and it is per process, while
Spark's driver, JVM and Python workers share one machine. A cgroup memory controller limits the
*resident* memory (plus the page cache it can reclaim) of every process in the group together,
as a container's limit does: the kernel's OOM killer ends a process of the group when the group
needs more than its limit and nothing can be reclaimed. vista_sql reads the same limit
(``cost_model.resources`` walks ``/proc/self/cgroup``), so a run inside the group is told its
budget the way it would be in a container.

Mechanism (cgroup v1, the controller mounted here; v2 ``memory.max`` works the same way when
that is what the machine has): make ``<own memory cgroup>/<name>``, write the limit to
``memory.limit_in_bytes`` (v2: ``memory.max``, with swap off through ``memory.swap.max``), and
start the command through ``sh -c 'echo $$ > cgroup.procs && exec "$@"'``, so the process joins
the group before it runs a line of the command and everything it starts is in the group too.
Joining a group needs write access to its ``cgroup.procs`` (root, or a delegated subtree).

    with MemoryLimit(4 * 2**30) as limit:
        done = subprocess.run(limit.wrap(["python", "work.py"]))
        print(limit.oom_kills(), limit.max_usage())
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path
from types import TracebackType

CGROUP_ROOT = Path("/sys/fs/cgroup")


def own_memory_cgroup(proc_self: Path = Path("/proc/self/cgroup")) -> tuple[Path, int] | None:
    """This process's memory cgroup directory and its cgroup version, or None without one."""
    try:
        lines = proc_self.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            directory = CGROUP_ROOT / "memory" / path.lstrip("/")
            if directory.is_dir():
                return directory, 1
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            directory = CGROUP_ROOT / path.lstrip("/")
            if (directory / "cgroup.controllers").is_file():
                enabled = (directory / "cgroup.subtree_control").read_text().split()
                if "memory" in enabled:
                    return directory, 2
    return None


def unavailable_reason() -> str | None:
    """Why no memory limit can be set here (None when one can)."""
    found = own_memory_cgroup()
    if found is None:
        return "no cgroup memory controller for this process (/proc/self/cgroup)"
    directory, _ = found
    if not os.access(directory, os.W_OK):
        return f"cannot create a child of {directory} (needs root or a delegated cgroup)"
    return None


class MemoryLimit:
    """A child memory cgroup limited to ``limit_bytes`` (no limit: None), removed on exit.

    Processes still in the group on exit (a JVM orphaned by an OOM kill, say) are killed by pid
    first: they were started into this group by ``wrap``, so they are this program's own.
    """

    def __init__(self, limit_bytes: int | None, name: str | None = None) -> None:
        found = own_memory_cgroup()
        if found is None:
            raise OSError(unavailable_reason())
        parent, self.version = found
        self.limit_bytes = limit_bytes
        self.path = parent / (name or f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self._oom_kills_before = 0

    def __enter__(self) -> MemoryLimit:
        self.path.mkdir()
        try:
            if self.version == 1:
                # Swap would let the group exceed its limit by paging; there is none here, and
                # memsw (when the kernel accounts swap) is set to the same limit to be sure.
                if self.limit_bytes is not None:
                    self._write("memory.limit_in_bytes", self.limit_bytes)
                    if (self.path / "memory.memsw.limit_in_bytes").exists():
                        self._write("memory.memsw.limit_in_bytes", self.limit_bytes)
            elif self.limit_bytes is not None:
                self._write("memory.max", self.limit_bytes)
                if (self.path / "memory.swap.max").exists():
                    self._write("memory.swap.max", 0)
        except BaseException:
            self.path.rmdir()
            raise
        self._oom_kills_before = self.oom_kills()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill_all()
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:  # the killed processes are still being torn down
                time.sleep(0.1)
        self.path.rmdir()

    def _write(self, name: str, value: int) -> None:
        (self.path / name).write_text(str(value))

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run so that it joins this group before it starts (``sh`` then ``exec``)."""
        procs = self.path / "cgroup.procs"
        return ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill_all(self) -> None:
        """SIGKILL every process left in the group, by pid, until it is empty."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def oom_kills(self) -> int:
        """Processes the kernel's OOM killer ended in this group since it was made."""
        if self.version == 1:
            text = self._read("memory.oom_control")
            key = "oom_kill"
        else:
            text = self._read("memory.events")
            key = "oom_kill"
        for line in text.splitlines():
            name, _, count = line.partition(" ")
            if name == key:
                return int(count) - self._oom_kills_before
        return 0

    def max_usage(self) -> int | None:
        """The group's peak charged memory (resident + page cache), where the kernel reports it."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        text = self._read(name)
        return int(text) if text.strip().isdigit() else None

    def _read(self, name: str) -> str:
        try:
            return (self.path / name).read_text()
        except OSError:
            return ""
