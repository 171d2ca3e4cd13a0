"""Every number the cost model assumes, in one place, each with where it came from.

Three kinds of constant:

- **Spark and library facts**: defaults and hard-coded sizes from Spark's configuration docs and
  source (cited by class and key). They change only with the Spark version.
- **Measured on a machine** by ``vista-sql calibrate`` (``physical.profile``: each in a fresh
  process, resident memory from ``/proc/self/status``, times with ``perf_counter``). The values in
  this file are the fallback; the shipped ``calibration.json`` beside it overrides them, and the
  user's calibration file (``calibration_path()``, written by ``vista-sql calibrate``) overrides
  that. A calibration records the machine it was measured on; ``calibration_status()`` says
  whether that is this machine, for EXPLAIN.
- **Modelling assumptions**: rates and factors not yet measured end to end, stated as such, for the
  calibration benchmark (predicted vs measured runs) to correct.

``constants()`` is what the model uses: the defaults with the calibration file applied.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from vista_sql.errors import CalibrationError
from vista_sql.units import GiB, MiB

SPARK = "Spark fact"
MEASURED = "measured"
ASSUMED = "assumption"

# Numbers the memory model uses as they are, not calibrated (module constants, not in
# ``CostConstants``): where each comes from is in its docstring.

PARQUET_BATCH_ROWS = 4096
"""spark.sql.parquet.columnarReaderBatchSize default: rows a Parquet scan decodes at once."""
STORE_ROW_GROUP_BYTES = 16 * MiB
"""Row group size of the feature store's Parquet files (physical/store/spark_io.py writes them
so): the vectorized reader decodes at most one row group's rows at once, so wide tensors (a conv
layer's resume tensor is ~100 KB a row) do not make a 4096-row batch of hundreds of MB."""
PARQUET_MIN_GROUP_ROWS = 100
"""parquet-mr first checks a row group's size after this many rows (minRowCountForPageSizeCheck),
so a group holds at least that many."""
PARTITION_SKEW = 1.5
"""Assumption: the largest of a plan's hash partitions against their mean, for the batches a task
can form: hashing a few hundred keys into a handful of partitions leaves some up to half above
the mean."""
MIN_HEAP_OVER_RESERVED = 1.5
"""Spark fact: UnifiedMemoryManager.getMaxMemory refuses a heap below 1.5 x the reserved
memory ("System memory ... must be at least ...")."""


def _c(default: float, unit: str, kind: str, source: str) -> Any:
    return field(default=default, metadata={"unit": unit, "kind": kind, "source": source})


