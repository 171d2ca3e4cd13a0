"""The VISTA authors' 2018 decision procedure, reimplemented as a baseline policy for benchmarks.

Their optimizer (ADALabUCSD/vista, ``spark/code/python/vista.py``, class ``Vista``) fixes the
logical plan (staged inference, the CNN run after the join: their ``after-join``) and picks the
system settings from a handful of constants (GB throughout, as theirs):

- **cores per executor**: the largest ``i`` in ``1 .. cpu_sys - 1`` (``range(1, cpu_max)`` leaves
  the last core out) for which the heap left after the OS reserve and ``i`` CNN runtimes still
  holds a core region of at least ``mem_spark_core_min`` besides the user region of ``i`` tasks;
- **heap**: ``mem_sys - mem_sys_rsv - cpu * runtime_footprint``;
- **memory fraction**: core / (core + user) of that heap;
- **partitions**: the largest intermediate table (``alpha_2`` x the larger of the bottom layer's
  flattened size and a 227x227x3 image, plus the structured features, float32, x rows) over
  ``max_partition_size``, rounded up to a multiple of the cluster's cores;
- **join**: broadcast when ``alpha_1`` x the structured table is under ``max_broadcast``;
- **persistence**: serialized when the two largest stored tables outgrow half the core region
  of all nodes, else deserialized.

Two quirks are kept as they are, since the baseline is their procedure and not a corrected one:
the largest table indexes the layer sizes with ``n_layers - 1`` from the bottom of the list (the
input image included), and the "two largest stored tables" sum an empty slice
(``sizes[n - 1 : n - 2]``), so both reduce to the image size for every CNN here.

``decide(...)`` returns the decision; ``.with_options()`` the statement's WITH options that force
it on vista_sql, and ``.spark_conf(local=...)`` the heap and memory fraction its session needs
(vista_sql has no WITH option for those: the benchmark starts the session itself, as Naive's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA_1 = 1.2
ALPHA_2 = 2.0
MAX_BROADCAST = 0.1
MAX_PARTITION_SIZE = 0.1
MEM_SYS_RSV = 3
MEM_SPARK_USER_RSV = 0.2
MEM_SPARK_CORE_MIN = 2.4
MEM_SPARK_USER_ML_MODEL = 0.5
FOOTPRINTS = {
    "alexnet": {"ser": 0.3, "runtime": 2},
    "vgg16": {"ser": 0.6, "runtime": 3},
    "resnet50": {"ser": 0.2, "runtime": 1},
}
"""Per CNN, GB: the serialized model and its TensorFlow runtime (their ``model_footprints``)."""
IMAGE_VALUES = 227 * 227 * 3
FLATTENED = {
    "alexnet": [IMAGE_VALUES, 13 * 13 * 384, 13 * 13 * 256, 4096, 4096, 1000],
    "vgg16": [IMAGE_VALUES, 14 * 14 * 512, 4096, 4096, 1000],
    "resnet50": [IMAGE_VALUES, 14 * 14 * 1024, 7 * 7 * 2048, 7 * 7 * 2048, 7 * 7 * 2048, 1000],
}
"""Their ``transfer_layer_flattened_sizes``: the input image, then the transfer layers."""
GiB = 1024**3


@dataclass(frozen=True)
class Decision2018:
    join: str
    """``broadcast`` or ``shuffle``."""
    cores: int
    partitions: int
    heap_gb: int
    memory_fraction: float
    persistence: str
    """``serialized`` (their ``ser``: MEMORY_AND_DISK) or ``deserialized``."""
    inference: str = "staged"
    placement: str = "after_join"

    def with_options(self) -> list[str]:
        """vista_sql WITH options that force this decision's plan and per-statement settings."""
        return [
            f"inference = {self.inference}",
            f"placement = {self.placement}",
            f"join = {self.join}",
            f"persist = {self.persistence}",
            f"executor_cores = {self.cores}",
            f"partitions = {self.partitions}",
        ]

    def spark_conf(self, local: bool = True) -> dict[str, str]:
        """The session settings it implies (their ``__config_spark``, less HDFS specifics)."""
        heap = f"{self.heap_gb}g"
        conf = {
            "spark.memory.fraction": f"{self.memory_fraction:.4f}",
            "spark.sql.shuffle.partitions": str(self.partitions),
            "spark.sql.autoBroadcastJoinThreshold": "-1",
        }
        if local:
            conf |= {"spark.master": f"local[{self.cores}]", "spark.driver.memory": heap}
        else:
            conf |= {"spark.executor.memory": heap, "spark.executor.cores": str(self.cores)}
        return conf


def decide(
    mem_sys: float,
    cpu_sys: int,
    n_nodes: int,
    model: str,
    n_layers: int,
    n_records: int,
    d_s: int,
    mem_sys_rsv: float = MEM_SYS_RSV,
    gpu: bool = False,
    tot_gpu_mem: float = 0,
) -> Decision2018:
    """Their ``Vista.__init__`` with ``enable_sys_config_optzs=True``: memory in GB per node."""
    mem = math.floor(mem_sys)
    footprint = FOOTPRINTS[model]
    user_per_core = max(footprint["ser"] + ALPHA_2 * MAX_PARTITION_SIZE, MEM_SPARK_USER_ML_MODEL)

    runtime_slots = math.floor(tot_gpu_mem / footprint["runtime"])
    cpu_max = int(min(runtime_slots, cpu_sys)) if gpu else cpu_sys
    cores = None
    for i in reversed(range(1, cpu_max)):
        heap = mem - mem_sys_rsv - i * footprint["runtime"]
        core = heap - 0.3 - (i * user_per_core + MEM_SPARK_USER_RSV)
        if core >= MEM_SPARK_CORE_MIN:
            cores = i
            break
    if cores is None:
        # Theirs returns None here and fails later in arithmetic; say why instead.
        raise ValueError(f"no core count fits {mem_sys} GB with {model}'s footprint")

    largest = (
        ALPHA_2 * (max(FLATTENED[model][n_layers - 1], IMAGE_VALUES) + d_s) * 4 * n_records / GiB
    )
    total_cores = cores * n_nodes
    partitions = int(math.ceil(largest / MAX_PARTITION_SIZE / total_cores) * total_cores)
    heap_gb = int(mem - mem_sys_rsv - cores * footprint["runtime"])
    user = cores * user_per_core + MEM_SPARK_USER_RSV
    core_region = heap_gb - 0.3 - user
    fraction = core_region / (core_region + user)
    stored_values = sum(FLATTENED[model][n_layers - 1 : n_layers - 2])  # empty: see the docstring
    two_largest = ALPHA_2 * max(stored_values + d_s, IMAGE_VALUES) * 4 * n_records / GiB
    storage = heap_gb * fraction * 0.5 * n_nodes
    join_size = ALPHA_1 * d_s * 4 * n_records / GiB
    return Decision2018(
        join="broadcast" if join_size < MAX_BROADCAST else "shuffle",
        cores=cores,
        partitions=partitions,
        heap_gb=heap_gb,
        memory_fraction=fraction,
        persistence="serialized" if two_largest > storage else "deserialized",
    )
