"""The machine constants the cost model reads, measured by a short profiling run.

``vista-sql calibrate`` (``vista_sql.calibrate()``) runs ``measure_constants`` and writes the
user's calibration file, which ``cost_model.constants`` then applies over the shipped one. Seven
fresh interpreters, three of them with TensorFlow (each costs its import, so measurements share
one where they can): the resident memory of vista_sql's driver process and of Spark's Python
daemon; a Python worker's start and its memory with TensorFlow loaded, then the roster's CNNs
(ResNet50, AlexNet, VGG16) through the workers' own model builder: each one's build, first
call and FLOP rate at one thread (their FLOPs from the catalog's layer shapes), with ResNet50's
memory per image of a batch relative to the catalog's activation bytes; each CNN at 2 threads
(a thread count is fixed when TensorFlow starts), and in two 1-thread interpreters timed in step
(a node's concurrent tasks: CNNs bound by memory bandwidth scale worse than ResNet50);
Pillow's decode and resize cost; and a local Spark session as vista_sql
starts its own (``SPARK``): a job's and a task's fixed cost, the Arrow round trip to a Python
worker and a shuffle per byte, and an MLlib iteration's jobs (``spark_constants``). Times are
the best (Spark's: the median) of several repetitions, the least disturbed by other load on a
shared machine. Run it on an idle machine: the figures are per core.

A calibration records the machine it came from (``cost_model.machine.this_machine``), so that
EXPLAIN can say when its constants were measured on another one. This module lives in physical/
because it starts TensorFlow and Spark processes; the cost model only reads what it wrote.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vista_sql.cost_model.machine import this_machine

if TYPE_CHECKING:
    from vista_sql.catalog import Catalog
    from vista_sql.cost_model.constants import CostConstants
    from vista_sql.logical.query import TransferQuery
    from vista_sql.udfs.inference import InferenceSpec


def measure() -> dict[str, Any]:
    """``measure_constants`` timed: the document ``vista-sql calibrate`` writes."""
    started = time.perf_counter()
    document = measure_constants()
    document["seconds"] = round(time.perf_counter() - started, 1)
    return document


_STATUS = textwrap.dedent(
    """
    def _status():
        fields = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0]) * 1024
        return fields
    """
)


def _run(code: str, threads: int = 1) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    return _run_together(code, 1, threads)[0]


def _run_together(code: str, copies: int, threads: int = 1) -> list[dict[str, Any]]:
    """Run ``copies`` fresh interpreters of ``code`` at once (each prints one JSON object as its
    last line); their results in order. A copy that prints a line ``ready ...`` waits until every
    copy has printed it, then all go on together (a barrier through their stdin)."""
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": str(threads),
        "CUDA_VISIBLE_DEVICES": "",
    }
    with contextlib.ExitStack() as stack:
        errors = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in range(copies)]
        running = [
            stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", _STATUS + textwrap.dedent(code)],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=error,
                    text=True,
                )
            )
            for error in errors
        ]
        lasts: list[str | None] = [None] * copies

        def stop() -> None:  # a copy that failed leaves the others waiting at their barrier
            for process in running:
                if process.poll() is None:
                    process.kill()

        stack.callback(stop)
        while True:
            waiting = []
            for number, process in enumerate(running):
                assert process.stdout is not None
                for line in process.stdout:  # until its barrier, or its end
                    if line.startswith("ready"):
                        waiting.append(process)
                        break
                    lasts[number] = line if line.strip() else lasts[number]
            if not waiting:
                break
            if len(waiting) != copies:
                raise RuntimeError("profiling processes disagree on their barriers")
            for process in waiting:
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
        results = []
        for process, error, last in zip(running, errors, lasts, strict=True):
            if process.wait() != 0 or last is None:
                error.seek(0)
                raise subprocess.CalledProcessError(
                    process.returncode, process.args, last, error.read()[-4000:]
                )
            results.append(json.loads(last))
        return results


DRIVER = """
import json, vista_sql, vista_sql.cost_model, pyspark.sql, pandas, pyarrow
print(json.dumps(_status()))
"""

DAEMON = """
import json, pyspark.daemon
print(json.dumps(_status()))
"""

WORKER = """
import json, time
start = time.perf_counter()
import numpy, pandas, pyarrow, pyspark.worker
import tensorflow as tf, keras
import_seconds = time.perf_counter() - start
imported = _status()
inputs = keras.Input((8,))
model = keras.Model(inputs, keras.layers.Dense(4)(inputs))
x = numpy.zeros((1, 8), "float32")
model.predict_on_batch(x)
start = time.perf_counter()
for _ in range(50):
    model.predict_on_batch(x)
