"""The GPU memory of this machine, for the cost model's resources when the statement gives none.

The cost model (pure Python, no TensorFlow) plans with ``Resources.gpu_memory_bytes``: each
concurrent Python worker holds a CUDA context, its partial model and its batch's activations on the
GPU, and the concurrency and batch size are chosen to fit (``cost_model.memory.gpu_bytes``).
``WITH (gpu_memory = '...')`` gives it; otherwise it is detected here with ``nvidia-smi``, which
reports every GPU's total memory without initialising CUDA in the driver process (importing
TensorFlow to ask would take seconds and reserve GPU memory in the driver itself). Inference runs
on the GPU wherever TensorFlow sees one (``udfs.inference.configure_devices`` turns on memory
growth there), so the statement need not say anything.

With several GPUs, the workers share them, so the smallest one's memory is what one worker can
count on; it is what is planned with (a conservative choice), and the count is recorded.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

from vista_sql.cost_model.resources import Resources, detect_resources
from vista_sql.logical.query import Options
from vista_sql.units import MiB

NVIDIA_SMI_TIMEOUT_S = 10.0


def detect_gpu_memory() -> tuple[int, int] | None:
    """(memory of the smallest GPU in bytes, number of GPUs), or None without an NVIDIA GPU."""
    command = shutil.which("nvidia-smi")
    if command is None:
        return None
    try:
        done = subprocess.run(
            [command, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(done.stdout)


def parse_nvidia_smi(output: str) -> tuple[int, int] | None:
    """``nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits`` output (MiB, one
    line per GPU) -> (smallest GPU's bytes, count); None when it lists no GPU."""
    sizes = []
    for line in output.splitlines():
        text = line.strip()
        if text.isdigit():
            sizes.append(int(text) * MiB)
    if not sizes:
        return None
    return min(sizes), len(sizes)


def machine_resources(options: Options) -> Resources:
    """The statement's resources: WITH options, else the machine, GPU memory included."""
    resources = detect_resources(options)
    if options.gpu_memory is not None:
        return resources
    found = detect_gpu_memory()
    if found is None:
        return resources
    memory, count = found
    where = "nvidia-smi" + (f" (smallest of {count} GPUs)" if count > 1 else "")
    return dataclasses.replace(
        resources,
        gpu_memory_bytes=memory,
        origin=(*resources.origin, ("gpu_memory", where)),
    )
