"""The cluster a statement runs on: its shape, the check that a plan fits it, its executors' peaks.

Shape. A plan is sized per node, so the nodes must be known before anything is submitted:

- a standalone master (``spark://host:port``) reports every worker's cores and memory at its web
  UI's ``/json`` (``http://host:8080/json`` unless ``VISTA_SQL_MASTER_UI`` names another URL);
- on YARN and Kubernetes the session's settings say what each executor gets
  (``spark.executor.instances``, ``spark.executor.cores``, ``spark.executor.memory`` plus
  ``spark.executor.memoryOverhead``);
- ``WITH (nodes = ..., cores = ..., memory = ...)`` overrides each figure.

Every executor of a Spark application gets the same settings, so a plan is sized for the smallest
worker; it is refused (:class:`~vista_sql.errors.ResourceError`) before submission when it asks an
executor for more cores or memory than the largest worker offers, since Spark would otherwise
register the application and wait for an executor forever.

Peaks. On a cluster the driver's ``/proc`` does not see the executors: their peak memory comes
from Spark's executor metrics in the driver's status store (heartbeats carry each executor's peak
JVM heap and, with ``spark.executor.processTreeMetrics.enabled``, the resident memory of its JVM
and Python worker processes).
"""

from __future__ import annotations

import json
import math
import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from vista_sql.cost_model.resources import Resources
from vista_sql.errors import ResourceError
from vista_sql.logical.query import Options

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from vista_sql.cost_model.config import SparkConfig

MiB = 2**20
MASTER_UI_ENV = "VISTA_SQL_MASTER_UI"
MASTER_UI_PORT = 8080
"""The standalone master's default web UI port (``--webui-port``)."""
STATUS_TIMEOUT_S = 5.0

METRICS_CONF: dict[str, str] = {
    "spark.executor.processTreeMetrics.enabled": "true",
    "spark.executor.heartbeatInterval": "2s",
    "spark.executor.metrics.pollingInterval": "500ms",
}
"""What a cluster session sets so that executors report their peaks often enough to be seen."""


@dataclass(frozen=True, slots=True)
class Worker:
    host: str
    cores: int
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class ClusterShape:
    """The nodes executors can run on, and where the figures came from."""

    workers: tuple[Worker, ...]
    source: str

    @property
    def smallest(self) -> Worker:
        return Worker(
            host="smallest",
            cores=min(w.cores for w in self.workers),
            memory_bytes=min(w.memory_bytes for w in self.workers),
        )

    @property
    def largest_cores(self) -> int:
        return max(w.cores for w in self.workers)

    @property
    def largest_memory(self) -> int:
        return max(w.memory_bytes for w in self.workers)


def master_ui(master: str) -> str | None:
    """The standalone master's web UI URL for ``master``, or None for other masters."""
    from vista_sql.physical.session import master_endpoint

    given = os.environ.get(MASTER_UI_ENV)
    if given:
        return given.rstrip("/")
    endpoint = master_endpoint(master)
    if endpoint is None:
        return None
    host = f"[{endpoint[0]}]" if ":" in endpoint[0] else endpoint[0]
    return f"http://{host}:{MASTER_UI_PORT}"


def standalone_shape(ui: str) -> ClusterShape:
    """The alive workers a standalone master's ``/json`` status lists."""
    url = f"{ui}/json/"
    try:
        with urllib.request.urlopen(url, timeout=STATUS_TIMEOUT_S) as page:
            status = json.load(page)
    except (OSError, ValueError) as error:
        raise ResourceError(
            f"cannot read the standalone master's status at {url} ({error}); set "
            f"{MASTER_UI_ENV} to its web UI's URL, or give WITH (nodes, cores, memory)"
        ) from error
    return parse_master_status(status, url)


def parse_master_status(status: Mapping[str, Any], url: str) -> ClusterShape:
    """A standalone master's ``/json`` document as a shape (alive workers only)."""
    workers = tuple(
        Worker(host=str(w["host"]), cores=int(w["cores"]), memory_bytes=int(w["memory"]) * MiB)
        for w in status.get("workers", ())
        if w.get("state", "ALIVE") == "ALIVE"
    )
    if not workers:
        raise ResourceError(f"the standalone master at {url} has no alive worker")
    return ClusterShape(workers=workers, source=f"standalone master {url}")