call_seconds = (time.perf_counter() - start) / 50
worker = {"imported": imported, "after_first_inference": _status(),
    "import_seconds": import_seconds, "call_seconds": call_seconds}
"""

PROFILED = ("resnet50", "alexnet", "vgg16")
"""The CNNs calibrate times, ResNet50 first: its memory probe needs the fresh process's peak."""

PROFILED_BATCH = {"vgg16": 4}
"""Batch per profiled CNN, else 8 (``runtime.CALIBRATED_BATCH``). VGG16 takes about 4 s a batch
of 8 on one core; its per-image time at 4 is within a few % of 8's (its 30 GFLOP an image
dwarf the call and its weights' traffic), and halves its share of the profile."""

TIMING = (
    f"PROFILED = {PROFILED!r}\nPROFILED_BATCH = {PROFILED_BATCH!r}\n"
    + """
import json, resource, sys, time, numpy
from vista_sql.catalog import current
from vista_sql.logical.plan import LayerOut, WeightsSpec
from vista_sql.udfs.inference import InferenceSpec, runner_for

def _timed(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start

def _cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

def time_cnn(name, batch, reps, memory=False, together=False):
    # The real worker path (udfs.inference.runner_for: seeded random weights, the partial model
    # to the top two layers, a tf.function whose first call traces): its build, its first call's
    # extra and its steady time per batch. ``memory``: the peak after one image and after 32
    # (the memory held per image of a batch) and a batch of 32's time. ``together``: timed in
    # step with another copy of this process (a node's concurrent tasks).
    info = current().cnn(name)
    outputs = tuple(LayerOut(layer, "features") for layer in info.layer_names[-2:])
    spec = InferenceSpec(info.name, WeightsSpec("random", seed=7), None, outputs)
    start = time.perf_counter()
    runner = runner_for(spec, None)
    result = {"cnn": info.name, "param_bytes": info.param_bytes, "batch": batch,
        "flops": sum(layer.flops or 0 for layer in info.layers),
        "build_seconds": time.perf_counter() - start}
    first = 0.0
    if memory:  # the first call, which traces, at one image
        first = _timed(lambda: runner.run(numpy.zeros((1, *spec.input_shape), "float32")))
        result["batch_1"] = _status()
    x = numpy.zeros((batch, *spec.input_shape), "float32")
    first += _timed(lambda: runner.run(x))
    if together:  # both copies built and warm: time the batches they run at once
        print("ready", name, flush=True)
        sys.stdin.readline()
    cpu = _cpu()
    times = [_timed(lambda: runner.run(x)) for _ in range(reps)]
    result["cores_busy"] = (_cpu() - cpu) / sum(times)
    # Alone, the best batch (the least disturbed by other load); together, the mean (both
    # copies run the same batches from the same moment, so their runs overlap throughout).
    result["steady_seconds"] = sum(times) / reps if together else min(times)
    result["first_call_seconds"] = first
    if memory:
        x = numpy.zeros((32, *spec.input_shape), "float32")
        runner.run(x)  # sets up kernels for the new shape
        result["batch_32"] = _status()
        result["batch_32_seconds"] = _timed(lambda: runner.run(x))
    return result

def time_roster(reps, memory=False, together=False):
    return [time_cnn(name, PROFILED_BATCH.get(name, 8), reps, memory and name == "resnet50",
        together) for name in PROFILED]
"""
)

