"""Regenerate the layer statistics in ``vista_sql/catalog/cnns.json`` by building and measuring.

    python -m vista_sql.udfs.layer_stats [--cnn vgg16 ...] [--batch-size 32] [--no-rss]

Per CNN and transfer layer, from the Keras model: the output shape and the resume tensor's shape;
``flops``, 2 x the multiply-accumulates of the convolutions and dense layers between the previous
transfer layer's resume tensor (or the input) and this layer (bias adds, activations, pooling and
normalisation are not counted: under 1% of the total for the roster); ``param_bytes`` of that
segment's variables (float32, batch-norm statistics included); ``activation_bytes``, the peak of
the bytes of live tensors per image while computing the segment in Keras's layer order (a tensor
is live from the layer that makes it to the last layer that reads it; the segment's input counts).
The whole model's ``param_bytes`` too.

``peak_rss_bytes`` is measured: a fresh subprocess builds the partial model from the input to
the layer (seeded random weights: only that part's variables exist), infers two batches of
``batch_size`` random inputs, and reports its peak resident set size (``ru_maxrss``).
``measured`` records when, on what machine, with which TensorFlow and Keras, at what batch size,
and the peak RSS of a process that only imported TensorFlow (``baseline_rss_bytes``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from vista_sql.units import MiB

CATALOG = Path(str(resources.files("vista_sql.catalog").joinpath("cnns.json")))
BYTES_PER_FLOAT = 4
MODULE = "vista_sql.udfs.layer_stats"


def layer_statistics(cnn: str) -> dict[str, Any]:
    """{"param_bytes": whole model, "layers": {name: {shape, resume_shape, flops, ...}}}."""
    from vista_sql.catalog import roster
    from vista_sql.udfs.models import build_deferred

    info = roster().cnn(cnn)
    if info is None:
        raise KeyError(cnn)
    model = build_deferred(cnn)
    producer = {id(tensor): layer for layer in model.layers for tensor in layer_outputs(layer)}
    start = model.input
    layers: dict[str, Any] = {}
    for layer_info in info.layers:
        end = model.get_layer(layer_info.keras).output
        segment = segment_layers(model, start, end, producer)
        resume_shape = None
        if layer_info.resume_keras is not None:
            resume = model.get_layer(layer_info.resume_keras).output
            resume_shape = [int(d) for d in resume.shape[1:]]
            start = resume
        layers[layer_info.name] = {
            "shape": [int(d) for d in end.shape[1:]],
            "resume_shape": resume_shape,
            "flops": sum(layer_flops(layer) for layer in segment),
            "param_bytes": sum(variable_bytes(layer) for layer in segment),
            "activation_bytes": peak_activation_bytes(segment, end),
        }
    whole = sum(variable_bytes(layer) for layer in model.layers)
    return {"param_bytes": whole, "layers": layers}


def layer_outputs(layer: Any) -> list[Any]:
    return layer.output if isinstance(layer.output, list) else [layer.output]


def _inputs(layer: Any) -> list[Any]:
    return layer.input if isinstance(layer.input, list) else [layer.input]


def segment_layers(model: Any, start: Any, end: Any, producer: dict[int, Any]) -> list[Any]:
    """The layers computing ``end`` from ``start``, in ``model.layers`` (topological) order."""
    import keras

    needed: set[int] = set()
    stack = [end]
    while stack:
        tensor = stack.pop()
        if tensor is start:
            continue
        layer = producer[id(tensor)]
        if isinstance(layer, keras.layers.InputLayer) or id(layer) in needed:
            continue
        needed.add(id(layer))
        stack.extend(_inputs(layer))
    return [layer for layer in model.layers if id(layer) in needed]


def layer_flops(layer: Any) -> int:
    """2 x multiply-accumulates per image of a convolution or dense layer; 0 for others.

    A convolution's kernel holds, per output position, every weight one output channel group
    multiplies (grouped and depthwise alike), so MACs = output positions x kernel size.
    """
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        return 0
    output_shape = layer.output.shape
    positions = math.prod(int(d) for d in output_shape[1:-1])
    return 2 * positions * math.prod(int(d) for d in kernel.shape)


def variable_bytes(layer: Any) -> int:
    return sum(math.prod(int(d) for d in v.shape) * BYTES_PER_FLOAT for v in layer.weights)


def tensor_bytes(tensor: Any) -> int:
    return math.prod(int(d) for d in tensor.shape[1:]) * BYTES_PER_FLOAT


def peak_activation_bytes(segment: Sequence[Any], end: Any) -> int:
    """Peak bytes per image of tensors alive while the segment runs layer by layer."""
    consumers: dict[int, int] = {}
    for layer in segment:
        for tensor in _inputs(layer):
            consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    produced = {id(tensor) for layer in segment for tensor in layer_outputs(layer)}
    live = {
        id(tensor): tensor_bytes(tensor)
        for layer in segment
        for tensor in _inputs(layer)
        if id(tensor) not in produced
    }
    peak = sum(live.values())
    for layer in segment:
        for tensor in layer_outputs(layer):
            live[id(tensor)] = tensor_bytes(tensor)
        peak = max(peak, sum(live.values()))
        for tensor in _inputs(layer):
            consumers[id(tensor)] -= 1
            if consumers[id(tensor)] == 0 and tensor is not end:
                live.pop(id(tensor), None)
    return peak


def measure_rss(cnn: str, layer: str | None, batch_size: int) -> int:
    """Peak RSS in bytes of a fresh process inferring ``cnn`` to ``layer`` (None: nothing)."""
    command = [sys.executable, "-m", MODULE, "--child", cnn, layer or "", str(batch_size)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": _python_path()}
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return int(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_bytes"])


def _python_path() -> str:
    """PYTHONPATH for a subprocess that must import this vista_sql, installed or not."""
    root = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)


def _child(cnn: str, layer: str, batch_size: int) -> None:
    """In the measuring subprocess: infer two batches, print the peak RSS as JSON."""
    import numpy as np
    import tensorflow as tf

    if layer:
        from vista_sql.logical.plan import LayerOut, WeightsSpec
        from vista_sql.udfs.inference import InferenceSpec, runner_for

        spec = InferenceSpec(
            cnn, WeightsSpec("random", seed=0), None, (LayerOut(layer, "features"),)
        )
        runner = runner_for(spec, None)
        batch = np.random.default_rng(0).uniform(-120, 130, (batch_size, *spec.input_shape))
        for _ in range(2):
            runner.run(batch.astype(np.float32))
    else:
        tf.constant(0.0).numpy()
    print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def machine() -> dict[str, Any]:
    """CPU model, logical cores and memory of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": memory, "os": platform.platform()}


