"""The physical choices for one plan and the Spark configuration they translate to.

``Choice`` is what the optimizer searches over; ``SparkConfig`` is the chosen configuration in
Spark's terms, with ``as_spark_conf()`` giving the real keys. The executor applies them when
vista_sql creates the session, and prints them as advice when the user passed their own session
(settings such as the heap size only take effect when the JVM starts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from vista_sql.logical.query import JoinStrategy, StorageLevel
from vista_sql.units import MiB

OVERHEAD_MIN = 384 * MiB
"""Spark's own floor for spark.executor.memoryOverhead."""

STORAGE_LEVELS: dict[str, str] = {
    "deserialized": "MEMORY_AND_DISK_DESER",
    "serialized": "MEMORY_AND_DISK",
    "disk": "DISK_ONLY",
}
"""vista_sql's persistence levels as PySpark ``StorageLevel`` names.

``deserialized`` is what ``DataFrame.cache()`` uses: in-memory columnar batches as Java objects,
spilling to disk what does not fit. ``serialized`` is PySpark's ``MEMORY_AND_DISK`` (deserialized
= False): the batches serialized to bytes, compressed with lz4 because the configuration sets
``spark.rdd.compress``. ``disk`` writes them, serialized and compressed, to spark.local.dir only.
"""


def storage_level_name(level: StorageLevel) -> str:
    """The PySpark ``StorageLevel`` attribute for a vista_sql persistence level."""
    return STORAGE_LEVELS[level]


@dataclass(frozen=True, slots=True)
class Choice:
    """Everything the optimizer picks for one logical alternative besides the heap size."""

    join: JoinStrategy
    persist: StorageLevel
    executor_cores: int
    """Concurrent tasks per node: each inference task is one Python worker with its own model."""
    tf_threads: int
    """TensorFlow intra-op threads per task."""
    batch_size: int
    memory_fraction: float
    storage_fraction: float
    partitions: int
    arrow_rows: int
    """spark.sql.execution.arrow.maxRecordsPerBatch: rows per batch sent to a Python worker."""
    cache_rows: int
    """spark.sql.inMemoryColumnarStorage.batchSize: rows per columnar batch when persisting."""

    def describe(self) -> str:
        return (
            f"join={self.join} persist={self.persist} cores={self.executor_cores}"
            f" tf_threads={self.tf_threads} batch={self.batch_size}"
            f" fraction={self.memory_fraction:.2f} partitions={self.partitions}"
        )


@dataclass(frozen=True, slots=True)
class SparkConfig:
    """The Spark session settings for the chosen plan."""

    mode: Literal["local", "cluster"]
    nodes: int
    executor_cores: int
    tf_threads: int
    partitions: int
    heap_bytes: int
    """Executor heap; in local mode the driver's heap, since the driver runs the tasks."""
    driver_heap_bytes: int
    memory_fraction: float
    storage_fraction: float
    batch_size: int
    arrow_rows: int
    cache_rows: int
    compress_cached: bool
    """spark.rdd.compress: lz4 on serialized cached blocks (the executor's branch tables are
    cached serialized, and so are the serialized and disk persistence levels)."""
    max_result_bytes: int | None
    """spark.driver.maxResultSize when a broadcast needs more than the 1g default."""
    gpu: bool
    persist_level: StorageLevel | None
    """The persistence level of every Persist in the plan (None when the plan persists nothing)."""
    overhead_bytes: int = 0
    """A node's estimated memory outside the executor heap (JVM native memory, Python workers):
    spark.executor.memoryOverhead, which YARN and Kubernetes add to the executor's container."""
    file_open_bytes: int = 4 * MiB
    """spark.sql.files.openCostInBytes: what opening a file costs, in bytes one could read in that
    time. Spark's default (4 MiB) packs about 30 small images into a scan task, so a directory of
    200,000 JPEGs makes some 6,500 tasks per scan; the cost model's measured rates say less."""

    def as_spark_conf(self) -> dict[str, str]:
        """The settings as Spark configuration keys and string values, sorted by key."""
        conf: dict[str, str] = {
            "spark.memory.fraction": f"{self.memory_fraction:g}",
            "spark.memory.storageFraction": f"{self.storage_fraction:g}",
            "spark.sql.shuffle.partitions": str(self.partitions),
            "spark.default.parallelism": str(self.partitions),
            "spark.sql.execution.arrow.maxRecordsPerBatch": str(self.arrow_rows),
            "spark.sql.inMemoryColumnarStorage.batchSize": str(self.cache_rows),
            # vista_sql places broadcast hints itself; Spark's size-based automatic broadcast
            # (also AQE's runtime conversion) would override the cost model's choice.
            "spark.sql.autoBroadcastJoinThreshold": "-1",
            "spark.sql.files.openCostInBytes": str(self.file_open_bytes),
            "spark.rdd.compress": "true" if self.compress_cached else "false",
            "spark.python.worker.reuse": "true",
            # Read by TensorFlow in every Python worker (spark.executorEnv.* reaches the workers
            # in local mode too, through SparkContext.environment).
            "spark.executorEnv.TF_NUM_INTRAOP_THREADS": str(self.tf_threads),
            "spark.executorEnv.TF_NUM_INTEROP_THREADS": "1",
            "spark.executorEnv.OMP_NUM_THREADS": str(self.tf_threads),
        }
        if self.mode == "local":
            conf["spark.master"] = f"local[{self.executor_cores}]"
            conf["spark.driver.memory"] = _memory(self.heap_bytes)
        else:
            conf["spark.executor.memory"] = _memory(self.heap_bytes)
            conf["spark.executor.cores"] = str(self.executor_cores)
            conf["spark.executor.instances"] = str(self.nodes)
            conf["spark.cores.max"] = str(self.executor_cores * self.nodes)
            conf["spark.driver.memory"] = _memory(self.driver_heap_bytes)
            conf["spark.executor.memoryOverhead"] = _memory(max(OVERHEAD_MIN, self.overhead_bytes))
        if self.max_result_bytes is not None:
            conf["spark.driver.maxResultSize"] = _memory(self.max_result_bytes)
        if self.gpu:
            conf["spark.executorEnv.TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
        return dict(sorted(conf.items()))

    def to_json(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "nodes": self.nodes,
            "executor_cores": self.executor_cores,
            "tf_threads": self.tf_threads,
            "partitions": self.partitions,
            "heap_bytes": self.heap_bytes,
            "driver_heap_bytes": self.driver_heap_bytes,
            "memory_fraction": self.memory_fraction,
            "storage_fraction": self.storage_fraction,
            "batch_size": self.batch_size,
            "arrow_rows": self.arrow_rows,
            "cache_rows": self.cache_rows,
            "persist_level": self.persist_level,
            "storage_level": storage_level_name(self.persist_level) if self.persist_level else None,
            "spark_conf": self.as_spark_conf(),
        }


def _memory(size: int) -> str:
    """Bytes as a Spark memory string in whole MiB, rounded up (``3072m``)."""
    return f"{math.ceil(size / MiB)}m"
