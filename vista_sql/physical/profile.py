"""The machine constants the cost model reads, measured by a short profiling run.

``vista-sql calibrate`` (``vista_sql.calibrate()``) runs ``measure_constants`` and writes the
user's calibration file, which ``cost_model.constants`` then applies over the shipped one. Each
measurement runs in a fresh interpreter, so that one's memory does not leak into the next: the
resident memory of vista_sql's driver process and of a Python worker with TensorFlow loaded;
TensorFlow's convolution throughput per core (Keras ResNet50 with random weights, its FLOPs
counted from the layer shapes) at 1 and 2 threads; the memory TensorFlow holds per image of a
batch relative to the catalog's activation bytes; Pillow's decode and resize cost; model builds
of the roster's partial models. Times are the best of several repetitions, the least disturbed by
other load on a shared machine. Run it on an idle machine: the figures are per core.

A calibration records the machine it came from (``cost_model.machine.this_machine``), so that
EXPLAIN can say when its constants were measured on another one. This module lives in physical/
because it starts TensorFlow and Spark processes; the cost model only reads what it wrote.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vista_sql.cost_model.machine import this_machine


def measure() -> dict[str, Any]:
    """``measure_constants`` timed: the document ``vista-sql calibrate`` writes."""
    import time

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
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": str(threads),
        "CUDA_VISIBLE_DEVICES": "",
    }
    done = subprocess.run(
        [sys.executable, "-c", _STATUS + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


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
print(json.dumps({"imported": imported, "after_first_inference": _status(),
    "import_seconds": import_seconds, "call_seconds": call_seconds}))
"""

CONV = """
import json, resource, time, numpy, keras
batch, reps = {batch}, {reps}
start = time.perf_counter()
model = keras.applications.ResNet50(weights=None)
build_seconds = time.perf_counter() - start
flops = 0
largest_activation = 0
for layer in model.layers:
    shape = layer.output.shape
    size = int(numpy.prod([d for d in shape[1:]]))
    largest_activation = max(largest_activation, size * 4)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        cin = layer.input.shape[-1]
        flops += 2 * size * kh * kw * cin
    elif isinstance(layer, keras.layers.Dense):
        flops += 2 * layer.input.shape[-1] * layer.units
params = sum(int(numpy.prod(w.shape)) * 4 for w in model.weights)
x = numpy.random.default_rng(0).random((batch, 224, 224, 3), dtype="float32")
before = _status()
model.predict_on_batch(x)
cpu = resource.getrusage(resource.RUSAGE_SELF)
times = []
for _ in range(reps):
    start = time.perf_counter()
    model.predict_on_batch(x)
    times.append(time.perf_counter() - start)
after = resource.getrusage(resource.RUSAGE_SELF)
cores_busy = (after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime) / sum(times)
seconds = min(times)  # the least disturbed by other load on a shared machine
print(json.dumps({{"flops_per_image": flops, "seconds_per_batch": seconds, "batch": batch,
    "largest_activation_bytes": largest_activation, "param_bytes": params,
    "build_seconds": build_seconds, "cores_busy": cores_busy,
    "before_inference": before, "after": _status()}}))
"""

