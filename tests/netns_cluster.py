"""A real multi-host Spark standalone cluster on one machine: one Linux network namespace per host.

::

    root namespace (the driver)  198.18.K.1 on bridge vsbN
      |-- namespace vista-N-m    198.18.K.10  standalone master (port 7077, web UI 8080)
      |-- namespace vista-N-a    198.18.K.11  worker: 1 core, WORKER_MEMORY, own memory cgroup
      `-- namespace vista-N-b    198.18.K.12  worker: 1 core, WORKER_MEMORY, own memory cgroup

Each namespace is joined to a bridge in the root namespace by a veth pair, so the hosts reach each
other and the driver on one link, and no worker or master listens on loopback. The addresses are in
198.18.0.0/15, the block reserved for network benchmarking (RFC 2544). Master and workers are
started with ``bin/spark-class`` from pip's pyspark. :func:`netns_cluster` removes the processes (by
process group id), the cgroups, the namespaces and the bridge afterwards, also when starting failed
half way. Needs root and ``ip``; :func:`unavailable_reason` says why not, for a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vista_sql.physical.cgroup import MemoryCgroup
from vista_sql.physical.cgroup import unavailable_reason as cgroup_unavailable

WORKER_CORES = 1
WORKER_MEMORY_MB = 2560
"""What each worker offers executors (``--memory``): the node memory the plan is sized for."""
CGROUP_SLACK_BYTES = 768 * 2**20
"""The cgroup limit is the worker's memory plus this, for the Worker daemon's own JVM."""
MASTER_PORT = 7077
MASTER_UI_PORT = 8080


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    group: MemoryCgroup | None = None
    process: subprocess.Popen[bytes] | None = None


@dataclass
class NetnsCluster:
    master_url: str
    master_ui: str
    driver_address: str
    master: Host
    workers: list[Host]
    work: Path
    spark_home: str
    env: dict[str, str] = field(default_factory=dict)

    def executor_jvms(self, worker: Host) -> list[int]:
        """The executor JVMs running in ``worker``'s cgroup (not the Worker daemon)."""
        assert worker.group is not None
        found = []
        for pid in worker.group.processes():
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"CoarseGrainedExecutorBackend" in cmdline:
                    found.append(pid)
        return found

    def python_workers(self, worker: Host) -> list[int]:
        """Python processes in ``worker``'s cgroup (Spark's daemon and its workers)."""
        assert worker.group is not None
        found = []
        for pid in worker.group.processes():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip().startswith("python"):
                    found.append(pid)
        return found

    def status(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.master_ui}/json/", timeout=5) as page:
            return dict(json.load(page))


def unavailable_reason() -> str | None:
    """Why the namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to make network namespaces"
    reason = cgroup_unavailable()
    if reason is not None:
        return reason
    probe = f"vista-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, namespace: str | None = None) -> None:
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"{' '.join(command)}: {done.stderr.strip()}")


def _free_subnet() -> int:
    """A /24 of 198.18.0.0/16 no interface of this machine uses yet."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    start = os.getpid() % 200 + 20
    for offset in range(200):
        third = (start + offset) % 250 + 2
        if f"198.18.{third}." not in used:
            return third
    raise OSError("no free 198.18.x.0/24")


