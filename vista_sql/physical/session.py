"""The SparkSession vista_sql creates and configures, or the user's own.

vista_sql owns at most one session per process. Settings that only take effect when the JVM starts
(heap size, task slots) cannot be changed on a running session: when a statement's chosen
configuration differs in those, the owned session is stopped and a new one started. A session the
user passes in is never reconfigured; the chosen settings are reported as advice instead.

Masters: in local mode the driver and its executor threads are one process, bound to loopback.
On a cluster (``spark://``, ``yarn``, ``k8s://``) nothing is bound to loopback: the driver's
address is Spark's own setting (``spark.driver.host``, else ``SPARK_LOCAL_IP``), else the address
of the interface that routes to a standalone master (the source address the kernel picks for
it), else Spark's default. Workers run ``spark.pyspark.python`` / ``PYSPARK_PYTHON`` when set;
otherwise this interpreter's path, which must then exist on every worker host (docs/cluster.md
says how to ship a packed environment with ``spark.archives`` instead). A script started by
``spark-submit`` runs on the master in its submitted configuration.

Faults: Spark's local mode runs each task once unless the master says otherwise, so the owned
session's master is ``local[N,TASK_ATTEMPTS]``: a Python worker that dies in the middle of
inference (killed, out of memory) costs a retry of its task, not the statement. The owned session
is stopped when the interpreter exits, also after Ctrl-C, so no JVM or Python worker outlives it.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STATIC_KEYS = frozenset(
    {
        "spark.master",
        "spark.driver.memory",
        "spark.executor.memory",
        "spark.executor.cores",
        "spark.executor.instances",
        "spark.cores.max",
        "spark.memory.fraction",
        "spark.memory.storageFraction",
        "spark.memory.offHeap.enabled",
        "spark.memory.offHeap.size",
        "spark.executor.memoryOverhead",
        "spark.executor.pyspark.memory",
        "spark.python.worker.reuse",
        "spark.task.cpus",
        "spark.driver.maxResultSize",
    }
)
"""Settings read when the JVM or an executor starts; changing them needs a new session."""

BASE_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.python.worker.reuse": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.warehouse.dir": os.path.join(os.getcwd(), "spark-warehouse"),
    "spark.driver.extraJavaOptions": "-Dlog4j2.configurationFile="
    + os.path.join(os.path.dirname(__file__), "log4j2.properties"),
}
"""What every session vista_sql starts has, whatever the optimizer chose."""

LOOPBACK = "127.0.0.1"
"""The driver's address in local mode only: no executor on another host has to reach it."""

LOCAL_MASTER = re.compile(r"local(\[.*\])?|local-cluster\[.*\]")
"""Masters whose executors all run on this machine."""

TASK_ATTEMPTS = 2
"""Attempts per task in the owned local session (Spark's spark.task.maxFailures; local mode
ignores that setting and reads ``local[N,F]`` instead): one retry after a lost Python worker."""

_owned: SparkSession | None = None
_owned_conf: dict[str, str] = {}
_connected: Any = None
"""The Spark Connect session vista_sql opened for a ``sc://`` master (released at exit: its
client's threads would otherwise keep the interpreter from exiting)."""


def is_local(master: str) -> bool:
    """Whether ``master`` runs every executor on this machine (``local``, ``local[N]``, ...)."""
    return LOCAL_MASTER.fullmatch(master.strip()) is not None


def worker_environment(master: str = "local") -> None:
    """Environment for Spark's launcher and Python workers, quietly.

    In local mode the workers run this interpreter (the venv's) and the JVM binds to loopback.
    On a cluster a ``PYSPARK_PYTHON`` the user set is kept (it names the workers' Python) and no
    address is forced.
    """
    if is_local(master):
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
    else:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")


def master_endpoint(master: str) -> tuple[str, int] | None:
    """(host, port) of a standalone master URL (the first of a list); None for other masters."""
    if not master.startswith("spark://"):
        return None
    first = master.removeprefix("spark://").split(",")[0]
    host, _, port = first.rpartition(":")
    if not host:
        host, port = first, "7077"
    return host.strip("[]"), int(port or 7077)