RUNNERS = """
print(json.dumps({"worker": worker, "runners": time_roster(3, memory=True)}))
"""

THREADS = """
print(json.dumps(time_roster(2)))
"""

TOGETHER = """
print(json.dumps(time_roster(2, together=True)))
"""

DECODE = """
import io, json, time, numpy
from PIL import Image
rng = numpy.random.default_rng(0)
y, x = numpy.mgrid[0:375, 0:500]
base = numpy.stack([numpy.sin(x / 37.0), numpy.cos(y / 23.0), numpy.sin((x + y) / 51.0)], -1)
pixels = ((base + 1) * 100 + rng.normal(0, 12, base.shape)).clip(0, 255).astype("uint8")
buffer = io.BytesIO()
Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
data = buffer.getvalue()
def best(step, rounds=5, reps=40):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            step()
        times.append((time.perf_counter() - start) / reps)
    return min(times)
def decode_one():
    global image
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.load()
def resize_one():
    resized = image.resize((224, 224), Image.BILINEAR)
    numpy.asarray(resized, dtype="float32")[..., ::-1] - 114.0
decode = best(decode_one)
resize = best(resize_one)
print(json.dumps({"jpeg_bytes": len(data), "source_pixels": 375 * 500, "decode_seconds": decode,
    "resize_preprocess_seconds": resize, "output_pixels": 224 * 224}))
"""


SPARK = """
import json, statistics, time
import numpy
from pyspark import StorageLevel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.linalg import Vectors
from pyspark.sql import functions as F
from vista_sql.physical.session import owned_session, stop_owned_session

spark = owned_session({{"spark.sql.shuffle.partitions": "{partitions}"}})
slots = spark.sparkContext.defaultParallelism
def timed(action, reps=3):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
def cached(frame, level=StorageLevel.MEMORY_AND_DISK_DESER):
    frame = frame.persist(level)
    frame.count()
    return frame
# A count of a filter of a cached table in one wave of tasks, then in 16 waves: a job's fixed
# cost, and a task's. Each query is new (another literal), as the executor's are: its analysis
# and planning on the driver count too.
one_wave = cached(spark.range(0, 1000, 1, slots))
many = cached(spark.range(0, 1000, 1, slots * 16))
queries = iter(range(1_000_000))
def count(frame):
    return lambda: frame.filter(F.col("id") != -next(queries) - 1).count()
timed(count(one_wave))
job = timed(count(one_wave), 9)
task = max(0.0, (timed(count(many), 5) - job) / 15)
# Each operation on a cached table of rows of {row_values} doubles (an assembled branch table's
# arrays), large and tiny (one row a task): the difference is the per-byte cost. (The cache's own
# rates are too small to tell from a job's noise at a size a short profile can afford: a 32 MiB
# read is about 10 ms against 0.3 s a job; they keep their assumed values.)
def arrays(rows):
    return cached(spark.range(0, rows, 1, slots).select(
        F.array_repeat(F.rand(seed=1), {row_values}).alias("v")))
def identity(batches):
    yield from batches
def total(frame):
    frame.agg(F.sum(F.element_at("v", 1))).collect()
OPERATIONS = {{
    "scan": lambda frame: lambda: total(frame),
    "arrow": lambda frame: lambda: total(frame.mapInArrow(identity, frame.schema)),
    "shuffle": lambda frame: lambda: total(frame.repartition(slots * 2)),
}}
large, tiny = arrays({rows}), arrays(slots)
OPERATIONS["arrow"](tiny)()  # starts the Python workers
seconds = {{}}
for name, operation in OPERATIONS.items():
    seconds[name] = {{"large": timed(operation(large)), "tiny": timed(operation(tiny))}}
# A Python task's own cost (the Arrow stream, the function sent and loaded): the identity over a
# tiny table in 16 waves of tasks against one wave, less what 15 waves of JVM tasks cost.
python_16 = timed(OPERATIONS["arrow"](cached(tiny.repartition(slots * 16))))
python_task = max(0.0, (python_16 - seconds["arrow"]["tiny"]) / 15 - task)
# MLlib: logistic regression as the executor fits it, on a small branch table (key, label,
# vectors of {mllib_values} values; MEMORY_AND_DISK, two waves of tasks, the hash split's filter):
# the session's first fit (the JVM loads and compiles MLlib's code), then fits of two and of
# twelve iterations (no convergence test stops them early).
from pyspark.ml.functions import array_to_vector
features = F.transform(F.array_repeat(F.lit(0.0), {mllib_values}), lambda x: x + F.rand(seed=2))
branch = (spark.range(0, {mllib_rows}, 1, slots * 2)
    .select(F.col("id").alias("key"), (F.col("id") % 2).cast("double").alias("label"),
            array_to_vector(features).alias("features"))
    .persist(StorageLevel.MEMORY_AND_DISK))
branch.count()
train = branch.filter(F.pmod(F.xxhash64("key"), F.lit(1000)) >= 200)
def fit(iterations):
    LogisticRegression(maxIter=iterations, tol=0.0, regParam=0.1).fit(train)
start = time.perf_counter()
fit(2)
first_fit = time.perf_counter() - start
fit_2, fit_12 = timed(lambda: fit(2)), timed(lambda: fit(12))
stop_owned_session()
print(json.dumps({{"slots": slots, "job_seconds": job, "task_seconds": task,
    "python_task_seconds": python_task, "mllib_partitions": slots * 2,
    "data_bytes": {rows} * {row_values} * 8, "seconds": seconds, "first_fit_seconds": first_fit,
    "fit_2_seconds": fit_2,
    "fit_12_seconds": fit_12}}))
"""
MLLIB_ROWS = 800
MLLIB_VALUES = 1024
SPARK_ROWS = 8192
SPARK_ROW_VALUES = 512
"""The Spark profile's large table: 8,192 rows of 512 doubles, 32 MiB."""


