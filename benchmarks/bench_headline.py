"""The VISTA paper's headline, here: Naive feature transfer vs vista_sql, runtime and crashes.

    python benchmarks/bench_headline.py [--cnn alexnet,vgg16,resnet50] [--rows CNN=N,... | N]
        [--repeat 1] [--budgets 2,3,4,6,8] [--budget-cnn vgg16] [--budget-rows 64] [--no-budgets]

The workload (the paper's, section 4): a Foods-like table (``vista_sql.datasets.make_foods``: 129
numeric features, a ``healthy`` label, one 227x227 JPEG per row), features from AlexNet conv5..fc8,
VGG16 fc6..fc8 or ResNet50's top 5 transfer layers (seeded random weights: ``WEIGHTS RANDOM SEED
7``), each joined with the structured features, MLlib logistic regression (10 iterations) per
layer, validated on a 20 % hash split. Four ways to run it, each in its own subprocess (so that
its JVM, Python workers and memory are measured and limited apart from the others'), in
alternating order (ABCD, then DCBA for the next CNN or repetition):

``naive_spark``, Naive inside Spark
    vista_sql's *lazy* plan (every layer inferred from the image, from scratch: ``WITH (inference
    = lazy, placement = before_join)``) run on a session built as standard guides say (the paper's
    references: Cloudera's "How-to: Tune Your Apache Spark Jobs, part 2" and the "distribution of
    executors, cores and memory" notes): ``local[*]``; the JVM given the machine's memory less 1
    GiB for the operating system and less the 7 % memory overhead, ``spark.driver.memory =
    (M - 1 GiB) / 1.07`` with M the memory the run may use (the budget, else the machine);
    everything else at Spark's defaults (``spark.sql.shuffle.partitions`` 200, Arrow batches of
    10,000 rows); the UI off and the driver bound to 127.0.0.1 (shared machine). ``--naive-memory
    default`` uses Spark's default 1 GiB heap instead. The session is passed to
    ``vista_sql.execute(sql, spark=session)``, so vista_sql's configuration is *not* applied.
    Three more options pin what vista_sql would otherwise tune even on a user's session:
    ``executor_cores = 1`` makes vista_sql give each Python worker's TensorFlow all the node's
    cores, which is TensorFlow's default threading (the ``local[*]`` session still runs one task
    per core, so each of those TensorFlows runs one thread per core: the oversubscription a
    default setup has); ``batch_size = 32`` is Keras's ``predict`` default; ``partitions = 2 x
    cores`` is the guides' two tasks per core; ``memory = <machine>`` because a naive user does
    not tell the system the budget (vista_sql would otherwise read the cgroup limit and shrink its
    batches); ``cache = false`` because vista_sql's feature store is not part of the Naive
    practice.
``naive_keras``, Naive outside Spark
    The dominant practice the paper describes: a plain Keras script (its own process) that, for
    each layer separately, builds the model up to that layer (``udfs.inference.InferenceSpec``
    with one output; the model cache is cleared between layers, as separate scripts would), runs
    every image through it in batches of 32 (TensorFlow's default threads) and writes the layer's
    features to a Parquet file with pyarrow; then a Spark program (the same guide session) reads
    each file, joins it with the table, and trains with ``vista_sql.physical.train.train``.
``vista``
    ``vista_sql.execute(sql)``: the optimizer's plan and its own Spark session and settings, told
    the budget by the cgroup (``cost_model.resources``). Its feature store starts empty in every
    run (``VISTA_SQL_CACHE_DIR`` is a fresh directory), so nothing is reused across runs.
``ideal``, the floor
    One multi-output TensorFlow pass in one process (``udfs.inference.infer_local`` with every
    layer as an output, batches of 32, TensorFlow's default threads), the features handed to
    Spark from memory (a pyarrow table) and the same MLlib training, on a session with shuffle
    partitions at 2 x cores. No optimizer can do less work than this.

All four read the same files, use the same seeded weights, train on the same rows (the split is
a hash of the key: ``physical.train``) and must report the same accuracy per layer; a difference
is printed and makes the command exit with status 1 (after writing the results).

Measured per run: wall time of the subprocess (process start to exit: imports, JVM start and the
checks of the sources included, as a user waits for them), split into inference (everything that
produces the features: model builds and passes, joins, materialising), training (MLlib fit and
evaluation) and the rest; peak resident memory of the subprocess and all its descendants (the
Spark JVM, the Python workers), sampled every 0.25 s from ``/proc`` with
``vista_sql.physical.monitor.sample``; and the memory cgroup's own peak (which also counts page
cache). For vista_sql, its predicted runtime and peak (the decision's) as well.

Memory budgets: the same workloads (by default VGG16's, on ``--budget-rows`` rows) under an
operating-system limit, for each budget of the ladder, recording for each method whether it
finished, was OOM-killed, failed inside Spark, or (vista_sql) refused with a ``ResourceError``
because no plan fits. The limit is a cgroup v1 memory controller child of this process's own
cgroup (``vista_sql.physical.cgroup``; every run gets one, with the machine's memory as its limit
when there is no budget, so that the kernel's peak and OOM kills are recorded alike), not an
rlimit: ``RLIMIT_AS`` caps each process's virtual memory, which TensorFlow and the JVM reserve by
gigabytes without using, and it does not add up the processes of a Spark application; a cgroup
limits the resident memory of the whole process tree, as a container does, and the kernel
OOM-kills inside it. The ladder runs upwards and, unless ``--budget-all``, a method that finished
at a budget is not run again at larger ones (shown as finished, marked inferred). Without
permission to make cgroups the budgets are skipped and said.

Writes ``benchmarks/results/headline.json`` and ``headline.png`` (``--results`` to change) and
prints the tables. Run it alone on an idle machine: two cores shared with anything else make the
timings meaningless. The datasets are made once under ``--data`` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from methods import (  # noqa: E402
    MARKS,
    METHOD_FUNCTIONS,
    METHODS,
    TITLES,
    Task,
    mark,
    task_from_json,
)

from vista_sql.catalog import current  # noqa: E402
from vista_sql.physical.cgroup import MemoryCgroup, unavailable_reason  # noqa: E402
from vista_sql.physical.monitor import MemorySample, sample  # noqa: E402
from vista_sql.udfs.layer_stats import machine  # noqa: E402
from vista_sql.units import GiB  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
TOP_LAYERS = {"alexnet": 4, "vgg16": 3, "resnet50": 5}
"""The paper's layers: AlexNet conv5..fc8, VGG16 fc6..fc8, ResNet50's top 5."""
DEFAULT_ROWS = {"alexnet": 1500, "vgg16": 250, "resnet50": 400}
"""Rows per CNN by default: each CNN's four runs in about 6-7 minutes on the 2-core machine this
was written on, so that runtimes and the budget ladder take about 25 minutes together (the
estimate, and what larger sizes give, are in benchmarks/HEADLINE.md). Inference dominates the
fixed costs (JVM start, source checks, about 15 Spark jobs of training per layer) only from
about these sizes on; the ratios grow with the rows."""
DEFAULT_BUDGETS = (2.0, 3.0, 4.0, 6.0, 8.0)
"""GiB. On VGG16 (64 rows) vista_sql needs 2.6 GiB by its own estimate (it refuses at 2), Naive in
Spark two TensorFlow workers of about 2 GiB each besides its JVM."""
SAMPLE_SECONDS = 0.25


def run_method(task: Task) -> None:
    """The subprocess's body: run the method, write its outcome (or its error) as JSON."""
    import traceback

    from vista_sql.errors import ResourceError

    mark(task, "imported")
    try:
        outcome = {"status": "ok", **METHOD_FUNCTIONS[task.method](task)}
    except ResourceError as error:
        outcome = {"status": "refused", "error": str(error)}
    except Exception as error:
        outcome = {
            "status": "error",
            "error": f"{type(error).__name__}: {str(error)[:2000]}",
            "traceback": traceback.format_exc()[-4000:],
        }
    mark(task, "done")
    outcome["marks"] = MARKS
    Path(task.result).write_text(json.dumps(outcome, default=str))
    if outcome["status"] == "error":
        sys.exit(1)