@dataclass(frozen=True, slots=True)
class CostConstants:
    """The cost model's constants. Fields are plain numbers; ``source(name)`` says why each."""

    # ---- Spark memory manager (UnifiedMemoryManager, docs: tuning.html#memory-management) ----
    spark_reserved_bytes: float = _c(
        300 * MiB,
        "bytes",
        SPARK,
        "UnifiedMemoryManager.RESERVED_SYSTEM_MEMORY_BYTES = 300 MiB, taken off the heap before"
        " spark.memory.fraction applies",
    )
    memory_fraction_default: float = _c(
        0.6, "fraction", SPARK, "spark.memory.fraction default (configuration.html)"
    )
    storage_fraction_default: float = _c(
        0.5, "fraction", SPARK, "spark.memory.storageFraction default (configuration.html)"
    )
    jvm_overhead_min_bytes: float = _c(
        384 * MiB,
        "bytes",
        SPARK,
        "spark.executor.memoryOverhead minimum (MEMORY_OVERHEAD_MIN = 384 MiB): Spark's own"
        " allowance for the JVM's native memory (metaspace, code cache, thread stacks, GC, netty"
        " direct buffers) beyond the heap",
    )
    jvm_overhead_factor: float = _c(
        0.10,
        "fraction of heap",
        SPARK,
        "spark.executor.memoryOverheadFactor default 0.10 (configuration.html)",
    )
    default_heap_bytes: float = _c(
        1 * GiB, "bytes", SPARK, "spark.driver.memory / spark.executor.memory default 1g"
    )
    arrow_records_default: float = _c(
        10_000,
        "rows",
        SPARK,
        "spark.sql.execution.arrow.maxRecordsPerBatch default: rows per Arrow batch to a Python"
        " worker (mapInPandas, pandas UDFs)",
    )
    columnar_batch_rows_default: float = _c(
        10_000,
        "rows",
        SPARK,
        "spark.sql.inMemoryColumnarStorage.batchSize default: rows the DataFrame cache builds in"
        " one columnar batch, in heap, per task",
    )
    broadcast_threshold_default: float = _c(
        10 * MiB, "bytes", SPARK, "spark.sql.autoBroadcastJoinThreshold default 10 MiB"
    )
    broadcast_max_bytes: float = _c(
        8 * GiB,
        "bytes",
        SPARK,
        "BroadcastExchangeExec refuses to broadcast a table of 8 GiB or more",
    )
    broadcast_driver_copies: float = _c(
        3,
        "copies",
        SPARK,
        "BroadcastExchangeExec collects the rows to the driver, builds a HashedRelation from them,"
        " and TorrentBroadcast writes serialized pieces of it to the block manager: three copies"
        " of the table live on the driver while the broadcast is built",
    )
    broadcast_executor_copies: float = _c(
        2,
        "copies",
        SPARK,
        "TorrentBroadcast on an executor fetches the serialized pieces and deserializes the"
        " relation: two copies while reading, one after",
    )
    hash_relation_factor: float = _c(
        1.5,
        "x row bytes",
        ASSUMED,
        "UnsafeHashedRelation stores the UnsafeRows plus a BytesToBytesMap index (pointer array"
        " and hash codes, load factor 0.5): about 1.5x the row bytes",
    )
    lbfgs_history: float = _c(
        10,
        "pairs",
        SPARK,
        "LogisticRegression.createOptimizer: BreezeLBFGS(maxIter, m = 10, tol): 10 correction"
        " pairs of coefficient vectors on the driver",
    )
    logreg_max_iter_default: float = _c(100, "iterations", SPARK, "LogisticRegression maxIter")
    tree_max_depth_default: float = _c(5, "levels", SPARK, "DecisionTree maxDepth default 5")
    forest_trees_default: float = _c(20, "trees", SPARK, "RandomForest numTrees default 20")
    tree_bins_default: float = _c(32, "bins", SPARK, "DecisionTree maxBins default 32")
    mllib_block_bytes: float = _c(
        1 * MiB,
        "bytes",
        SPARK,
        "InstanceBlock.DefaultBlockSizeInMB = 1.0: linear models stack rows into 1 MiB blocks",
    )
    linear_input_passes: float = _c(
        2,
        "passes",
        SPARK,
        "LogisticRegression/LinearSVC.train read their input twice: once for the Summarizer"
        " (mean, std, label histogram), once to build the standardized blocks they persist"
        " MEMORY_AND_DISK for the iterations (LogisticRegression.scala trainImpl)",
    )
    tree_input_passes: float = _c(
        2,
        "passes",
        SPARK,
        "RandomForest.run reads the input to find split candidates (a sample) and to bin it"
        " into TreePoints, which it persists MEMORY_AND_DISK",
    )
    evaluate_input_passes: float = _c(
        1,
        "passes",
        ASSUMED,
        "the executor scores the held-out rows once and computes every metric from those"
        " predictions (to be kept true by physical/: three evaluators on an uncached DataFrame"
        " would read it three times)",
    )
    # ---- Row formats (UnsafeRow, UnsafeArrayData, VectorUDT, CPython) ----
    key_bytes: float = _c(
        16,
        "bytes",
        SPARK,
        "an UnsafeRow field slot (8 B) plus a short string id's variable part (8 B on average)",
    )
    row_header_bytes: float = _c(
        16, "bytes", SPARK, "UnsafeRow null bitset and size word for a handful of fields"
    )
    binary_file_row_bytes: float = _c(
        128,
        "bytes",
        SPARK,
        "binaryFile rows carry path (a ~80 B URI string), modificationTime and length besides"
        " the content",
    )
    vector_overhead_bytes: float = _c(
        40,
        "bytes",
        SPARK,
        "VectorUDT's struct (type byte, size, null indices, values array header) around a dense"
        " vector's doubles",
    )
    python_object_bytes: float = _c(
        33,
        "bytes",
        SPARK,
        "sys.getsizeof(b'') == 33: each binary value becomes a CPython bytes object in pandas",
    )
    serialized_compression: float = _c(
        0.7,
        "ratio",
        ASSUMED,
        "lz4 (spark.rdd.compress) on serialized CNN features: post-ReLU activations hold many"
        " zeros; to be calibrated",
    )
    # ---- This machine: memory (benchmarks/bench_calibration.py constants) ----
    driver_python_bytes: float = _c(
        150 * MiB,
        "bytes",
        MEASURED,
        "peak RSS of a Python process with vista_sql, pyspark.sql, pandas and pyarrow imported",
    )
    python_daemon_bytes: float = _c(
        40 * MiB,
        "bytes",
        MEASURED,
        "peak RSS of a Python process with pyspark.daemon imported (the fork server of workers)",
    )
    python_worker_correction: float = _c(
        1.0,
        "x",
        ASSUMED,
        "factor on every Python worker's memory estimate: 1, except when a run ran out of memory"
        " and is planned again (physical/oom.py: what the run showed the estimate missed)",
    )
    heap_need_correction: float = _c(
        1.0,
        "x",
        ASSUMED,
        "factor on what the JVM heap must hold: 1, except after a Java OutOfMemoryError, when"
        " the statement is planned again with it doubled (physical/oom.py)",
    )
    jvm_resident_base_bytes: float = _c(
        512 * MiB,
        "bytes",
        MEASURED,
        "resident memory of a Spark JVM beyond the heap it touches (metaspace, code cache,"
        " threads, GC structures, netty and Arrow buffers): a line through two runs of AlexNet"
        " conv5..fc8 on 400 rows, the local[2] JVM (RSS 777 MiB, heap 1 GiB) and a standalone"
        " executor (RSS 625-656 MiB, heap 498 MiB)",
    )
    jvm_heap_touched_fraction: float = _c(
        0.25,
        "fraction of heap",
        MEASURED,
        "share of -Xmx the JVM makes resident when little is cached (G1 grows into the heap as"
        " garbage accumulates): the same line's slope",
    )
    jvm_min_heap_free_ratio: float = _c(
        0.4,
        "fraction of heap",
        SPARK,
        "HotSpot's MinHeapFreeRatio (40 %), which G1 keeps free beyond the live data when it sizes"
        " the heap: a JVM holding L bytes of cached blocks and user memory makes L / (1 - 0.4)"
        " resident. Checked at 200,000 rows (benchmarks/SCALE.md): ~9.4 GiB held in a 16 GiB"
        " heap, and the JVM resident 16.2 GiB, the whole heap",
    )
    python_worker_base_bytes: float = _c(
        600 * MiB,
        "bytes",
        MEASURED,
        "peak RSS of a Python process with pyspark.worker, pandas, pyarrow, TensorFlow and Keras"
        " imported and one tiny inference run (TF runtime initialized)",
    )
    tf_workspace_factor: float = _c(
        2.0,
        "x largest activation",
        MEASURED,
        "resident bytes TensorFlow adds per image of a batch, over the largest activation"
        " (Keras ResNet50, batch 32 vs 1, peak RSS)",
    )
    param_copies: float = _c(
        1.0,
        "copies",
        ASSUMED,
        "Keras holds one copy of the weights in its variables once built; the layer statistics'"
        " measured peak RSS (udfs/layer_stats) includes any transient copy when present",
    )
    # ---- This machine: speed ----
    inference_flops_per_core: float = _c(
        3e10,
        "FLOP/s",
        MEASURED,
        "ResNet50 (random weights) inference as vista_sql's workers build and run it (the"
        " partial model to the top two layers), batch 8, one TensorFlow thread: the catalog's"
        " FLOPs (2 x MACs of Conv2D and Dense, from layer shapes) / seconds",
    )
    tf_efficiency_resnet50: float = _c(
        1.0,
        "x",
        MEASURED,
        "a CNN's TensorFlow FLOP rate as vista_sql builds and runs it (the roster's partial"
        " model to the top two layers, batch 8, one thread) over ResNet50's"
        " (inference_flops_per_core): 1 for ResNet50 itself and for a CNN calibrate does not"
        " measure",
    )
    tf_efficiency_alexnet: float = _c(
        1.0,
        "x",
        MEASURED,
        "AlexNet's rate as vista_sql runs it over ResNet50's, measured as"
        " tf_efficiency_resnet50; its large dense layers are memory-bound",
    )
    tf_efficiency_vgg16: float = _c(
        1.0,
        "x",
        MEASURED,
        "VGG16's rate as vista_sql runs it over ResNet50's, measured as tf_efficiency_resnet50"
        " (at batch 4: about 4 s a batch of 8 on one core)",
    )
    tf_thread_scaling_exponent: float = _c(
        0.7,
        "exponent",
        MEASURED,
        "throughput with t TensorFlow threads is t**e times one thread's (ResNet50, 2 vs 1;"
        " only written when a second core was free; fallback between the 0.57 seen here under"
        " load and the ~0.9 of a 2048x2048 matmul)",
    )
    tf_concurrency_scaling_exponent: float = _c(
        1.0,
        "exponent",
        MEASURED,
        "throughput of k single-thread TensorFlow processes running at once (a node's concurrent"
        " inference tasks) is k**e times one alone's (ResNet50, 2 vs 1, measured by vista-sql"
        " calibrate; 1, no contention, until a machine is calibrated)",
    )
    tf_thread_scaling_exponent_alexnet: float = _c(
        math.nan,
        "exponent",
        MEASURED,
        "tf_thread_scaling_exponent for AlexNet itself, as vista_sql runs it (2 threads vs 1);"
        " NaN until calibrated: the generic exponent applies",
    )
    tf_concurrency_scaling_exponent_alexnet: float = _c(
        math.nan,
        "exponent",
        MEASURED,
        "tf_concurrency_scaling_exponent for AlexNet itself (2 single-thread processes vs 1);"
        " NaN until calibrated: the generic exponent applies",
    )
    tf_thread_scaling_exponent_resnet50: float = _c(
        math.nan,
        "exponent",
        MEASURED,
        "tf_thread_scaling_exponent for ResNet50 itself, as vista_sql runs it (2 threads vs 1);"
        " NaN until calibrated: the generic exponent applies",
    )
    tf_concurrency_scaling_exponent_resnet50: float = _c(
        math.nan,
        "exponent",
        MEASURED,
        "tf_concurrency_scaling_exponent for ResNet50 itself (2 single-thread processes vs 1);"
        " NaN until calibrated: the generic exponent applies",
    )
    tf_thread_scaling_exponent_vgg16: float = _c(
        math.nan,
        "exponent",
        MEASURED,
        "tf_thread_scaling_exponent for VGG16 itself, as vista_sql runs it (2 threads vs 1);"
        " NaN until calibrated: the generic exponent applies",
    )
    tf_concurrency_scaling_exponent_vgg16: float = _c(
        math.nan,
        "exponent",
        MEASURED,
        "tf_concurrency_scaling_exponent for VGG16 itself (2 single-thread processes vs 1);"
        " NaN until calibrated: the generic exponent applies",
    )
    tf_batch_slowdown_exponent: float = _c(
        0.13,
        "exponent",
        MEASURED,
        "per-image TensorFlow time at batch b > 8 is (b / 8)**e times batch 8's (the batch the"
        " FLOP rate is measured at): larger batches' activations outgrow the CPU caches. vista-sql"
        " calibrate measures it from ResNet50 at batch 32 against 8 (one thread); measured here"
        " (AMD EPYC, 1 thread, img/s at batch 8/16/32/64): ResNet50 7.81/6.99/6.44/5.46,"
        " AlexNet 35.0/33.0/29.7/27.0, e = 0.14 and 0.12",
    )
    tf_call_overhead_seconds: float = _c(
        0.002,
        "seconds",
        MEASURED,
        "one predict_on_batch call of a tiny Keras model: the fixed cost per batch",
    )
    python_worker_start_seconds: float = _c(
        4.0,
        "seconds",
        MEASURED,
        "importing pyspark.worker, pandas, pyarrow, TensorFlow and Keras in a fresh process",
    )
    model_build_seconds: float = _c(
        3.0,
        "seconds",
        MEASURED,
        "udfs.inference.runner_for with seeded random weights (alexnet, resnet50, vgg16: Keras"
        " model, weights, tf.function): the fixed part of a least-squares line over parameter"
        " bytes",
    )
    model_build_seconds_per_param_byte: float = _c(
        2e-9, "s/byte", MEASURED, "the same line's slope, seconds per parameter byte"
    )
    tf_first_call_seconds: float = _c(
        1.0,
        "seconds",
        MEASURED,
        "a runner's first batch minus a later one (tf.function tracing), mean of the same three",
    )
    decode_seconds_per_jpeg_byte: float = _c(
        5e-8,
        "s/byte",
        MEASURED,
        "Pillow decode + RGB of a 500x375 quality-90 JPEG, per compressed byte",
    )
    resize_seconds_per_output_pixel: float = _c(
        2e-8,
        "s/pixel",
        MEASURED,
        "Pillow bilinear resize to 224x224 plus float32 BGR mean subtraction, per output pixel",
    )
    # ---- Spark speed: assumptions until the calibration benchmark runs plans ----
    gpu_flops: float = _c(
        1e13, "FLOP/s", ASSUMED, "sustained CNN inference on one data-center GPU (fp32)"
    )
    gpu_runtime_bytes: float = _c(
        512 * MiB, "bytes", ASSUMED, "CUDA context and cuDNN handles per TensorFlow process"
    )
    scan_seconds_per_byte: float = _c(
        2e-9, "s/byte", ASSUMED, "binaryFile read from local disk or page cache, per core"
    )
    file_open_seconds: float = _c(
        2e-4, "seconds", ASSUMED, "opening one small file in a binaryFile scan (local fs)"
    )
    parquet_seconds_per_byte: float = _c(
        5e-9, "s/byte", ASSUMED, "Parquet decode to rows, per core"
    )
    text_seconds_per_byte: float = _c(
        3e-8, "s/byte", ASSUMED, "CSV/JSON parse with a given schema, per core"
    )
    arrow_seconds_per_byte: float = _c(
        2e-9,
        "s/byte",
        ASSUMED,
        "JVM rows -> Arrow -> pandas and back, per byte crossing to a Python worker",
    )
    row_copy_seconds_per_byte: float = _c(
        5e-10, "s/byte", ASSUMED, "copying UnsafeRow bytes in a projection or join output"
    )
    hash_probe_seconds_per_row: float = _c(
        1e-7, "seconds", ASSUMED, "probing a HashedRelation per streamed row"
    )
    broadcast_build_seconds_per_byte: float = _c(
        1e-8,
        "s/byte",
        ASSUMED,
        "collect, hash-build and serialize a broadcast table on the driver (single thread)",
    )
    shuffle_seconds_per_byte: float = _c(
        1e-8,
        "s/byte",
        ASSUMED,
        "shuffle write (serialize, lz4, local disk) and read back, per byte, per core",
    )
    sort_seconds_per_row: float = _c(
        1e-7, "seconds", ASSUMED, "sort-merge join: sorting and merging, per row"
    )
    disk_seconds_per_byte: float = _c(
        5e-9, "s/byte", ASSUMED, "local disk write or read (spill, DISK_ONLY), per byte"
    )
    cache_write_seconds_per_byte: float = _c(
        1e-9, "s/byte", ASSUMED, "building in-memory columnar batches (DataFrame cache)"
    )
    cache_read_seconds_per_byte: float = _c(
        5e-10, "s/byte", ASSUMED, "reading cached columnar batches back to rows"
    )
    serialize_seconds_per_byte: float = _c(
        4e-9,
        "s/byte",
        ASSUMED,
        "Java serialization plus lz4 of cached batches (_SER levels), each way",
    )
    assemble_seconds_per_value: float = _c(
        5e-9, "seconds", ASSUMED, "array<float> to vector conversion and concatenation per value"
    )
    jvm_flops_per_core: float = _c(
        1e9,
        "FLOP/s",
        ASSUMED,
        "MLlib's Java BLAS (dev.ludovic.netlib) on dense double blocks, per core",
    )
    task_overhead_seconds: float = _c(
        0.005, "seconds", ASSUMED, "scheduling and launching one Spark task in local mode"
    )
    job_overhead_seconds: float = _c(
        0.3,
        "seconds",
        MEASURED,
        "one Spark job (scheduling, stage submission, result): EXPLAIN ANALYZE of AlexNet on 120"
        " rows here, where training (about 10 jobs on a few rows) took 2.7-4.6 s and evaluation"
        " (4 jobs on 24 rows) 1.4-2.1 s",
    )
    python_task_overhead_seconds: float = _c(
        0.03,
        "seconds",
        ASSUMED,
        "a Python UDF task's cost beyond a JVM task's: the Arrow stream to a reused worker, the"
        " function sent and loaded, the first and last batch; charged per inference task",
    )
    mllib_iteration_seconds: float = _c(
        0.1,
        "seconds",
        MEASURED,
        "one iteration of MLlib's optimizer beyond its compute: its treeAggregate job(s) (L-BFGS"
        " evaluates the loss 1-2 times an iteration) and the driver's step between them; Spark's"
        " event log of LOGREG on 2,200 rows here: 13 jobs of 0.05-0.1 s for 10 iterations",
    )
    mllib_fit_seconds: float = _c(
        0.7,
        "seconds",
        MEASURED,
        "one MLlib fit's fixed part beyond its iterations: its jobs reading the input (the"
        " summary statistics' aggregation), its instances blocked and cached, the driver's setup"
        " (a fit of two iterations less two iterations); Spark's event log of LOGREG on 500 rows"
        " here: a summarizer job of 0.4-0.7 s and 0.2-0.5 s of driver time around it",
    )
    mllib_warmup_seconds: float = _c(
        3.0,
        "seconds",
        MEASURED,
        "a session's first MLlib fit beyond a later one's (the JVM loads and compiles MLlib's"
        " code): Spark's event log of AlexNet's 4 layers on 500 rows here, fits of 5.5, 2.4, 2.1"
        " and 1.5 s",
    )
    stage_overhead_seconds: float = _c(
        0.05, "seconds", ASSUMED, "one more stage in a job (a shuffle's map side)"
    )
    # ---- Choices the optimizer makes with fixed rules ----
    os_reserve_fraction: float = _c(
        0.10,
        "fraction",
        ASSUMED,
        "memory left to the OS, other processes, page cache and estimation error",
    )
    os_reserve_min_bytes: float = _c(
        512 * MiB, "bytes", ASSUMED, "the least memory left to the OS and other processes"
    )
    heap_headroom: float = _c(
        1.25,
        "x live data",
        ASSUMED,
        "a JVM heap is sized 25% above the live data the plan keeps in it, so that GC is not"
        " thrashing near -Xmx",
    )
    broadcast_fraction_of_storage: float = _c(
        0.25,
        "fraction",
        ASSUMED,
        "broadcast the structured table only when its hash relation fits in a quarter of one"
        " executor's unified memory (Spark's fixed 10 MiB threshold ignores the heap)",
    )
    arrow_batch_multiple: float = _c(
        4,
        "TF batches",
        ASSUMED,
        "rows per Arrow batch = 4 TF batches: amortizes the JVM/Python round trip while keeping"
        " the per-task buffers a small multiple of the TF batch",
    )
    cache_batch_target_bytes: float = _c(
        64 * MiB,
        "bytes",
        ASSUMED,
        "spark.sql.inMemoryColumnarStorage.batchSize is lowered so that one task's columnar batch"
        " being built stays near 64 MiB (Spark's 10,000 rows of fc6 features are 160 MiB)",
    )
    pool_seconds_per_value: float = _c(
        2e-9, "seconds", ASSUMED, "pooling a convolutional activation, per input value"
    )
    partitions_per_slot: float = _c(
        2, "tasks", ASSUMED, "at least two tasks per task slot, for load balance"
    )
    partition_target_bytes: float = _c(
        128 * MiB,
        "bytes",
        SPARK,
        "spark.sql.files.maxPartitionBytes default: the size one task is meant to handle",
    )

    def scaling_exponents(self, cnn: str) -> tuple[float, float]:
        """(thread, concurrency) scaling exponents of ``cnn``'s inference: its own where
        calibrate measured it, else the generic ones (ResNet50's)."""
        thread = getattr(self, f"tf_thread_scaling_exponent_{cnn}", math.nan)
        together = getattr(self, f"tf_concurrency_scaling_exponent_{cnn}", math.nan)
        return (
            self.tf_thread_scaling_exponent if math.isnan(thread) else thread,
            self.tf_concurrency_scaling_exponent if math.isnan(together) else together,
        )


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where one constant came from."""

    name: str
    unit: str
    kind: str
    source: str


def provenance(consts: CostConstants | None = None) -> tuple[Provenance, ...]:
    """Every constant's unit and source, in declaration order (measured ones name the machine)."""
    from vista_sql.cost_model.machine import describe_machine

    calibration = _calibration()
    where = ""
    if calibration is not None:
        machine = describe_machine(calibration.get("machine", "?"))
        where = f" (on {machine}, {calibration.get('measured_at', '?')})"
    result = []
    for f in fields(CostConstants):
        kind = f.metadata["kind"]
        measured = calibration is not None and f.name in calibration.get("values", {})
        source = f.metadata["source"] + (where if measured else "")
        if kind == MEASURED and not measured:
            source += " (not yet measured here: built-in fallback)"
        result.append(Provenance(f.name, f.metadata["unit"], kind, source))
    return tuple(result)