def spark_constants(spark: dict[str, Any]) -> dict[str, float]:
    """The runtime model's Spark constants from the Spark profile (``SPARK``'s output): per-byte
    rates in core-seconds (every slot works on its share at once), fixed costs in seconds: the
    per-job and per-task overheads (and a Python task's more), the Arrow round trip to a Python
    worker, a shuffle, and MLlib's: an iteration's jobs and a fit's fixed part."""
    slots, size, task = spark["slots"], spark["data_bytes"], spark["task_seconds"]
    seconds = spark["seconds"]
    iteration = (spark["fit_12_seconds"] - spark["fit_2_seconds"]) / 10
    waves = math.ceil(spark.get("mllib_partitions", slots) / slots)

    def per_byte(name: str, less: str | None = None, times: float = 1.0) -> float:
        """(large - tiny) of ``name``, less that of ``less``, per byte, per core."""
        extra = seconds[name]["large"] - seconds[name]["tiny"]
        if less is not None:
            extra -= seconds[less]["large"] - seconds[less]["tiny"]
        return max(0.0, extra) * slots / (size * times)

    return {
        "job_overhead_seconds": spark["job_seconds"],
        "task_overhead_seconds": task,
        "python_task_overhead_seconds": spark["python_task_seconds"],
        # the identity through a Python worker: every byte goes there and back
        "arrow_seconds_per_byte": per_byte("arrow", "scan", times=2),
        "shuffle_seconds_per_byte": per_byte("shuffle", "scan"),
        # one iteration's jobs, less the waves of tasks ``runtime`` charges besides
        "mllib_iteration_seconds": max(0.0, iteration - waves * task),
        # the rest of a fit of two iterations: its reads of the table (MLlib's own jobs) and setup
        "mllib_fit_seconds": max(0.0, spark["fit_2_seconds"] - 2 * iteration),
        # the session's first fit, beyond a later one's: MLlib's code loaded and compiled
        "mllib_warmup_seconds": max(0.0, spark["first_fit_seconds"] - spark["fit_2_seconds"]),
    }