# ------------------------------------------------------------------------------------------------
# The orchestrator: datasets, launching each method under a cgroup, sampling its tree's memory.
# ------------------------------------------------------------------------------------------------


@dataclass
class TreePeak:
    """Largest resident memory of a process and its descendants, sampled in a thread."""

    pid: int
    peak: MemorySample | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            current = sample(self.pid)
            if current is not None and (self.peak is None or current.total > self.peak.total):
                self.peak = current
            self._stop.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop.set()


def ensure_dataset(root: Path, rows: int) -> Path:
    """The Foods-like dataset of ``rows`` rows under ``root`` (made once, then reused)."""
    from vista_sql.datasets.foods import make_foods

    directory = root / f"foods_{rows}"
    done = directory / "complete"
    if not done.exists():
        print(f"making the Foods-like dataset of {rows} rows in {directory}", flush=True)
        make_foods(directory, rows, seed=0, overwrite=True)
        done.write_text(f"{rows}\n")
    return directory


@dataclass
class Measured:
    """One measured subprocess: how it ended, its time and its memory."""

    returncode: int
    seconds: float
    timed_out: bool
    peak: MemorySample | None
    """The process tree's peak (TreePeak): JVM, Python workers and driver."""
    oom_kills: int | None = None
    cgroup_peak_bytes: int | None = None
    """The cgroup's, when it ran in one."""

    def record(self) -> dict[str, Any]:
        """The fields a benchmark's JSON record keeps (no cgroup: no OOM or cgroup fields)."""
        fields: dict[str, Any] = {"exit_code": self.returncode}
        if self.oom_kills is not None:
            fields["oom_kills"] = self.oom_kills
            fields["cgroup_peak_bytes"] = self.cgroup_peak_bytes
        return fields


