"""The four ways to run a feature-transfer workload that the benchmarks compare.

``naive_spark`` (Naive in Spark), ``naive_keras`` (Naive outside Spark), ``vista`` (vista_sql) and
``ideal`` (the floor): what each does and why is in ``bench_headline.py``'s docstring. Each
``method_*(task)`` runs in its own process (the caller's) and returns ``{"stages": {...},
"layers": {layer: metrics}, ...}``; wall time is the caller's. ``python benchmarks/methods.py
TASK.json`` runs the Naive Keras script's feature extraction (its own process, as a user's script).

vista_sql is reached through its public API (``vista_sql.execute``, ``parse_one``, a result's
``explain_json``) and, for the methods that run inference or training outside vista_sql, through
these documented seams, so that they do the same work as vista_sql's executor:

- ``vista_sql.udfs.inference.InferenceSpec`` / ``infer_local`` / ``clear_cache``: a CNN's
  features in this process, no Spark (``udfs``' public API);
- ``vista_sql.physical.sources.read_table`` + ``physical.prepare.prepare_table``: the structured
  table read and checked as a statement reads it (``KEY``, ``STRUCT`` its columns);
- ``vista_sql.physical.train.train`` (``FEATURES``, ``LABEL``): MLlib training and the metrics on
  the hash split, as every plan trains;
- ``vista_sql.physical.session.worker_environment`` / ``stop_owned_session``: a session's Python
  workers set up as vista_sql's, and vista_sql's own session stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vista_sql.catalog import current  # noqa: E402
from vista_sql.logical.query import TransferQuery  # noqa: E402
from vista_sql.units import GiB, MiB  # noqa: E402

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

METHODS = ("naive_spark", "naive_keras", "vista", "ideal")
TITLES = {
    "naive_spark": "Naive in Spark",
    "naive_keras": "Naive outside",
    "vista": "vista_sql",
    "ideal": "ideal",
}
SEED = 7
BATCH = 32
"""Naive's and the ideal's TensorFlow batch: Keras's ``predict`` default."""
MAX_ITER = 10


# ------------------------------------------------------------------------------------------------
# The workload: one task is one method on one CNN's layers, with or without a memory budget.
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """What one method subprocess runs (written as JSON for it)."""

    method: str
    cnn: str
    layers: tuple[str, ...]
    data: str
    rows: int
    budget_bytes: int | None
    machine_bytes: int
    cores: int
    naive_memory: str
    workdir: str
    result: str
    launched: float = 0.0
    """``time.time()`` when the orchestrator started the subprocess: marks count from it."""

    @property
    def images(self) -> str:
        return f"{self.data}/images"

    @property
    def table(self) -> str:
        return f"{self.data}/foods.parquet"


def statement(task: Task, options: Iterable[str] = ()) -> str:
    """The TRANSFER FEATURES statement of the paper's workload for ``task``."""
    with_clause = f"\n  WITH ({', '.join(options)})" if options else ""
    return (
        f"TRANSFER FEATURES OF '{task.images}' AS i\n"
        f"  FROM CNN {task.cnn} WEIGHTS RANDOM SEED {SEED}\n"
        f"  LAYERS ({', '.join(task.layers)})\n"
        f"  JOIN '{task.table}' AS f ON i.id = f.id\n"
        f"  TRAIN LOGREG (max_iter = {MAX_ITER}) LABEL healthy\n"
        f"  VALIDATE 0.2 SEED 2019{with_clause}"
    )


def transfer_query(task: Task, options: Iterable[str] = ()) -> TransferQuery:
    """The checked statement (the builder's output) of ``task``'s workload."""
    import vista_sql
    from vista_sql.logical.builder import build

    sql = statement(task, options)
    query = build(vista_sql.parse_one(sql), sql, current())
    assert isinstance(query, TransferQuery)
    return query


def naive_options(task: Task) -> list[str]:
    """The WITH options of Naive inside Spark (see the module docstring for why each)."""
    return [
        "inference = lazy",
        "placement = before_join",
        "executor_cores = 1",
        f"batch_size = {BATCH}",
        f"partitions = {2 * task.cores}",
        f"memory = '{task.machine_bytes // MiB}m'",
        "cache = false",
    ]


