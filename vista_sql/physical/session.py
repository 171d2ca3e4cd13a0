"""The SparkSession vista_sql creates and configures, or the user's own.

vista_sql owns at most one session per process. Settings that only take effect when the JVM starts
(heap size, task slots) cannot be changed on a running session: when a statement's chosen
configuration differs in those, the owned session is stopped and a new one started. A session the
user passes in is never reconfigured; the chosen settings are reported as advice instead.

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
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.python.worker.reuse": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.warehouse.dir": os.path.join(os.getcwd(), "spark-warehouse"),
    "spark.driver.extraJavaOptions": "-Dlog4j2.configurationFile="
    + os.path.join(os.path.dirname(__file__), "log4j2.properties"),
}
"""What every session vista_sql starts has, whatever the optimizer chose."""

TASK_ATTEMPTS = 2
"""Attempts per task in the owned local session (Spark's spark.task.maxFailures; local mode
ignores that setting and reads ``local[N,F]`` instead): one retry after a lost Python worker."""

_owned: SparkSession | None = None
_owned_conf: dict[str, str] = {}
_connected: Any = None
"""The Spark Connect session vista_sql opened for a ``sc://`` master (released at exit: its
client's threads would otherwise keep the interpreter from exiting)."""


def worker_environment() -> None:
    """Make Spark's Python workers run this interpreter (the venv's), quietly, on loopback."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")


def owned_session(conf: Mapping[str, str], master: str | None = None) -> SparkSession:
    """vista_sql's own session with ``conf`` applied, restarting it if a static setting changed."""
    global _owned, _owned_conf
    from pyspark.sql import SparkSession

    wanted = {**BASE_CONF, **conf}
    if master is not None:
        wanted["spark.master"] = master
    wanted.setdefault("spark.master", "local[*]")
    wanted["spark.master"] = with_task_retries(wanted["spark.master"])
    wanted["spark.pyspark.python"] = sys.executable
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
    worker_environment()
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


def _set_runtime(session: SparkSession, key: str, value: str) -> None:
    """Set a runtime SQL setting; core settings of a running context are left as they are."""
    try:
        session.conf.set(key, value)
    except Exception:  # Spark refuses to modify non-SQL settings at runtime: they keep their value
        log.debug("setting %s cannot change on a running session", key)


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


def cluster_conf(conf: Mapping[str, str], master: str) -> dict[str, str]:
    """The chosen local-mode settings restated for a standalone cluster at ``master``: one
    executor with the chosen heap and task slots."""
    adapted = {k: v for k, v in conf.items() if k != "spark.master"}
    slots = conf.get("spark.master", "local[1]").removeprefix("local[").rstrip("]")
    if master.startswith("spark://") and slots.isdigit():
        adapted["spark.executor.cores"] = slots
        adapted["spark.cores.max"] = slots
        adapted["spark.executor.memory"] = conf.get("spark.driver.memory", "1g")
    return adapted


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