CALIBRATION_ENV = "VISTA_SQL_CALIBRATION"
MAX_CALIBRATION_BYTES = 1 << 20


def calibration_path() -> Path:
    """The user's calibration file: ``$VISTA_SQL_CALIBRATION``, else
    ``$XDG_CONFIG_HOME/vista_sql/calibration.json`` (``~/.config`` by default)."""
    given = os.environ.get(CALIBRATION_ENV)
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vista_sql" / "calibration.json"


def check_calibration(document: Any, where: str) -> dict[str, Any]:
    """``document`` if it is a calibration: an object whose ``values`` name known constants with
    finite, non-negative numbers; else :class:`CalibrationError`."""

    def bad(problem: str) -> CalibrationError:
        return CalibrationError(
            f"the calibration file {where} {problem}; run `vista-sql calibrate` to measure this"
            f" machine again, or remove the file to use the shipped constants"
        )

    if not isinstance(document, dict):
        raise bad("is not a JSON object")
    values = document.get("values")
    if not isinstance(values, dict):
        raise bad("has no 'values' object")
    known = {f.name for f in fields(CostConstants)}
    for name, value in values.items():
        if name not in known:
            raise bad(f"names an unknown constant {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad(f"gives {name} as {value!r}, not a number")
        if not math.isfinite(value) or value < 0:
            raise bad(f"gives {name} = {value!r}, not a finite non-negative number")
    return document


def _read_calibration(path: Path) -> dict[str, Any]:
    where = f"'{path}'"
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CALIBRATION_BYTES + 1)
    except OSError as error:
        raise CalibrationError(f"the calibration file {where} cannot be read: {error}") from error
    if len(data) > MAX_CALIBRATION_BYTES:
        raise CalibrationError(f"the calibration file {where} is larger than 1 MiB")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CalibrationError(f"the calibration file {where} is not JSON: {error}") from error
    checked = check_calibration(document, where)
    checked["path"] = str(path)
    return checked