def guide_heap_bytes(memory_bytes: int) -> int:
    """The guides' JVM heap for a node of ``memory_bytes``: less 1 GiB for the operating system,
    less the 7 % memory overhead (Cloudera, "How-to: Tune Your Apache Spark Jobs, part 2")."""
    return max(512 * MiB, int((memory_bytes - GiB) / 1.07) // MiB * MiB)


def naive_conf(task: Task) -> dict[str, str]:
    """The Naive session's settings: local[*], the guides' heap (or Spark's default), else
    Spark's defaults; UI off and loopback only because the machine is shared."""
    conf = {
        "spark.master": "local[*]",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
    }
    if task.naive_memory == "guide":
        memory = task.budget_bytes if task.budget_bytes is not None else task.machine_bytes
        conf["spark.driver.memory"] = f"{guide_heap_bytes(memory) // MiB}m"
    return conf


def ideal_conf(task: Task) -> dict[str, str]:
    """The floor's session: what its training needs, no more (small heap, few partitions)."""
    return {
        "spark.master": "local[*]",
        "spark.driver.memory": "1g",
        "spark.sql.shuffle.partitions": str(2 * task.cores),
        "spark.default.parallelism": str(2 * task.cores),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
    }


MARKS: list[tuple[str, float]] = []
"""(event, seconds since launch) in the method subprocess: where the time outside inference and
training goes (interpreter and imports, JVM start, the checks of the sources)."""


def mark(task: Task, event: str) -> None:
    MARKS.append((event, round(time.time() - task.launched, 3)))


def start_session(conf: dict[str, str], name: str) -> SparkSession:
    from pyspark.sql import SparkSession

    from vista_sql.physical.session import worker_environment

    worker_environment()
    builder = SparkSession.builder.appName(name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


# ------------------------------------------------------------------------------------------------
# The four methods, each run in its own subprocess (``bench_headline.py method TASK.json``).
# Each returns {"stages": {...}, "layers": {layer: metrics}, ...}; wall time is the caller's.
# ------------------------------------------------------------------------------------------------


def layer_record(trained: Any, n_features: int) -> dict[str, Any]:
    return {
        **{k: float(v) for k, v in trained.metrics.items()},
        "n_features": n_features,
        "train_rows": trained.train_rows,
        "validation_rows": trained.validation_rows,
        "train_seconds": trained.train_seconds,
        "evaluate_seconds": trained.evaluate_seconds,
    }


def spark_jobs(spark: SparkSession) -> int:
    """Jobs the session's context ran so far (Spark keeps the last 1,000): fixed costs show as
    jobs, each a scheduling round trip however little data it touches."""
    return len(spark.sparkContext.statusTracker().getJobIdsForGroup())


class StorageSampler:
    """Largest bytes of cached blocks in memory and on disk at once (Spark's RDD storage info,
    every ``interval`` seconds, from a thread of the driver process): whether a run spilled its
    persisted data, and how much. Spark keeps no such peak; its UI shows the present only."""

    def __init__(self, interval: float = 2.0) -> None:
        import threading

        self.interval = interval
        self.memory_bytes = 0
        self.disk_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StorageSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        from pyspark import SparkContext

        while not self._stop.wait(self.interval):
            # A context still starting has no _jsc yet; one stopping loses it under us.
            context = SparkContext._active_spark_context
            java = getattr(context, "_jsc", None)
            if java is None:
                continue
            try:
                infos = java.sc().getRDDStorageInfo()
                memory = sum(int(info.memSize()) for info in infos)
                disk = sum(int(info.diskSize()) for info in infos)
            except Exception:  # the context stopping: the next sample decides
                continue
            self.samples += 1
            self.memory_bytes = max(self.memory_bytes, memory)
            self.disk_bytes = max(self.disk_bytes, disk)

    def to_json(self) -> dict[str, int]:
        return {
            "peak_cached_memory_bytes": self.memory_bytes,
            "peak_cached_disk_bytes": self.disk_bytes,
            "samples": self.samples,
        }


def from_result(result: Any) -> dict[str, Any]:
    """Stages and per-layer metrics of a vista_sql TransferResult."""
    inference = sum(run.inference_seconds for run in result.runs)
    training = sum(run.trained.train_seconds + run.trained.evaluate_seconds for run in result.runs)
    return {
        "stages": {"inference": inference, "training": training},
        "layers": {
            run.layer: {
                **layer_record(run.trained, run.n_features),
                "inference_seconds": run.inference_seconds,
            }
            for run in result.runs
        },
        "run_seconds": result.seconds,
        "store": {k: v for k, v in result.store.items() if isinstance(v, int | float)}
        if getattr(result, "store", None)
        else {},
    }


def method_naive_spark(task: Task) -> dict[str, Any]:
    import vista_sql

    conf = naive_conf(task)
    spark = start_session(conf, "naive-spark")
    mark(task, "session started")
    sql = statement(task, naive_options(task))
    with StorageSampler() as storage:
        result = vista_sql.execute(sql, spark=spark, progress=False)
    mark(task, "executed")
    jobs = spark_jobs(spark)
    spark.stop()
    return {
        **from_result(result),
        "spark_conf": conf,
        "spark_jobs": jobs,
        "statement": sql,
        "advice": result.advice,
        "storage": storage.to_json(),
    }


def method_vista(task: Task) -> dict[str, Any]:
    """``vista_sql.execute``; the decision it ran (chosen plan, settings, predicted runtime and
    peak) comes from its EXPLAIN ANALYZE, so nothing but the statement runs in this process."""
    import vista_sql
    from vista_sql.physical.session import stop_owned_session

    sql = statement(task)
    with StorageSampler() as storage:  # ResourceError when no plan fits: refused
        result = vista_sql.execute(sql, progress=False)
    mark(task, "executed")
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    jobs = spark_jobs(session) if session is not None else None
    stop_owned_session()
    analyzed = json.loads(result.explain_json())
    config = analyzed["config"]
    predicted = {
        "alternative": analyzed["chosen"],
        "choice": (
            f"cores={config['executor_cores']} tf_threads={config['tf_threads']}"
            f" batch={config['batch_size']} partitions={config['partitions']}"
            f" heap={config['heap_bytes'] / GiB:.2f}GiB persist={config['persist_level']}"
        ),
        "seconds": analyzed["estimate"]["seconds"]["value"],
        "peak_bytes": analyzed["estimate"]["peak_memory_bytes"]["value"],
        "resources": analyzed["estimate"]["resources"],
        "spark_conf": config["spark_conf"],
        "cache_peak_bytes": analyzed["estimate"]["cache_peak_bytes"]["value"],
        "storage_capacity_bytes": analyzed["estimate"]["storage_capacity_bytes"],
        "spill_fraction": analyzed["estimate"]["spill_fraction"]["value"],
    }
    return {
        **from_result(result),
        "predicted": predicted,
        "analyze": analyzed.get("analyze"),
        "storage": storage.to_json(),
        "spark_jobs": jobs,
        "statement": sql,
        "explain": result.plan,
    }


def image_files(task: Task) -> list[tuple[int, Path]]:
    """(id, path) of every image, by id."""
    files = [(int(p.stem), p) for p in Path(task.images).iterdir() if p.suffix == ".jpg"]
    return sorted(files)


def extract(task: Task) -> dict[str, Any]:
    """The Naive Keras script: for each layer separately, a model up to it, every image through
    it, the features written to ``<workdir>/<layer>.parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vista_sql.logical.plan import LayerOut, WeightsSpec
    from vista_sql.udfs.inference import InferenceSpec, clear_cache, infer_local

    files = image_files(task)
    seconds = {}
    for layer in task.layers:
        started = time.perf_counter()
        clear_cache()  # a separate script per layer builds its model again
        spec = InferenceSpec(
            task.cnn, WeightsSpec("random", seed=SEED), None, (LayerOut(layer, "features"),)
        )
        (column,) = spec.columns
        schema = pa.schema([("id", pa.int64()), ("features", pa.list_(pa.float32()))])
        with pq.ParquetWriter(Path(task.workdir) / f"{layer}.parquet", schema) as writer:
            for begin in range(0, len(files), BATCH):
                chunk = files[begin : begin + BATCH]
                features = infer_local([p.read_bytes() for _, p in chunk], spec, BATCH)[column]
                flat = pa.array(features.reshape(-1), pa.float32())
                offsets = pa.array(
                    [i * features.shape[1] for i in range(len(chunk) + 1)], pa.int32()
                )
                ids = pa.array([key for key, _ in chunk], pa.int64())
                lists = pa.ListArray.from_arrays(offsets, flat)
                writer.write_table(pa.Table.from_arrays([ids, lists], schema=schema))
        seconds[layer] = time.perf_counter() - started
    return {"layer_seconds": seconds}


def train_layers(
    spark: SparkSession, task: Task, frames: dict[str, DataFrame]
) -> tuple[dict[str, Any], float]:
    """The same per-layer training as vista_sql's executor: join (KEY, layer features) with the
    prepared table, assemble [structured, CNN] as one vector, cache, ``physical.train.train``."""
    from pyspark import StorageLevel
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    from vista_sql.physical.prepare import STRUCT, prepare_table
    from vista_sql.physical.sources import KEY, read_table
    from vista_sql.physical.train import FEATURES, LABEL, train

    query = transfer_query(task)
    prepared = prepare_table(read_table(spark, query, None), query)
    mark(task, "table checked")
    layers: dict[str, Any] = {}
    started = time.perf_counter()
    for layer, frame in frames.items():
        cnn = F.col("features").cast("array<double>")
        table = (
            frame.withColumnRenamed("id", KEY)
            .join(prepared.frame, KEY)
            .select(KEY, LABEL, array_to_vector(F.concat(F.col(STRUCT), cnn)).alias(FEATURES))
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        table.count()
        first = frame.first()
        assert first is not None, f"no features for {layer}"
        n_features = len(prepared.features) + len(first["features"])
        trained = train(
            table,
            query.model,
            n_features=n_features,
            n_classes=len(prepared.labels),
            validate=query.validate,
            seed=query.validate_seed,
        )
        table.unpersist()
        layers[layer] = layer_record(trained, n_features)
    return layers, time.perf_counter() - started


def method_naive_keras(task: Task) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, json.dumps(asdict(task))], check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the Keras feature extraction exited with status {done.returncode}")
    inference = time.perf_counter() - started
    mark(task, "features written")
    conf = naive_conf(task)
    spark = start_session(conf, "naive-keras")
    mark(task, "session started")
    frames = {
        layer: spark.read.parquet(str(Path(task.workdir) / f"{layer}.parquet"))
        for layer in task.layers
    }
    layers, training = train_layers(spark, task, frames)
    jobs = spark_jobs(spark)
    spark.stop()
    return {
        "stages": {"inference": inference, "training": training},
        "layers": layers,
        "spark_conf": conf,
        "spark_jobs": jobs,
    }


def method_ideal(task: Task) -> dict[str, Any]:
    import pyarrow as pa

    from vista_sql.logical.plan import LayerOut, WeightsSpec
    from vista_sql.udfs.inference import InferenceSpec, infer_local

    started = time.perf_counter()
    files = image_files(task)
    outputs = tuple(LayerOut(layer, "features") for layer in task.layers)
    spec = InferenceSpec(task.cnn, WeightsSpec("random", seed=SEED), None, outputs)
    features = infer_local([p.read_bytes() for _, p in files], spec, BATCH)
    inference = time.perf_counter() - started
    mark(task, "inferred")
    spark = start_session(ideal_conf(task), "ideal")
    mark(task, "session started")
    ids = pa.array([key for key, _ in files], pa.int64())
    frames = {}
    for layer, column in zip(task.layers, spec.columns, strict=True):
        values = features[column]
        offsets = pa.array([i * values.shape[1] for i in range(len(files) + 1)], pa.int32())
        lists = pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), pa.float32()))
        frames[layer] = spark.createDataFrame(pa.table({"id": ids, "features": lists}))
    layers, training = train_layers(spark, task, frames)
    jobs = spark_jobs(spark)
    spark.stop()
    return {
        "stages": {"inference": inference, "training": training},
        "layers": layers,
        "spark_jobs": jobs,
    }


METHOD_FUNCTIONS: dict[str, Callable[[Task], dict[str, Any]]] = {
    "naive_spark": method_naive_spark,
    "naive_keras": method_naive_keras,
    "vista": method_vista,
    "ideal": method_ideal,
}


def task_from_json(text: str) -> Task:
    document = json.loads(text)
    document["layers"] = tuple(document["layers"])
    return Task(**document)


if __name__ == "__main__":
    print(json.dumps(extract(task_from_json(sys.argv[1]))))