def run_measured(
    argv: list[str],
    env: dict[str, str],
    limit_bytes: int | None,
    timeout: float,
    stdout: Any,
    stderr: Any,
) -> Measured:
    """Run ``argv`` in a memory cgroup of ``limit_bytes`` (None: no cgroup), sampling its
    process tree's peak, killed as a group at ``timeout`` or when this process stops (so that
    the cgroup can go)."""
    group = MemoryCgroup.create(limit_bytes) if limit_bytes is not None else None
    timed_out = False
    with group if group is not None else nullcontext():
        started = time.perf_counter()
        process = subprocess.Popen(
            group.command(argv) if group is not None else argv,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
        peak = TreePeak(process.pid)
        sampler = threading.Thread(target=peak.run, daemon=True)
        sampler.start()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        seconds = time.perf_counter() - started
        peak.stop()
        sampler.join()
        measured = Measured(process.returncode, seconds, timed_out, peak.peak)
        if group is not None:
            measured.oom_kills = group.oom_kills or 0
            measured.cgroup_peak_bytes = group.peak_bytes
    return measured


def launch(task: Task, timeout: float, use_cgroup: bool) -> dict[str, Any]:
    """Run one method subprocess (under the task's budget) and measure it."""
    Path(task.workdir).mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "VISTA_SQL_CACHE_DIR": str(Path(task.workdir) / "vista-cache"),
    }
    task = replace(task, launched=time.time())
    argv = [sys.executable, __file__, "method", json.dumps(asdict(task))]
    log_path = Path(task.workdir) / "log.txt"
    record: dict[str, Any] = {
        "method": task.method,
        "cnn": task.cnn,
        "layers": list(task.layers),
        "rows": task.rows,
        "budget_bytes": task.budget_bytes,
        "load_before": os.getloadavg()[0],
    }
    # Without a budget the group's limit is the machine's memory: no limit, but the kernel still
    # counts the tree's peak and any OOM kill.
    limit = task.budget_bytes if task.budget_bytes is not None else task.machine_bytes
    with open(log_path, "w") as log:
        run = run_measured(
            argv, env, limit if use_cgroup else None, timeout, log, subprocess.STDOUT
        )
    record["seconds"] = run.seconds
    record |= run.record()
    record["load_after"] = os.getloadavg()[0]
    if run.peak is not None:
        record["peak"] = {
            "total": run.peak.total,
            "jvm": run.peak.jvm,
            "python_workers": run.peak.python_workers,
            "driver": run.peak.driver,
        }
    outcome: dict[str, Any] = {}
    if Path(task.result).exists():
        outcome = json.loads(Path(task.result).read_text())
    record.update(outcome)
    record["status"] = classify(record, run.timed_out)
    if record["status"] != "finished":
        record["log_tail"] = log_path.read_text()[-3000:]
    shutil.rmtree(task.workdir, ignore_errors=True)
    return record