RUNNER = """
import json, time, numpy
from vista_sql.catalog import current
from vista_sql.logical.plan import LayerOut, WeightsSpec
from vista_sql.udfs.inference import InferenceSpec, runner_for

info = current().cnn({cnn!r})
outputs = tuple(LayerOut(name, "features") for name in info.layer_names[-2:])
spec = InferenceSpec(info.name, WeightsSpec("random", seed=7), None, outputs)
start = time.perf_counter()
runner = runner_for(spec, None)
build = time.perf_counter() - start
x = numpy.zeros((8, *spec.input_shape), "float32")
start = time.perf_counter()
runner.run(x)
first = time.perf_counter() - start
steady = []
for _ in range(3):
    start = time.perf_counter()
    runner.run(x)
    steady.append(time.perf_counter() - start)
print(json.dumps({{"cnn": info.name, "param_bytes": info.param_bytes, "build_seconds": build,
    "first_call_seconds": first, "steady_seconds": min(steady), "batch": 8,
    "flops": sum(layer.flops or 0 for layer in info.layers)}}))
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


def measure_constants() -> dict[str, Any]:
    """Every machine constant the cost model reads from ``calibration.json``, with its evidence."""
    driver = _run(DRIVER)
    daemon = _run(DAEMON)
    worker = _run(WORKER)
    conv1 = _run(CONV.format(batch=8, reps=5), threads=1)
    busy_before = os.getloadavg()[0]
    conv2 = _run(CONV.format(batch=8, reps=5), threads=2)
    busy_after = os.getloadavg()[0]
    small = _run(CONV.format(batch=1, reps=1), threads=1)
    large = _run(CONV.format(batch=16, reps=1), threads=1)
    decode = _run(DECODE)
    # The real worker path (udfs.inference.runner_for): seeded random weights, partial model,
    # tf.function; its first call traces the graph.
    runners = [_run(RUNNER.format(cnn=cnn)) for cnn in ("alexnet", "resnet50", "vgg16")]
    flops_per_second_1 = conv1["flops_per_image"] * conv1["batch"] / conv1["seconds_per_batch"]
    flops_per_second_2 = conv2["flops_per_image"] * conv2["batch"] / conv2["seconds_per_batch"]
    per_image_bytes = (large["after"]["VmHWM"] - small["after"]["VmHWM"]) / 15
    # Relative to the catalog's activation_bytes (peak live tensors per image), the statistic
    # the cost model multiplies by this factor.
    from vista_sql.catalog import roster

    resnet = roster().cnn("resnet50")
    live = max((layer.activation_bytes or 0) for layer in resnet.layers) if resnet else 0
    live = live or small["largest_activation_bytes"]

    # Each CNN's FLOP rate through vista_sql's own model builder, relative to ResNet50's: the
    # runtime model scales the ResNet50 rate above by it.
    rates = {r["cnn"]: r["flops"] * r["batch"] / r["steady_seconds"] for r in runners}
    efficiency = {
        f"tf_efficiency_{cnn}": rates[cnn] / rates["resnet50"] for cnn in ("alexnet", "vgg16")
    }
    values: dict[str, float] = {
        **efficiency,
        "driver_python_bytes": driver["VmHWM"],
        "python_daemon_bytes": daemon["VmHWM"],
        "python_worker_base_bytes": worker["after_first_inference"]["VmHWM"],
        "python_worker_start_seconds": worker["import_seconds"],
        "tf_call_overhead_seconds": worker["call_seconds"],
        **_build_fit(runners),
        "tf_first_call_seconds": sum(r["first_call_seconds"] - r["steady_seconds"] for r in runners)
        / len(runners),
        "inference_flops_per_core": flops_per_second_1,
        "tf_thread_scaling_exponent": max(
            0.0, min(1.0, math.log(flops_per_second_2 / flops_per_second_1, 2))
        ),
        "tf_workspace_factor": max(1.0, per_image_bytes / live),
        "decode_seconds_per_jpeg_byte": decode["decode_seconds"] / decode["jpeg_bytes"],
        "resize_seconds_per_output_pixel": decode["resize_preprocess_seconds"]
        / decode["output_pixels"],
    }
    unreliable = []
    # Two threads can only show their speedup when a second core is free: with other work
    # running (load above one core besides ours), the figure measures the neighbours.
    if min(busy_before, busy_after) > 1.5 or conv2["cores_busy"] < 1.2:
        unreliable.append("tf_thread_scaling_exponent")
    return {
        "machine": this_machine(),
        "load_average": os.getloadavg(),
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d"),
        "values": {k: v for k, v in values.items() if k not in unreliable},
        "unreliable": {k: values[k] for k in unreliable},
        "evidence": {
            "driver": driver,
            "daemon": daemon,
            "worker": worker,
            "resnet50_1_thread": conv1,
            "resnet50_2_threads": conv2,
            "resnet50_batch_1": small,
            "resnet50_batch_16": large,
            "decode": decode,
            "runners": runners,
        },
    }


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