def regenerate(
    cnns: Sequence[str], *, batch_size: int, rss: bool, catalog: Path = CATALOG
) -> dict[str, Any]:
    """Measure ``cnns`` and write the statistics into ``catalog``; returns the new document."""
    import keras
    import tensorflow as tf

    document = json.loads(catalog.read_text())
    for cnn in cnns:
        stats = layer_statistics(cnn)
        entry = document["cnns"][cnn]
        entry["param_bytes"] = stats["param_bytes"]
        for raw in entry["layers"]:
            found = stats["layers"][raw["name"]]
            raw["shape"] = found["shape"]
            if raw.get("resume"):
                raw["resume"]["shape"] = found["resume_shape"]
            raw["flops"] = found["flops"]
            raw["param_bytes"] = found["param_bytes"]
            raw["activation_bytes"] = found["activation_bytes"]
            if rss:
                raw["peak_rss_bytes"] = measure_rss(cnn, raw["name"], batch_size)
                print(f"{cnn} {raw['name']}: peak RSS {raw['peak_rss_bytes'] / MiB:.0f} MiB")
    measured = dict(document.get("measured") or {})
    measured.update(
        {
            "when": datetime.date.today().isoformat(),
            "machine": machine(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "flops": "2 x multiply-accumulates of conv and dense layers, per image",
            "activation_bytes": "peak live float32 tensor bytes per image, Keras layer order",
        }
    )
    if rss:
        measured["batch_size"] = batch_size
        measured["baseline_rss_bytes"] = measure_rss(cnns[0], None, batch_size)
        measured["peak_rss_bytes"] = (
            "ru_maxrss of a fresh process inferring batch_size random inputs, twice, from the input"
            " to the layer (features), seeded random weights, TensorFlow's default threads"
        )
    document["measured"] = measured
    catalog.write_text(json.dumps(document, indent=1) + "\n")
    return document


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cnn", action="append", help="CNNs to measure (default: all built ones)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-rss", action="store_true", help="skip the peak memory measurements")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        cnn, layer, batch = args.child
        _child(cnn, layer, int(batch))
        return
    from vista_sql.catalog import roster
    from vista_sql.udfs.cnns import available

    cnns = args.cnn or [name for name in roster().names if name in available()]
    regenerate(cnns, batch_size=args.batch_size, rss=not args.no_rss)


if __name__ == "__main__":
    main()