def settings_shape(conf: Mapping[str, str], manager: str) -> ClusterShape | None:
    """YARN / Kubernetes: the executors the settings ask for (None when they do not say)."""
    from vista_sql.physical.cgroup import parse_size

    instances = conf.get("spark.executor.instances")
    memory = conf.get("spark.executor.memory")
    if instances is None or memory is None:
        return None
    overhead = conf.get("spark.executor.memoryOverhead")
    heap = parse_size(memory if memory[-1].isalpha() else memory + "m")
    extra = (
        parse_size(overhead if overhead[-1].isalpha() else overhead + "m")
        if overhead
        else max(384 * MiB, heap // 10)  # Spark's default overhead: 10%, at least 384 MiB
    )
    worker = Worker(
        host="executor", cores=int(conf.get("spark.executor.cores", "1")), memory_bytes=heap + extra
    )
    return ClusterShape(workers=(worker,) * int(instances), source=f"{manager} session settings")


def discover(
    master: str, conf: Mapping[str, str] | None = None, options: Options | None = None
) -> ClusterShape | None:
    """The shape of the cluster at ``master``; None in local mode, when WITH gives every figure
    (``options``: nodes, cores and memory), or when nothing says."""
    from vista_sql.physical.session import is_local

    if is_local(master):
        return None
    if options is not None and None not in (options.nodes, options.cores, options.memory):
        return None
    ui = master_ui(master)
    if ui is not None:
        return standalone_shape(ui)
    manager = "YARN" if master.startswith("yarn") else "Kubernetes"
    return settings_shape(conf or {}, manager)


def cluster_resources(options: Options, shape: ClusterShape, base: Resources) -> Resources:
    """The resources a plan is sized for: WITH's figures, else the smallest worker's and the
    number of workers (``base`` keeps the GPU memory found)."""
    smallest = shape.smallest
    origin = dict(base.origin)

    def pick(name: str, given: int | None, found: int, what: str) -> int:
        origin[name] = f"WITH {name}" if given is not None else f"{shape.source}: {what}"
        return given if given is not None else found

    count = len(shape.workers)
    memory = pick("memory", options.memory, smallest.memory_bytes, f"smallest of {count} workers")
    cores = pick("cores", options.cores, smallest.cores, f"smallest of {count} workers")
    nodes = pick("nodes", options.nodes, count, f"{count} alive workers")
    return replace(
        base,
        memory_bytes=memory,
        cores=cores,
        nodes=nodes,
        origin=tuple(sorted(origin.items())),
    )


def check_fits(config: SparkConfig, conf: Mapping[str, str], shape: ClusterShape) -> None:
    """Refuse a plan an executor of which no worker can host (Spark would wait forever)."""
    from vista_sql.cost_model.estimate import format_bytes
    from vista_sql.physical.cgroup import parse_size

    cores = int(conf.get("spark.executor.cores", config.executor_cores))
    memory = parse_size(conf.get("spark.executor.memory", f"{config.heap_bytes // MiB}m"))
    problems = []
    if cores > shape.largest_cores:
        problems.append(f"{cores} cores per executor, the largest worker has {shape.largest_cores}")
    if memory > shape.largest_memory:
        problems.append(
            f"{format_bytes(memory)} per executor, the largest worker offers"
            f" {format_bytes(shape.largest_memory)}"
        )
    if problems:
        raise ResourceError(
            f"the plan does not fit the cluster ({shape.source}): it asks for "
            + " and ".join(problems)
            + "; give fewer cores or less memory in WITH, or add larger workers",
            needed_bytes=memory,
        )


def executor_conf(config: SparkConfig) -> dict[str, str]:
    """The per-node settings of ``config`` for this cluster, and what executors must report."""
    conf = {k: v for k, v in config.as_spark_conf().items() if k != "spark.master"}
    if config.mode == "local":  # one node: the chosen heap and slots as one executor
        conf.pop("spark.driver.memory", None)
        conf["spark.executor.memory"] = f"{math.ceil(config.heap_bytes / MiB)}m"
        conf["spark.executor.cores"] = str(config.executor_cores)
        conf["spark.executor.instances"] = "1"
        conf["spark.cores.max"] = str(config.executor_cores)
    return {**conf, **METRICS_CONF}


@dataclass(frozen=True, slots=True)
class ExecutorPeak:
    """One executor's peak memory as Spark's executor metrics report it (bytes; None: unknown)."""

    executor: str
    host: str
    jvm_heap: int | None
    jvm_rss: int | None
    python_rss: int | None

    @property
    def total(self) -> int | None:
        """Resident memory of the executor's process tree (JVM and Python workers)."""
        if self.jvm_rss is None and self.python_rss is None:
            return None
        return (self.jvm_rss or 0) + (self.python_rss or 0)


def executor_peaks(session: SparkSession) -> list[ExecutorPeak]:
    """Every executor's (not the driver's) peak memory from the driver's status store."""
    context = getattr(session, "sparkContext", None)
    jsc = getattr(context, "_jsc", None)
    if jsc is None:  # Spark Connect: no driver JVM in this process
        return []
    summaries = jsc.sc().statusStore().executorList(False)
    peaks = []
    for index in range(summaries.size()):
        summary = summaries.apply(index)
        if summary.id() == "driver":
            continue
        metrics = summary.peakMemoryMetrics()

        def value(name: str, metrics: Any = metrics) -> int | None:
            if not metrics.isDefined():
                return None
            found = int(metrics.get().getMetricValue(name))
            return found if found > 0 else None

        peaks.append(
            ExecutorPeak(
                executor=str(summary.id()),
                host=str(summary.hostPort()).rpartition(":")[0],
                jvm_heap=value("JVMHeapMemory"),
                jvm_rss=value("ProcessTreeJVMRSSMemory"),
                python_rss=value("ProcessTreePythonRSSMemory"),
            )
        )
    return sorted(peaks, key=lambda p: (p.host, p.executor))
