"""When a run runs out of memory anyway: recognise it, and correct the estimates for a new plan.

The memory model can be wrong (a CNN's activations larger than measured, another process taking
memory). When the operating system kills a Python worker or an executor for want of memory, or a
Java ``OutOfMemoryError`` ends a job, Spark retries the task and then fails the job. vista_sql then
plans once more (``physical.run``), with the estimates corrected by what happened:

- a process killed for memory: the statement needed at least its measured peak, and at least the
  memory it had (the node's less the OS reserve), and is taken to have needed a quarter more than
  that (``NEED_MARGIN``: the kill stopped its growth). The shortfall is put on the Python workers,
  the region no Spark setting bounds: their estimates are multiplied by the factor that makes the
  failed plan's estimate reach that need;
- a Java OutOfMemoryError: what the heap must hold is doubled.

The layers already in the feature store are read, not inferred again. A second failure is an
error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from vista_sql.cost_model.constants import CostConstants
from vista_sql.cost_model.memory import os_reserve
from vista_sql.cost_model.resources import Resources
from vista_sql.errors import ResourceError
from vista_sql.units import format_bytes

_JAVA_OOM = re.compile(r"java\.lang\.OutOfMemoryError[^\n]*")
_KILLED = re.compile(
    r"Python worker exited unexpectedly|ExecutorLostFailure|exit code 137|exitCode=137"
    r"|Container killed|OOMKilled|exceeding memory limits"
)
_SAYS_MEMORY = re.compile(r"exit code 137|exitCode=137|OOMKilled|exceeding memory limits")

MIN_CORRECTION = 1.1
"""The least factor the estimates are corrected by (a run that failed below its estimate)."""
NEED_MARGIN = 1.25
"""A run killed for memory needed more than was seen of it (the monitor samples, and the kill
stops the growth): the need is taken to be this much more than the measured lower bound."""


def oom_kills() -> int | None:
    """The kernel's count of processes killed for want of memory (``/proc/vmstat``: the whole
    machine's, memory cgroups' included); None where it cannot be read."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def out_of_memory(error: BaseException, kills_before: int | None) -> str | None:
    """Why ``error`` (a failed Spark action) is a run out of memory, or None when it is not one:
    a Java OutOfMemoryError; a process killed with the kernel's OOM kills counted meanwhile; an
    executor killed by its cluster manager for its memory (exit code 137, OOMKilled)."""
    text = str(error)
    java = _JAVA_OOM.search(text)
    if java is not None:
        return java.group(0).strip()
    killed = _KILLED.search(text)
    if killed is None:
        return None
    if _SAYS_MEMORY.search(text):
        return f"{killed.group(0)} (killed for its memory)"
    after = oom_kills()
    if kills_before is not None and after is not None and after > kills_before:
        return f"{killed.group(0)}: the kernel killed {after - kills_before} process(es) for memory"
    return None


class MemoryExhausted(ResourceError):
    """A run that ran out of memory (raised to ``run_query``, which plans once more)."""

    def __init__(self, reason: str, measured_peak: int | None) -> None:
        super().__init__(f"the run ran out of memory: {reason}")
        self.reason = reason
        self.measured_peak = measured_peak
        self.first_plan = ""
        """The plan that ran out (set by the caller that chose it)."""
        self.estimated_peak: float | None = None
        """Its estimated peak memory per node."""
        self.estimated_workers = 0.0
        """The Python workers' and their daemon's part of ``estimated_peak``."""


@dataclass(frozen=True)
class Replan:
    """How the second plan was made, and why (``TransferResult.replanned``)."""

    reason: str
    first_plan: str
    estimated_peak: float
    measured_peak: int | None
    corrected: str
    """Which estimates were corrected, and by how much."""
    resumed_layers: tuple[str, ...] = ()

    def describe(self) -> str:
        measured = ""
        if self.measured_peak is not None:
            measured = f", measured {format_bytes(self.measured_peak)}"
        resumed = (
            f"; read {', '.join(self.resumed_layers)} from the feature store"
            if self.resumed_layers
            else ""
        )
        return (
            f"re-planned once after running out of memory ({self.reason}): {self.first_plan} was"
            f" estimated at {format_bytes(self.estimated_peak)} per node{measured};"
            f" {self.corrected}{resumed}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "first_plan": self.first_plan,
            "estimated_peak_bytes": self.estimated_peak,
            "measured_peak_bytes": self.measured_peak,
            "corrected": self.corrected,
            "resumed_layers": list(self.resumed_layers),
        }


HEAP_CORRECTION = 2.0
"""What the heap must hold, after a Java OutOfMemoryError: the estimate doubled."""


def corrected_constants(
    failed: MemoryExhausted, resources: Resources, consts: CostConstants
) -> tuple[CostConstants, str]:
    """The cost constants to plan again with after ``failed``, and what was corrected."""
    if failed.reason.startswith("java.lang.OutOfMemoryError"):
        factor = consts.heap_need_correction * HEAP_CORRECTION
        return (
            replace(consts, heap_need_correction=factor),
            f"what the heap must hold estimated x{factor:.2f}",
        )
    assert failed.estimated_peak is not None
    memory = float(resources.memory_bytes)
    # The measured peak sums the processes' resident memory, counting pages they share (the
    # TensorFlow libraries every worker maps) once per process: it can exceed the memory there
    # was. As a lower bound of the need it errs on the safe side, so it is taken as it is.
    seen = max(float(failed.measured_peak or 0), memory - os_reserve(memory, consts))
    needed = seen * NEED_MARGIN
    workers = max(failed.estimated_workers, 1.0)
    others = max(0.0, failed.estimated_peak - workers)
    factor = max(MIN_CORRECTION, (needed - others) / workers)
    factor *= consts.python_worker_correction
    return (
        replace(consts, python_worker_correction=factor),
        f"Python workers' memory estimated x{factor:.2f} (the run needed at least"
        f" {format_bytes(needed)})",
    )