@cache
def _calibration() -> dict[str, Any] | None:
    """The user's calibration when there is one, else the shipped one (None: neither)."""
    user = calibration_path()
    if user.is_file():
        return _read_calibration(user)
    try:
        text = resources.files(__package__).joinpath("calibration.json").read_text()
    except FileNotFoundError:
        return None
    document: dict[str, Any] = check_calibration(json.loads(text), "shipped with vista_sql")
    return {**document, "path": None}


def write_calibration(document: dict[str, Any], path: Path | None = None) -> Path:
    """Store a measured calibration (checked first) as the user's file, atomically; use it from
    now on in this process. Returns the path written."""
    target = path if path is not None else calibration_path()
    check_calibration(document, f"'{target}'")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    os.replace(partial, target)
    reload_calibration()
    return target


def reload_calibration() -> None:
    """Forget the calibration read so far (after ``vista-sql calibrate`` wrote a new one)."""
    _calibration.cache_clear()
    constants.cache_clear()


@dataclass(frozen=True, slots=True)
class CalibrationStatus:
    """Which calibration the constants come from, and whether it was measured on this machine."""

    source: str
    """``user`` (the user's file), ``shipped`` (vista_sql's own) or ``none`` (built-in values)."""
    path: str | None
    machine: Any
    measured_at: str | None
    this_machine: bool

    def describe(self) -> str:
        from vista_sql.cost_model.machine import describe_machine

        if self.source == "none":
            return "none: built-in constants (run `vista-sql calibrate`)"
        origin = f"{self.path}" if self.path else "shipped with vista_sql"
        where = "this machine" if self.this_machine else describe_machine(self.machine)
        text = f"{where}, {self.measured_at or '?'} ({origin})"
        if not self.this_machine:
            text += "; measured on another machine: times may be off, run `vista-sql calibrate`"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "path": self.path,
            "machine": self.machine,
            "measured_at": self.measured_at,
            "this_machine": self.this_machine,
        }


def calibration_status() -> CalibrationStatus:
    from vista_sql.cost_model.machine import same_machine, this_machine

    calibration = _calibration()
    if calibration is None:
        return CalibrationStatus("none", None, None, None, False)
    machine = calibration.get("machine")
    return CalibrationStatus(
        "user" if calibration.get("path") else "shipped",
        calibration.get("path"),
        machine,
        calibration.get("measured_at"),
        same_machine(machine, this_machine()),
    )


@cache
def constants() -> CostConstants:
    """The defaults above with the calibration's measured values applied."""
    calibration = _calibration()
    if calibration is None:
        return CostConstants()
    values = {k: float(v) for k, v in calibration["values"].items()}
    return replace(CostConstants(), **values)