def classify(record: dict[str, Any], timed_out: bool) -> str:
    """finished | refused (vista_sql: no plan fits) | timeout | oom_killed (the kernel ended a
    process of the tree: the driver, the JVM or a Python worker) | failed (an exception: Spark's
    own failures, e.g. a Java OutOfMemoryError, land here with their message)."""
    status = record.get("status")
    if status == "ok" and record["exit_code"] == 0:
        return "finished"
    if status == "refused":
        return "refused"
    if timed_out:
        return "timeout"
    if record.get("oom_kills", 0) > 0:
        return "oom_killed"
    return "failed"


def method_order(index: int) -> tuple[str, ...]:
    """ABCD for even runs, DCBA for odd: each method's position averages out over runs."""
    return METHODS if index % 2 == 0 else tuple(reversed(METHODS))


@dataclass
class Plan:
    cnns: list[str]
    rows: dict[str, int]
    repeat: int
    """Runtime repetitions per CNN (0: the budget ladder only)."""
    budgets: list[float]
    budget_cnns: list[str]
    budget_rows: int
    budget_all: bool
    methods: tuple[str, ...]


def run_all(plan: Plan, args: argparse.Namespace) -> list[dict[str, Any]]:
    data_root = Path(args.data)
    machine_bytes = machine()["memory_bytes"]
    cores = len(os.sched_getaffinity(0))
    scratch = Path(tempfile.mkdtemp(prefix="headline-", dir=args.scratch))
    cgroup_reason = unavailable_reason()
    records: list[dict[str, Any]] = []
    timeouts: dict[tuple[str, str], float] = {}

    def make(method: str, cnn: str, rows: int, budget: float | None) -> Task:
        info = current().cnn(cnn)
        assert info is not None, cnn
        number = len(records)
        return Task(
            method=method,
            cnn=cnn,
            layers=tuple(info.layer_names[-TOP_LAYERS[cnn] :]),
            data=str(ensure_dataset(data_root, rows)),
            rows=rows,
            budget_bytes=None if budget is None else int(budget * GiB),
            machine_bytes=machine_bytes,
            cores=cores,
            naive_memory=args.naive_memory,
            workdir=str(scratch / f"{number:03d}-{method}-{cnn}"),
            result=str(scratch / f"{number:03d}-{method}-{cnn}.json"),
        )

    def report(record: dict[str, Any], label: str) -> None:
        peak = record.get("peak", {}).get("total")
        memory = f"{peak / GiB:.1f} GiB" if peak else "?"
        print(
            f"{label:<34} {TITLES[record['method']]:<15} {record['status']:<13}"
            f" {record['seconds']:7.1f} s  peak {memory}",
            flush=True,
        )

    index = 0
    for repetition in range(plan.repeat):
        for cnn in plan.cnns:
            for method in method_order(index):
                if method not in plan.methods:
                    continue
                task = make(method, cnn, plan.rows[cnn], None)
                record = launch(task, args.timeout, cgroup_reason is None)
                record.update(phase="runtime", repetition=repetition)
                records.append(record)
                report(record, f"{cnn} x{plan.rows[cnn]} run {repetition + 1}")
                if record["status"] == "finished":
                    timeouts[(cnn, method)] = max(
                        timeouts.get((cnn, method), 0.0), record["seconds"]
                    )
            index += 1
    if plan.budgets and cgroup_reason is not None:
        print(f"memory budgets skipped: {cgroup_reason}", flush=True)
        return records
    for cnn in plan.budget_cnns:
        finished_at: dict[str, float] = {}
        for budget in sorted(plan.budgets):
            for method in method_order(index):
                if method not in plan.methods:
                    continue
                if method in finished_at and not plan.budget_all:
                    records.append(
                        {
                            "phase": "budget",
                            "method": method,
                            "cnn": cnn,
                            "rows": plan.budget_rows,
                            "budget_bytes": int(budget * GiB),
                            "status": "finished",
                            "inferred_from": finished_at[method],
                        }
                    )
                    continue
                task = make(method, cnn, plan.budget_rows, budget)
                record = launch(task, args.timeout, True)
                record["phase"] = "budget"
                records.append(record)
                report(record, f"{cnn} x{plan.budget_rows} under {budget:g} GiB")
                if record["status"] == "finished":
                    finished_at[method] = budget
            index += 1
    shutil.rmtree(scratch, ignore_errors=True)
    return records