def route_source(host: str, port: int) -> str:
    """The local address the kernel would send from to reach ``host:port`` (no packet is sent:
    connecting a UDP socket only chooses the route)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))
        return str(probe.getsockname()[0])


def driver_conf(master: str, conf: Mapping[str, str]) -> dict[str, str]:
    """``spark.driver.host`` / ``bindAddress`` for ``master``, unless ``conf`` already says.

    Local mode: loopback. A standalone master: ``SPARK_LOCAL_IP`` when set (Spark's own
    setting), else the interface that routes to the master. YARN and Kubernetes: Spark's default
    (its host name resolution), nothing added.
    """
    if "spark.driver.host" in conf:
        return {}
    if is_local(master):
        return {"spark.driver.host": LOOPBACK, "spark.driver.bindAddress": LOOPBACK}
    given = os.environ.get("SPARK_LOCAL_IP")
    if given and not _loopback(given):  # a loopback one is left from local mode: no use here
        return {"spark.driver.host": given}
    endpoint = master_endpoint(master)
    if endpoint is None:
        return {}
    try:
        return {"spark.driver.host": route_source(*endpoint)}
    except OSError as error:
        log.warning("no route to the master %s (%s): Spark picks the driver address", master, error)
        return {}


def _loopback(address: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def python_conf(master: str, conf: Mapping[str, str]) -> dict[str, str]:
    """``spark.pyspark.python`` for the workers: this interpreter in local mode; on a cluster
    the one ``conf`` or ``PYSPARK_PYTHON`` names, else this interpreter's path (the same path
    must then exist on every worker host)."""
    if is_local(master):
        return {"spark.pyspark.python": sys.executable}
    if "spark.pyspark.python" in conf:
        return {}
    return {"spark.pyspark.python": os.environ.get("PYSPARK_PYTHON") or sys.executable}


def submitted_conf() -> dict[str, str]:
    """The configuration of a script started by ``spark-submit`` (its JVM is already running,
    with the submitted settings, the master among them, as system properties); else empty."""
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return {}
    from pyspark import SparkConf, SparkContext

    # Until the gateway to spark-submit's JVM is open, SparkConf is an empty Python dict.
    SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())


def owned_session(conf: Mapping[str, str], master: str | None = None) -> SparkSession:
    """vista_sql's own session with ``conf`` applied, restarting it if a static setting changed."""
    global _owned, _owned_conf
    from pyspark.sql import SparkSession

    wanted = {**BASE_CONF, **conf}
    if master is None:
        master = submitted_conf().get("spark.master")
    if master is not None:
        wanted["spark.master"] = master
    wanted.setdefault("spark.master", "local[*]")
    wanted["spark.master"] = with_task_retries(wanted["spark.master"])
    wanted.update(driver_conf(wanted["spark.master"], wanted))
    wanted.update(python_conf(wanted["spark.master"], wanted))
    static = {k: v for k, v in wanted.items() if k in STATIC_KEYS}
    if _owned is not None and _alive(_owned):
        if {k: v for k, v in _owned_conf.items() if k in STATIC_KEYS} == static:
            for key, value in wanted.items():
                if key not in STATIC_KEYS and _owned_conf.get(key) != value:
                    _set_runtime(_owned, key, value)
            _owned_conf = wanted
            return _owned
        log.info("restarting vista_sql's Spark session for new static settings")
        _owned.stop()
        _owned = None
    worker_environment(wanted["spark.master"])
    builder = SparkSession.builder.appName("vista_sql")
    for key, value in wanted.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    _owned, _owned_conf = session, wanted
    return session


def with_task_retries(master: str) -> str:
    """``local`` / ``local[N]`` / ``local[*]`` as ``local[N,TASK_ATTEMPTS]``; others unchanged."""
    if master == "local":
        return f"local[1,{TASK_ATTEMPTS}]"
    match = re.fullmatch(r"local\[(\d+|\*)\]", master)
    return f"local[{match.group(1)},{TASK_ATTEMPTS}]" if match else master


def _set_runtime(session: SparkSession, key: str, value: str) -> bool:
    """Set a runtime SQL setting (whether Spark took it); core settings of a running context
    are left as they are."""
    try:
        session.conf.set(key, value)
    except Exception:  # Spark refuses to modify non-SQL settings at runtime: they keep their value
        log.debug("setting %s cannot change on a running session", key)
        return False
    return True


