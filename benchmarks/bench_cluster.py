"""The same statement in local mode and on a two-host standalone cluster with the same total cores.

    sudo python benchmarks/bench_cluster.py [--rows 2000] [--cnn alexnet] [--layers ...]

The cluster is the tests' (``tests/netns_cluster.py``): a master and two 1-core workers (each
offering ``--worker-memory``, 6 GiB by default: like local mode's, the plan's heap is then not cut
short by the node), each in its own network namespace and memory cgroup, the driver in the root
namespace; local mode is ``local[2]``. Each statement runs in a driver process of its own
(``tests/cluster_script.py``); the time compared is the statement's own (``result.seconds``: from
the first read to the last layer's metrics, excluding JVM start-up), with its stages. Metrics must
be identical (checked). Memory per node: each worker's cgroup peak, each executor's peak from
Spark's executor metrics, and the cost model's per-node estimate. Target: cluster / local <= 1.15
on AlexNet, 2,000 rows. Writes ``benchmarks/results/cluster.json`` and ``cluster.png`` and prints
a table. Needs root (network namespaces, cgroups).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
RESULTS = REPO / "benchmarks" / "results"
SCRIPT = REPO / "tests" / "cluster_script.py"
MiB = 2**20


def run(env: dict[str, str], arguments: list[str], master: str) -> tuple[dict[str, Any], float]:
    import subprocess

    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments, "--master", master],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - started
    found = [line for line in done.stdout.splitlines() if line.startswith("VISTA_RESULT ")]
    if not found:
        raise RuntimeError(f"the statement failed on {master}:\n{done.stderr[-4000:]}")
    return json.loads(found[-1].removeprefix("VISTA_RESULT ")), wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--cnn", default="alexnet")
    parser.add_argument("--layers", default="conv5, fc6, fc7, fc8")
    parser.add_argument("--name", default="cluster")
    parser.add_argument(
        "--worker-memory", type=int, default=6144, help="MiB each worker offers (its cgroup: +768)"
    )
    args = parser.parse_args()

    from netns_cluster import netns_cluster, unavailable_reason

    from vista_sql.datasets.foods import make_foods

    reason = unavailable_reason()
    if reason is not None:
        print(f"bench_cluster: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="vista-bench-cluster-") as scratch:
        work = Path(scratch)
        data = make_foods(work / "foods", rows=args.rows, seed=0, image_size=227)
        arguments = [
            "--images", str(data.images_dir), "--table", str(data.table_path),
            "--cache", str(work / "cache"), "--cnn", args.cnn, "--layers", args.layers,
        ]  # fmt: skip
        (work / "cluster").mkdir()
        with netns_cluster(work / "cluster", worker_memory_mb=args.worker_memory) as cluster:
            env = {**cluster.env, "PYSPARK_PYTHON": sys.executable, "VISTA_SQL_CACHE": "0"}
            local, local_wall = run(env, arguments, "local[2]")
            for worker in cluster.workers:
                assert worker.group is not None
                (worker.group.path / "memory.max_usage_in_bytes").write_text("0")
            on_cluster, cluster_wall = run(env, arguments, cluster.master_url)
            cgroups = {
                w.address: {"peak_bytes": w.group.peak_bytes, "limit_bytes": w.group.limit_bytes}
                for w in cluster.workers
                if w.group is not None
            }
    if on_cluster["metrics"] != local["metrics"]:
        raise RuntimeError("the cluster's metrics differ from local mode's")
    estimate = on_cluster["analyze"]["peak_memory_bytes"]["estimated"]["value"]
    executors = {e["host"]: e for e in on_cluster["analyze"]["executors"]}
    report = {
        "rows": args.rows,
        "cnn": args.cnn,
        "layers": args.layers,
        "local": {"seconds": local["seconds"], "wall_seconds": local_wall},
        "cluster": {"seconds": on_cluster["seconds"], "wall_seconds": cluster_wall},
        "ratio": on_cluster["seconds"] / local["seconds"],
        "worker_memory_mb": args.worker_memory,
        "stages": {
            "local": stage_times(local),
            "cluster": stage_times(on_cluster),
        },
        "per_node_estimate_bytes": estimate,
        "nodes": {
            host: {**cgroups[host], "executor": executors.get(host)} for host in sorted(cgroups)
        },
        "metrics": on_cluster["metrics"],
        "resources": on_cluster["resources"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(
        f"{args.cnn} {args.layers}, {args.rows} rows; local[2] vs 2 workers x 1 core\n\n"
        f"{'run':<10} {'statement s':>12} {'wall s':>8}\n"
        f"{'local':<10} {local['seconds']:>12.1f} {local_wall:>8.1f}\n"
        f"{'cluster':<10} {on_cluster['seconds']:>12.1f} {cluster_wall:>8.1f}\n"
        f"ratio cluster / local: {report['ratio']:.2f} (target <= 1.15)\n\n"
        f"{'node':<14} {'cgroup peak':>12} {'executor peak':>14} {'estimate':>9} {'peak/est':>9}"
    )
    for host, node in report["nodes"].items():
        peak = node["peak_bytes"] or 0
        executor = (node["executor"] or {}).get("peak_bytes") or 0
        print(
            f"{host:<14} {peak / MiB:>9.0f} MiB {executor / MiB:>10.0f} MiB"
            f" {estimate / MiB:>5.0f} MiB {peak / estimate:>9.2f}"
        )
    print(f"\n{'stage':<12} {'local s':>8} {'cluster s':>10}")
    for stage, seconds in report["stages"]["local"].items():
        print(f"{stage:<12} {seconds:>8.1f} {report['stages']['cluster'].get(stage, 0):>10.1f}")
    plot(report, RESULTS / f"{args.name}.png")
    return 0


def stage_times(result: dict[str, Any]) -> dict[str, float]:
    """Measured seconds per stage (inference, training, evaluation), summed over the layers."""
    sums: dict[str, float] = {}
    for row in result["analyze"]["stages"]:
        sums[row["stage"]] = sums.get(row["stage"], 0.0) + row["measured_seconds"]
    return sums


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (times, memory) = plt.subplots(1, 2, figsize=(10, 4))
    seconds = [report["local"]["seconds"], report["cluster"]["seconds"]]
    times.bar(["local[2]", "2 x 1 core"], seconds)
    times.set_ylabel("statement seconds")
    times.set_title(f"ratio {report['ratio']:.2f} ({report['rows']} rows, {report['cnn']})")
    hosts = list(report["nodes"])
    peaks = [(report["nodes"][h]["peak_bytes"] or 0) / MiB for h in hosts]
    memory.bar(hosts, peaks, label="worker cgroup peak")
    memory.axhline(report["per_node_estimate_bytes"] / MiB, color="k", ls="--", label="estimate")
    memory.set_ylabel("MiB")
    memory.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