# ------------------------------------------------------------------------------------------------
# Summary: medians per (CNN, method), ratios, accuracy agreement, the budget ladder; text and PNG.
# ------------------------------------------------------------------------------------------------


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    runtime: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("phase") != "runtime":
            continue
        entry = runtime.setdefault(record["cnn"], {"rows": record["rows"], "methods": {}})
        entry["methods"].setdefault(record["method"], []).append(record)
    summary: dict[str, Any] = {"runtime": {}, "accuracy": {}, "budgets": {}, "mismatches": []}
    for cnn, entry in runtime.items():
        methods: dict[str, Any] = {}
        for method, runs in entry["methods"].items():
            done = [r for r in runs if r["status"] == "finished"]
            statuses = sorted({r["status"] for r in runs})
            if not done:
                methods[method] = {"status": ", ".join(statuses)}
                continue
            seconds = statistics.median(r["seconds"] for r in done)
            stages = {
                stage: statistics.median(r["stages"][stage] for r in done)
                for stage in ("inference", "training")
            }
            stages["other"] = max(0.0, seconds - stages["inference"] - stages["training"])
            methods[method] = {
                "status": "finished" if len(done) == len(runs) else ", ".join(statuses),
                "seconds": seconds,
                "runs": [round(r["seconds"], 1) for r in done],
                "stages": stages,
                "peak_bytes": max(r.get("peak", {}).get("total", 0) for r in done),
                "predicted": done[0].get("predicted"),
                "spark_jobs": done[0].get("spark_jobs"),
                "store_write_seconds": (done[0].get("store") or {}).get("write_seconds"),
            }
        summary["runtime"][cnn] = {"rows": entry["rows"], "methods": methods}
        vista = methods.get("vista", {}).get("seconds")
        naive = methods.get("naive_spark", {}).get("seconds")
        ideal = methods.get("ideal", {}).get("seconds")
        summary["runtime"][cnn]["naive_over_vista"] = naive / vista if naive and vista else None
        summary["runtime"][cnn]["vista_over_ideal"] = vista / ideal if vista and ideal else None
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for record in records:
        if record.get("status") == "finished" and "layers" in record:
            groups.setdefault((record["cnn"], record["rows"]), []).append(record)
    for (cnn, rows), runs in groups.items():
        table: dict[str, dict[str, Any]] = {}
        for run in runs:
            for layer, metrics in run["layers"].items():
                seen = table.setdefault(layer, {"accuracy": {}, "auc": []})
                seen["accuracy"].setdefault(run["method"], set()).add(metrics["accuracy"])
                if "auc" in metrics:
                    seen["auc"].append(metrics["auc"])
        group = f"{cnn} x{rows}"
        summary["accuracy"][group] = {}
        for layer, seen in table.items():
            values = {m: sorted(a) for m, a in seen["accuracy"].items()}
            summary["accuracy"][group][layer] = {
                "accuracy": {m: a[0] for m, a in values.items()},
                "auc_spread": max(seen["auc"]) - min(seen["auc"]) if seen["auc"] else None,
            }
            if len({a for accuracies in values.values() for a in accuracies}) > 1:
                shown = ", ".join(
                    f"{TITLES[m]} {'/'.join(f'{a:.6f}' for a in values[m])}"
                    for m in METHODS
                    if m in values
                )
                summary["mismatches"].append(f"{group} {layer}: {shown}")
    for record in records:
        if record.get("phase") != "budget":
            continue
        ladder = summary["budgets"].setdefault(record["cnn"], {"rows": record["rows"], "runs": []})
        ladder["runs"].append(
            {
                "method": record["method"],
                "budget_gib": record["budget_bytes"] / GiB,
                "status": record["status"],
                "inferred_from": record.get("inferred_from"),
                "seconds": record.get("seconds"),
                "peak_bytes": record.get("peak", {}).get("total"),
                "predicted_peak_bytes": (record.get("predicted") or {}).get("peak_bytes"),
                "error": (record.get("error") or "")[:300] or None,
            }
        )
    return summary