RUNTIME_SQL = "spark.sql."
"""Settings Spark lets a running session change (its runtime SQL settings)."""


@contextmanager
def statement_settings(session: SparkSession, conf: Mapping[str, str]) -> Any:
    """The runtime SQL settings of ``conf`` (the plan's, the user's over them) on ``session``
    while vista_sql runs a statement on it, each restored after (or unset again). Yields the
    keys changed.

    A user's session (a notebook's, a Connect server's) keeps its own settings, and the plan was
    costed with its own: Spark's default 200 shuffle partitions made a join of stored features
    with the structured table run 200 tasks and shuffle the features once more to return to the
    plan's partitions (2-3 s a layer for 330 rows), the default 4 MB open cost read 2,200 small
    images in 69 tasks, and the default Arrow batch of 10,000 rows would feed the CNN far more
    images at once than the memory model allows. Settings Spark cannot change on a running
    session stay advice (``advice``)."""
    changed: dict[str, str | None] = {}
    for key, value in conf.items():
        if key.startswith(RUNTIME_SQL):
            before = _setting(session, key)
            # a setting Spark refused stays advice and is not restored
            if before != value and _set_runtime(session, key, value):
                changed[key] = before
    try:
        yield frozenset(changed)
    finally:
        for key, before in changed.items():
            if before is None:
                session.conf.unset(key)
            else:
                _set_runtime(session, key, before)


def _alive(session: SparkSession) -> bool:
    if is_connect(session):
        return not bool(getattr(session, "is_stopped", False))
    context = session.sparkContext
    return getattr(context, "_jsc", None) is not None


def foreign_active_session() -> SparkSession | None:
    """A session someone else started in this process: vista_sql must use it, not start one."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None or active is _owned or not _alive(active):
        return None
    return active


def _setting(session: SparkSession, key: str) -> str | None:
    try:
        return session.conf.get(key, None)
    except Exception:  # Connect refuses to read some static JVM settings: report them unset
        log.debug("setting %s cannot be read from this session", key)
        return None


def is_connect(session: SparkSession) -> bool:
    """Whether ``session`` is a Spark Connect client session (``pyspark.sql.connect``)."""
    return type(session).__module__.startswith("pyspark.sql.connect")


CONNECT_CLIENT = ("grpc", "grpc_status", "google.rpc", "zstandard")
"""The modules pyspark's Spark Connect client needs (``pip install 'vista_sql[connect]'``)."""


def connect_session(url: str) -> SparkSession:
    """A Spark Connect session on the server at ``url`` (``sc://host:port``).

    vista_sql does not configure a Connect server: its JVM and executors started with their own
    settings, so the optimizer's choice is reported as advice, as for any user's session.
    """
    import importlib.util

    from vista_sql.errors import VistaError

    missing = [name for name in CONNECT_CLIENT if importlib.util.find_spec(name) is None]
    if missing:
        raise VistaError(
            f"Spark Connect ({url}) needs the modules {', '.join(missing)}: "
            "pip install 'vista_sql[connect]'"
        )
    from pyspark.sql import SparkSession

    global _connected
    worker_environment()
    if _connected is None or _connected.is_stopped:
        _connected = SparkSession.builder.remote(url).getOrCreate()
    return _connected


def stop_owned_session() -> None:
    """Stop vista_sql's own session and release its Connect session (also at exit)."""
    global _owned, _owned_conf, _connected
    if _owned is not None:
        _owned.stop()
    if _connected is not None:
        _connected.stop()
    _owned, _owned_conf, _connected = None, {}, None


atexit.register(stop_owned_session)


def advice(session: SparkSession, conf: Mapping[str, str]) -> list[str]:
    """The chosen settings the user's own session does not have, as lines of advice.

    Read through ``session.conf`` (the DataFrame API's view of the settings, which also shows
    the context's), not ``sparkContext.getConf()``: a Spark Connect session has no context.
    """
    lines = []
    for key, value in sorted(conf.items()):
        current = _setting(session, key)
        if current != value:
            lines.append(
                f"{key}={value} (session has {current if current is not None else 'unset'})"
            )
    return lines
