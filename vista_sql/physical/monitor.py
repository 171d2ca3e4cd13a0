"""Peak memory of the whole process tree while a statement runs (driver, JVM, Python workers).

Spark's Python workers and the JVM are descendants of this process in local mode, so the sum of the
resident set sizes of the tree is what an operating-system memory limit (a cgroup) would see. The
sampler reads /proc, so it costs no dependency; without /proc it reports nothing (``None``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from types import TracebackType

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class MemorySample:
    """Resident bytes of the tree split by kind of process."""

    jvm: int
    python_workers: int
    driver: int

    @property
    def total(self) -> int:
        return self.jvm + self.python_workers + self.driver


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree.setdefault(parent, []).append(int(entry))
    return tree


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _is_jvm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip() == "java"
    except OSError:
        return False


def sample(root: int | None = None) -> MemorySample | None:
    """One reading of the tree under ``root`` (this process by default)."""
    if not os.path.isdir("/proc"):
        return None
    root = os.getpid() if root is None else root
    tree = _children()
    jvm = workers = 0
    stack = list(tree.get(root, []))
    while stack:
        pid = stack.pop()
        stack.extend(tree.get(pid, []))
        if _is_jvm(pid):
            jvm += _rss(pid)
        else:
            workers += _rss(pid)
    return MemorySample(jvm=jvm, python_workers=workers, driver=_rss(root))


@dataclass
class PeakMemory:
    """Samples the tree every ``interval`` seconds in a thread; ``peak`` is the largest total."""

    interval: float = 0.2
    peak: MemorySample | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.observe()
            self._stop.wait(self.interval)

    def observe(self) -> None:
        current = sample()
        if current is not None and (self.peak is None or current.total > self.peak.total):
            self.peak = current

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._loop, name="vista-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.observe()