def text_tables(summary: dict[str, Any]) -> str:
    lines = []
    header = (
        f"{'cnn':<9}{'rows':>6}  {'method':<15}{'total s':>9}{'infer s':>9}{'train s':>9}"
        f"{'other s':>9}{'peak GiB':>10}  {'x vista':>8}"
    )
    lines += [header, "-" * len(header)]
    for cnn, entry in summary["runtime"].items():
        vista = entry["methods"].get("vista", {}).get("seconds")
        for method in METHODS:
            result = entry["methods"].get(method)
            if result is None:
                continue
            if "seconds" not in result:
                lines.append(f"{cnn:<9}{entry['rows']:>6}  {TITLES[method]:<15}{result['status']}")
                continue
            stages = result["stages"]
            ratio = f"{result['seconds'] / vista:.2f}" if vista else "?"
            lines.append(
                f"{cnn:<9}{entry['rows']:>6}  {TITLES[method]:<15}{result['seconds']:>9.1f}"
                f"{stages['inference']:>9.1f}{stages['training']:>9.1f}{stages['other']:>9.1f}"
                f"{result['peak_bytes'] / GiB:>10.2f}  {ratio:>8}"
            )
        naive, ideal = entry["naive_over_vista"], entry["vista_over_ideal"]
        predicted = entry["methods"].get("vista", {}).get("predicted") or {}
        lines.append(
            f"{'':<17}Naive/vista_sql {_ratio(naive)}, vista_sql/ideal {_ratio(ideal)};"
            f" vista_sql chose {predicted.get('alternative', '?')} ({predicted.get('choice', '')}),"
            f" predicted {_seconds(predicted.get('seconds'))},"
            f" {_gib(predicted.get('peak_bytes'))}"
        )
        vista_entry = entry["methods"].get("vista", {})
        jobs = ", ".join(
            f"{TITLES[m]} {entry['methods'][m]['spark_jobs']}"
            for m in METHODS
            if entry["methods"].get(m, {}).get("spark_jobs") is not None
        )
        store = vista_entry.get("store_write_seconds")
        lines.append(
            f"{'':<17}Spark jobs: {jobs}"
            + (f"; vista_sql's feature store writes took {store:.1f} s" if store else "")
        )
    lines += ["", "accuracy per layer (validation split; must agree across methods and runs)"]
    for group, table in summary["accuracy"].items():
        for layer, entry in table.items():
            cells = "  ".join(
                f"{TITLES[m]} {entry['accuracy'][m]:.4f}" for m in METHODS if m in entry["accuracy"]
            )
            spread = entry["auc_spread"]
            auc = f"  (AUC spread {spread:.1e})" if spread is not None else ""
            lines.append(f"  {group:<16}{layer:<9}{cells}{auc}")
    if summary["mismatches"]:
        lines += ["", "ACCURACY DIFFERS BETWEEN METHODS:"] + [
            f"  {m}" for m in summary["mismatches"]
        ]
    for cnn, ladder in summary["budgets"].items():
        budgets = sorted({r["budget_gib"] for r in ladder["runs"]})
        lines += ["", f"memory budgets, {cnn} x{ladder['rows']} (cgroup limit on the whole tree)"]
        lines.append(f"  {'method':<15}" + "".join(f"{b:>9g} GiB" for b in budgets))
        for method in METHODS:
            runs = {r["budget_gib"]: r for r in ladder["runs"] if r["method"] == method}
            if not runs:
                continue
            marks = []
            for budget in budgets:
                run = runs.get(budget)
                mark = "-" if run is None else SHORT[run["status"]]
                if run is not None and run["inferred_from"] is not None:
                    mark = "(ok)"
                marks.append(f"{mark:>13}")
            lines.append(f"  {TITLES[method]:<15}" + "".join(marks))
        predicted = [
            f"{r['budget_gib']:g} GiB: {_gib(r['predicted_peak_bytes'])}"
            for r in ladder["runs"]
            if r["method"] == "vista" and r["predicted_peak_bytes"]
        ]
        if predicted:
            lines.append("  vista_sql predicted peak: " + ", ".join(predicted))
        lines.append(
            "  ok finished, (ok) finished at a smaller budget (not rerun), OOM killed by the "
            "kernel, FAIL Spark/Python error, REFUSED no plan fits (ResourceError), TIME timeout"
        )
    return "\n".join(lines)