def measure_constants() -> dict[str, Any]:
    """Every machine constant the cost model reads from ``calibration.json``, with its evidence."""
    # The load before this profile's own processes: the average over the last minute counts
    # them too once they run, which on 2 cores alone reads as "busy".
    load_before = os.getloadavg()[0]
    steps: dict[str, float] = {}
    """Seconds each profiling process took (the document's ``step_seconds``)."""

    def step(name: str, run: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = run(*args, **kwargs)
        steps[name] = round(time.perf_counter() - started, 1)
        return result

    driver = step("driver", _run, DRIVER)
    daemon = step("daemon", _run, DAEMON)
    # A worker's start, then the roster's CNNs through the real worker path (udfs.inference.
    # runner_for) in the same process, one thread; ResNet50's with the memory per image of a
    # batch. Then each CNN at 2 threads (a thread count is fixed when TensorFlow starts), and in
    # two single-thread processes at once, as a node's two concurrent inference tasks run.
    worker_and_runners = step("worker_and_runners", _run, WORKER + TIMING + RUNNERS)
    worker, runners = worker_and_runners["worker"], worker_and_runners["runners"]
    threads = step("runners_2_threads", _run, TIMING + THREADS, threads=2)
    pair = step("runners_2_processes", _run_together, TIMING + TOGETHER, 2)
    decode = step("decode", _run, DECODE)
    spark = step(
        "spark",
        _run,
        SPARK.format(
            partitions=4,
            rows=SPARK_ROWS,
            row_values=SPARK_ROW_VALUES,
            mllib_rows=MLLIB_ROWS,
            mllib_values=MLLIB_VALUES,
        ),
    )
    values: dict[str, float] = {
        **tensorflow_constants(runners, threads, pair),
        "driver_python_bytes": driver["VmHWM"],
        "python_daemon_bytes": daemon["VmHWM"],
        "python_worker_base_bytes": worker["after_first_inference"]["VmHWM"],
        "python_worker_start_seconds": worker["import_seconds"],
        "tf_call_overhead_seconds": worker["call_seconds"],
        **_build_fit(runners),
        "decode_seconds_per_jpeg_byte": decode["decode_seconds"] / decode["jpeg_bytes"],
        "resize_seconds_per_output_pixel": decode["resize_preprocess_seconds"]
        / decode["output_pixels"],
        **spark_constants(spark),
    }
    unreliable = []
    # Two threads can only show their speedup when a second core is free: other work running
    # before the profile began, or two threads that did not keep two cores busy, mean the
    # figures measure the neighbours.
    if load_before > 1.5 or min(r["cores_busy"] for r in threads) < 1.2:
        unreliable += [k for k in values if k.startswith(SCALING)]
    return {
        "machine": this_machine(),
        "load_average": os.getloadavg(),
        "load_before": load_before,
        "step_seconds": steps,
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d"),
        "values": {k: v for k, v in values.items() if k not in unreliable},
        "unreliable": {k: values[k] for k in unreliable},
        "evidence": {
            "driver": driver,
            "daemon": daemon,
            "worker": worker,
            "runners": runners,
            "runners_2_threads": threads,
            "runners_2_processes": pair,
            "decode": decode,
            "spark": spark,
        },
    }


SCALING = ("tf_thread_scaling_exponent", "tf_concurrency_scaling_exponent")
"""The constants of how inference scales with threads and with concurrent tasks (and their per-CNN
forms, ``..._exponent_<cnn>``)."""


def tensorflow_constants(
    runners: list[dict[str, Any]], threads: list[dict[str, Any]], pair: list[list[dict[str, Any]]]
) -> dict[str, float]:
    """The inference constants from the roster's timings: ResNet50's FLOP rate per core (the
    reference) and each CNN's rate over it; per CNN, how its throughput scales at 2 threads and
    with 2 single-thread processes at once (VGG16's early convolutions and large dense layers are
    bound by memory bandwidth, which two processes share: it scales worse than ResNet50); the
    memory TensorFlow holds per image of a batch and the slowdown of larger batches (ResNet50)."""

    def rate(result: dict[str, Any]) -> float:
        return float(result["flops"] * result["batch"] / result["steady_seconds"])

    def exponent(ratio: float) -> float:
        return max(0.0, min(1.0, math.log(ratio, 2)))

    alone = {r["cnn"]: rate(r) for r in runners}
    reference = alone["resnet50"]
    values: dict[str, float] = {"inference_flops_per_core": reference}
    for cnn, solo in alone.items():
        values[f"tf_efficiency_{cnn}"] = solo / reference
    for r in threads:
        values[f"tf_thread_scaling_exponent_{r['cnn']}"] = exponent(rate(r) / alone[r["cnn"]])
    for mine, other in zip(*pair, strict=True):
        together = rate(mine) + rate(other)
        values[f"tf_concurrency_scaling_exponent_{mine['cnn']}"] = exponent(
            together / alone[mine["cnn"]]
        )
    # the reference CNN's, for CNNs calibrate does not time
    for name in SCALING:
        values[name] = values[f"{name}_resnet50"]
    resnet = next(r for r in runners if r["cnn"] == "resnet50")
    per_image_bytes = (resnet["batch_32"]["VmHWM"] - resnet["batch_1"]["VmHWM"]) / 31
    # Per-image time at batch 32 over batch 8's.
    slower = (resnet["batch_32_seconds"] / 32) / (resnet["steady_seconds"] / resnet["batch"])
    # Relative to the catalog's activation_bytes (peak live tensors per image), the statistic
    # the cost model multiplies by this factor.
    from vista_sql.catalog import roster

    info = roster().cnn("resnet50")
    live = max((layer.activation_bytes or 0) for layer in info.layers) if info else 0
    values["tf_workspace_factor"] = max(1.0, per_image_bytes / max(live, 1))
    values["tf_batch_slowdown_exponent"] = max(0.0, math.log(slower, 32 / resnet["batch"]))
    values["tf_first_call_seconds"] = sum(
        r["first_call_seconds"] - r["steady_seconds"] for r in runners
    ) / len(runners)
    return values


def _build_fit(runners: list[dict[str, Any]]) -> dict[str, float]:
    """Least-squares line of build seconds over parameter bytes: a fixed cost and a slope."""
    xs = [float(r["param_bytes"]) for r in runners]
    ys = [float(r["build_seconds"]) for r in runners]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    slope = max(0.0, slope)
    return {
        "model_build_seconds": max(0.0, mean_y - slope * mean_x),
        "model_build_seconds_per_param_byte": slope,
    }


def calibrate(path: Path | None = None) -> tuple[dict[str, Any], Path]:
    """Measure this machine (about a minute on 2 cores, longer on slower CPUs) and write the
    user's calibration file (``constants.calibration_path()``, or ``path``); EXPLAIN and the
    optimizer use it from then on. Returns the document and where it went."""
    from vista_sql.cost_model.constants import write_calibration

    document = measure()
    return document, write_calibration(document, path)


SAMPLE_IMAGES = 8
"""Images of the statement's own source that ``WITH (calibrate = true)`` profiles."""
SAMPLE_BATCH = 8
"""The batch the statement's CNN is timed at (the sample repeated to fill it)."""

STATEMENT = """
import glob, json, os, time, numpy
from vista_sql.catalog import parse_catalog
from vista_sql.logical.plan import LayerOut, WeightsSpec
from vista_sql.udfs.decode import ImageError, decode_image, preprocess
from vista_sql.udfs.inference import InferenceSpec, runner_for
from vista_sql.udfs.registered import RegisteredCnn, install

work = {work!r}
with open(os.path.join(work, "spec.json"), encoding="utf-8") as handle:
    described = json.load(handle)  # written by profile_statement: data, never code
if described["registered"] is not None:
    entry = described["registered"]
    (registered_info,) = parse_catalog({{"cnns": {{described["cnn"]: entry["info"]}}}}).cnns
    install(RegisteredCnn(registered_info, entry["config"], entry["digest"], entry["model_file"]))
spec = InferenceSpec(described["cnn"], WeightsSpec("random", seed=described["seed"]), None,
    (LayerOut(described["top"], "features"),))
info = spec.info
size = tuple(info.input_size)
images = []
for name in sorted(glob.glob(os.path.join(work, "image-*"))):
    with open(name, "rb") as handle:
        images.append(handle.read())
decoded, decode_times, jpeg_bytes = [], [], 0
for data in images:
    try:
        decode_image(data, size)
    except ImageError:
        continue  # the run reports bad images; the profile times the good ones
    times = []
    for _ in range(3):
        start = time.perf_counter()
        pixels = decode_image(data, size)
        times.append(time.perf_counter() - start)
    decode_times.append(min(times))
    jpeg_bytes += len(data)
    decoded.append(pixels)
if decoded:
    batch = numpy.stack([decoded[i % len(decoded)] for i in range({batch})])
    x = preprocess(batch, info.preprocess)
else:
    x = numpy.zeros(({batch}, *spec.input_shape), "float32")
top = max(info.layer_names.index(o.layer) for o in spec.outputs)
flops = sum(layer.flops or 0 for layer in info.layers[: top + 1])
start = time.perf_counter()
runner = runner_for(spec, None)
build = time.perf_counter() - start
runner.run(x)
steady = []
for _ in range(3):
    start = time.perf_counter()
    runner.run(x)
    steady.append(time.perf_counter() - start)
print(json.dumps({{"images": len(decoded), "jpeg_bytes": jpeg_bytes,
    "decode_seconds": sum(decode_times), "output_pixels": size[0] * size[1] * len(decoded),
    "flops_per_image": flops, "batch": {batch}, "steady_seconds": min(steady),
    "build_seconds": build}}))
"""


def _spec_document(spec: InferenceSpec) -> dict[str, Any]:
    """What the profiling interpreter needs of ``spec`` (a seeded inference of one CNN to its top
    layer), as JSON: the CNN, its top layer, the seed, and a registered CNN's description."""
    from vista_sql.catalog import cnn_document

    registered = spec.registered
    assert spec.weights.kind == "random" and len(spec.outputs) == 1 and spec.start is None
    return {
        "cnn": spec.cnn,
        "top": spec.outputs[0].layer,
        "seed": spec.weights.seed,
        "registered": None
        if registered is None
        else {
            "info": cnn_document(registered.info),
            "config": registered.config,
            "digest": registered.digest,
            "model_file": registered.model_file,
        },
    }


@dataclass(frozen=True)
class StatementProfile:
    """What ``WITH (calibrate = true)`` measured on the statement's own images and CNN, and the
    constants it sets for planning that statement."""

    cnn: str
    images: int
    seconds: float
    values: dict[str, float]
    evidence: dict[str, Any]
    note: str = ""

    def apply(self, consts: CostConstants) -> CostConstants:
        return replace(consts, **self.values)

    def describe(self) -> str:
        parts = []
        if "decode_seconds_per_jpeg_byte" in self.values:
            ns = self.values["decode_seconds_per_jpeg_byte"] * 1e9
            parts.append(f"decode {ns:.1f} ns/byte")
        rate = self.values["inference_flops_per_core"] / 1e9
        parts.append(f"{self.cnn} {rate:.1f} GFLOP/s per core")
        sample = f"{self.images} images" if self.images else "no images"
        text = f"this statement's sample ({sample}, {self.seconds:.0f} s): {', '.join(parts)}"
        return text + (f"; {self.note}" if self.note else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "cnn": self.cnn,
            "images": self.images,
            "seconds": round(self.seconds, 1),
            "values": self.values,
            "evidence": self.evidence,
            "note": self.note,
        }


def sample_images(query: TransferQuery, limit: int = SAMPLE_IMAGES) -> tuple[list[bytes], str]:
    """The first ``limit`` images of a local image directory (as Spark's binaryFile source
    orders them), and a note; none (and why) for other sources, whose reading needs Spark."""
    from vista_sql.physical.hadoop import is_uri
    from vista_sql.physical.sources import list_image_directory

    ref = query.image_source
    path = ref.name
    if ref.kind == "path" and path.startswith("file://"):
        path = path.removeprefix("file://")
    if ref.kind != "path" or is_uri(path) or not os.path.isdir(path):
        return (
            [],
            "the image source is not a local directory: decoding keeps the calibration's rate",
        )
    images = []
    for name in list_image_directory(path).images[:limit]:
        with open(os.path.join(path, name), "rb") as handle:
            images.append(handle.read(MAX_SAMPLE_BYTES + 1))
    return [data for data in images if len(data) <= MAX_SAMPLE_BYTES], ""


MAX_SAMPLE_BYTES = 64 * 2**20
"""A sample image larger than this is left out (the run's decoder refuses bombs itself)."""


def profile_statement(query: TransferQuery, catalog: Catalog) -> StatementProfile:
    """``WITH (calibrate = true)``: decode a sample of the statement's images and time its CNN
    (seeded random weights, which run as fast as any) to its top layer, in a fresh interpreter
    with one TensorFlow thread; the decode rate and the CNN's FLOP rate per core replace the
    calibration's for this statement's plan."""
    import tempfile

    from vista_sql.cost_model.constants import constants
    from vista_sql.logical.plan import LayerOut, WeightsSpec
    from vista_sql.udfs.inference import InferenceSpec

    cnn = catalog.cnn(query.cnn)
    assert cnn is not None, "the builder checked the CNN"
    started = time.perf_counter()
    top = max(query.layers, key=cnn.index)
    spec = InferenceSpec(
        cnn.name, WeightsSpec("random", seed=7), None, (LayerOut(top, "features"),)
    )
    images, note = sample_images(query)
    with tempfile.TemporaryDirectory(prefix="vista-profile-") as work:
        with open(os.path.join(work, "spec.json"), "w", encoding="utf-8") as handle:
            json.dump(_spec_document(spec), handle)
        for number, data in enumerate(images):
            with open(os.path.join(work, f"image-{number:03d}"), "wb") as handle:
                handle.write(data)
        measured = _run(STATEMENT.format(work=work, batch=SAMPLE_BATCH))
    consts = constants()
    values = {
        "inference_flops_per_core": measured["flops_per_image"]
        * measured["batch"]
        / measured["steady_seconds"]
    }
    efficiency = f"tf_efficiency_{cnn.name}"
    if hasattr(consts, efficiency):
        values[efficiency] = 1.0  # measured for this CNN itself
    if measured["images"]:
        resize = measured["output_pixels"] * consts.resize_seconds_per_output_pixel
        decode = max(0.0, measured["decode_seconds"] - resize)
        values["decode_seconds_per_jpeg_byte"] = decode / measured["jpeg_bytes"]
    elif images:
        note = "no sample image decoded: decoding keeps the calibrated rate"
    return StatementProfile(
        cnn=cnn.name,
        images=measured["images"],
        seconds=time.perf_counter() - started,
        values=values,
        evidence=measured,
        note=note,
    )