def _wait(what: str, check: object, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise TimeoutError(f"{what} within {timeout:.0f} s; log {log}:\n{tail}")
        time.sleep(1)


@contextlib.contextmanager
def netns_cluster(
    work: Path, worker_count: int = 2, worker_memory_mb: int = WORKER_MEMORY_MB
) -> Iterator[NetnsCluster]:
    """Start the cluster (each worker offering ``worker_memory_mb``), yield it, and remove
    everything (also on failure)."""
    from pyspark.find_spark_home import _find_spark_home

    spark_home = _find_spark_home()
    launcher = os.path.join(spark_home, "bin", "spark-class")
    tag = str(os.getpid() % 100000)
    third = _free_subnet()
    prefix = f"198.18.{third}"
    bridge = f"vsb{tag}"
    master = Host("master", f"vista-{tag}-m", f"{prefix}.10")
    workers = [
        Host(f"worker-{chr(97 + i)}", f"vista-{tag}-{chr(97 + i)}", f"{prefix}.{11 + i}")
        for i in range(worker_count)
    ]
    hosts = [master, *workers]
    namespaces: list[str] = []
    links: list[str] = []
    logs: list[object] = []
    base_env = {
        k: v for k, v in os.environ.items() if k not in ("SPARK_LOCAL_IP", "PYSPARK_GATEWAY_PORT")
    }
    base_env["SPARK_HOME"] = spark_home
    cluster = NetnsCluster(
        master_url=f"spark://{master.address}:{MASTER_PORT}",
        master_ui=f"http://{master.address}:{MASTER_UI_PORT}",
        driver_address=f"{prefix}.1",
        master=master,
        workers=workers,
        work=work,
        spark_home=spark_home,
        env=base_env,
    )

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(f"terminated by signal {signum}")  # so that the cleanup below runs

    previous = (
        signal.signal(signal.SIGTERM, terminated)
        if threading.current_thread() is threading.main_thread()
        else None
    )
    try:
        _ip("link", "add", bridge, "type", "bridge")
        links.append(bridge)
        _ip("addr", "add", f"{cluster.driver_address}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for index, host in enumerate(hosts):
            _ip("netns", "add", host.namespace)
            namespaces.append(host.namespace)
            outside, inside = f"vs{tag}h{index}", f"vs{tag}n{index}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            links.append(outside)
            _ip("link", "set", inside, "netns", host.namespace)
            _ip("link", "set", outside, "master", bridge)
            _ip("link", "set", outside, "up")
            _ip("link", "set", "lo", "up", namespace=host.namespace)
            _ip("addr", "add", f"{host.address}/24", "dev", inside, namespace=host.namespace)
            _ip("link", "set", inside, "up", namespace=host.namespace)

        def start(host: Host, argv: list[str]) -> None:
            log = open(work / f"{host.name}.log", "wb")  # noqa: SIM115
            logs.append(log)
            env = {**base_env, "SPARK_LOCAL_IP": host.address}
            command = ["ip", "netns", "exec", host.namespace, launcher, *argv]
            if host.group is not None:
                command = host.group.command(command)
            host.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

        start(
            master,
            [
                "org.apache.spark.deploy.master.Master",
                "--host",
                master.address,
                "--port",
                str(MASTER_PORT),
                "--webui-port",
                str(MASTER_UI_PORT),
            ],
        )
        _wait(
            "the master did not answer",
            lambda: cluster.status() is not None,
            90,
            work / "master.log",
        )
        for worker in workers:
            worker.group = MemoryCgroup.create(
                worker_memory_mb * 2**20 + CGROUP_SLACK_BYTES, name=f"vista-{tag}-{worker.name}"
            )
            start(
                worker,
                [
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    worker.address,
                    "--cores",
                    str(WORKER_CORES),
                    "--memory",
                    f"{worker_memory_mb}m",
                    "--work-dir",
                    str(work / worker.name),
                    cluster.master_url,
                ],
            )
        _wait(
            "the workers did not register",
            lambda: cluster.status().get("aliveworkers", 0) >= worker_count,  # type: ignore[operator]
            120,
            work / "worker-a.log",
        )
        yield cluster
    finally:
        for host in hosts:
            if host.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(host.process.pid, signal.SIGTERM)
        for host in hosts:
            if host.process is not None:
                try:
                    host.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(host.process.pid, signal.SIGKILL)
                    host.process.wait()
        for host in hosts:
            if host.group is not None:
                with contextlib.suppress(OSError):
                    host.group.remove()
        for namespace in namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        for link in links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for log in logs:
            log.close()  # type: ignore[attr-defined]
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