SHORT = {
    "finished": "ok",
    "oom_killed": "OOM",
    "failed": "FAIL",
    "refused": "REFUSED",
    "timeout": "TIME",
}


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value else "?"


def _seconds(value: float | None) -> str:
    return f"{value:.0f} s" if value else "?"


def _gib(value: float | None) -> str:
    return f"{value / GiB:.1f} GiB" if value else "?"


def plot(summary: dict[str, Any], path: Path) -> None:
    """Runtime bars per CNN (stacked by stage, ratio to vista_sql on top; a red x where a method
    crashed) and, per budget ladder, a grid of finished / crashed / refused by budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ladders = summary["budgets"]
    cnns = list(summary["runtime"])
    panels = (1 if cnns else 0) + len(ladders)
    if panels == 0:
        return
    figure, axes = plt.subplots(1, panels, figsize=(5.5 * panels + 1, 4.8), squeeze=False)
    if cnns:
        _runtime_panel(axes[0][0], summary, cnns)
    for panel, (cnn, ladder) in enumerate(ladders.items(), start=1 if cnns else 0):
        _budget_panel(axes[0][panel], cnn, ladder)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


SHORT_TITLES = {
    "naive_spark": "Naive\nSpark",
    "naive_keras": "Naive\nKeras",
    "vista": "vista",
    "ideal": "ideal",
}
STAGE_COLORS = {"inference": "#4c72b0", "training": "#dd8452", "other": "#bbbbbb"}


def _runtime_panel(bars: Any, summary: dict[str, Any], cnns: list[str]) -> None:
    width = 0.2
    for c, cnn in enumerate(cnns):
        entry = summary["runtime"][cnn]
        vista = entry["methods"].get("vista", {}).get("seconds")
        for m, method in enumerate(METHODS):
            result = entry["methods"].get(method)
            x = c + (m - 1.5) * width
            if result is None:
                continue
            if "seconds" not in result:
                bars.text(x, 0, "x", ha="center", va="bottom", color="red", fontsize=16)
                continue
            bottom = 0.0
            for stage in ("inference", "training", "other"):
                value = result["stages"][stage]
                label = stage if c == 0 and m == 0 else None
                bars.bar(x, value, width, bottom=bottom, color=STAGE_COLORS[stage], label=label)
                bottom += value
            ratio = f"\n{result['seconds'] / vista:.2f}x" if vista else ""
            bars.text(x, bottom, SHORT_TITLES[method] + ratio, ha="center", va="bottom", fontsize=6)
    bars.set_xticks(range(len(cnns)), [f"{c}\n{summary['runtime'][c]['rows']} rows" for c in cnns])
    bars.set_ylabel("seconds (median of runs)")
    bars.set_title("End-to-end runtime (ratio: time / vista_sql's)")
    bars.margins(y=0.15)
    bars.legend(fontsize=8)


BUDGET_MARKERS = {
    "finished": ("o", "green"),
    "oom_killed": ("X", "red"),
    "failed": ("X", "darkred"),
    "refused": ("s", "grey"),
    "timeout": ("v", "orange"),
}


def _budget_panel(grid: Any, cnn: str, ladder: dict[str, Any]) -> None:
    for row, method in enumerate(METHODS):
        for run in (r for r in ladder["runs"] if r["method"] == method):
            marker, color = BUDGET_MARKERS[run["status"]]
            grid.scatter(
                run["budget_gib"],
                row,
                marker=marker,
                s=120,
                color=color if run["inferred_from"] is None else "none",
                edgecolors=color,
            )
            if method == "vista" and run["predicted_peak_bytes"]:
                grid.annotate(
                    f"predicted {run['predicted_peak_bytes'] / GiB:.1f}",
                    (run["budget_gib"], row),
                    textcoords="offset points",
                    xytext=(0, 9),
                    ha="center",
                    fontsize=7,
                )
    grid.set_yticks(range(len(METHODS)), [TITLES[m] for m in METHODS])
    grid.set_xlabel("memory budget, GiB (cgroup limit on the process tree)")
    grid.set_ylim(-0.7, len(METHODS) - 0.3)
    grid.set_title(
        f"{cnn}, {ladder['rows']} rows: o finished (hollow: not rerun),"
        " X killed/failed, square refused",
        fontsize=9,
    )


# ------------------------------------------------------------------------------------------------
# Command line.
# ------------------------------------------------------------------------------------------------


def parse_rows(text: str | None, cnns: list[str]) -> dict[str, int]:
    if not text:
        return {cnn: DEFAULT_ROWS[cnn] for cnn in cnns}
    if "=" not in text:
        return {cnn: int(text) for cnn in cnns}
    given = {k.strip(): int(v) for k, v in (part.split("=") for part in text.split(","))}
    return {cnn: given.get(cnn, DEFAULT_ROWS[cnn]) for cnn in cnns}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "method":
        run_method(task_from_json(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cnn", default="alexnet,vgg16,resnet50")
    parser.add_argument("--rows", help="N for every CNN, or CNN=N,... (default DEFAULT_ROWS)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--budgets", default=",".join(f"{b:g}" for b in DEFAULT_BUDGETS))
    parser.add_argument("--budget-cnn", default="vgg16")
    parser.add_argument("--budget-rows", type=int, default=64)
    parser.add_argument("--budget-all", action="store_true", help="rerun methods that finished")
    parser.add_argument("--no-budgets", action="store_true")
    parser.add_argument("--no-runtime", action="store_true", help="the budget ladder only")
    parser.add_argument("--naive-memory", choices=("guide", "default"), default="guide")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    parser.add_argument("--data", default="/tmp/vista_headline_data")
    parser.add_argument("--scratch", default=None, help="directory for per-run files")
    parser.add_argument("--results", default=str(RESULTS / "headline"), help="path stem")
    args = parser.parse_args()
    cnns = [c for c in args.cnn.split(",") if c]
    plan = Plan(
        cnns=cnns,
        rows=parse_rows(args.rows, cnns),
        repeat=0 if args.no_runtime else args.repeat,
        budgets=[] if args.no_budgets else [float(b) for b in args.budgets.split(",") if b],
        budget_cnns=[c for c in args.budget_cnn.split(",") if c],
        budget_rows=args.budget_rows,
        budget_all=args.budget_all,
        methods=tuple(m for m in METHODS if m in args.methods.split(",")),
    )
    started = time.time()
    load_before = os.getloadavg()
    records = run_all(plan, args)
    summary = summarize(records)
    print()
    print(text_tables(summary))
    stem = Path(args.results)
    stem.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "seconds": round(time.time() - started, 1),
        "versions": {p: version(p) for p in ("tensorflow-cpu", "keras", "pyspark")},
        "plan": asdict(plan),
        "summary": summary,
        "records": records,
    }
    stem.with_suffix(".json").write_text(json.dumps(document, indent=1, default=str) + "\n")
    plot(summary, stem.with_suffix(".png"))
    print(f"\nwrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    if summary["mismatches"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
