"""vista_sql errors raised inside Spark's Python workers, raised again on the driver as themselves.

A :class:`~vista_sql.errors.VistaError` raised in a worker (a weights file that does not fit the
CNN, say) reaches the driver as a Spark exception whose text holds the worker's Python traceback,
pages of JVM stack around one useful line. The user should see the error itself: its class and
message are read back from the traceback's last ``vista_sql...Error: message`` line and raised
again, chained to the Spark exception for whoever wants the rest.
"""

from __future__ import annotations

import importlib
import re

from vista_sql.errors import VistaError
from vista_sql.logical.query import TransferQuery

_RAISED = re.compile(r"^(vista_sql(?:\.\w+)+)\.(\w+): (.*)$", re.MULTILINE)
"""A traceback's exception line for a class defined in vista_sql: module, class, message."""

_JVM_STACK = re.compile(r"^(\s+at \S|JVM stacktrace:|\S+Exception: |Caused by: )", re.MULTILINE)
"""Where the worker's message ends and Spark's JVM stack begins, if it follows."""

_SHIPPED = re.compile(r"'[^']*/vista-[0-9a-f]{16}-[^'/]*'")
"""A weights file as a worker sees it: the name ``udfs.spark_infer.ship_file`` gave it."""


def worker_error(error: BaseException) -> VistaError | None:
    """The vista_sql error a Spark exception carries from a Python worker, if it carries one."""
    found = None
    for match in _RAISED.finditer(str(error)):
        found = match
    if found is None:
        return None
    module, name, first = found.groups()
    rest = str(error)[found.end() :]
    stack = _JVM_STACK.search(rest)
    message = (first + (rest[: stack.start()] if stack else rest)).strip()
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    if not (isinstance(cls, type) and issubclass(cls, VistaError)):
        return None
    raised: VistaError = cls(message)
    return raised


def raise_worker_error(error: BaseException, query: TransferQuery | None = None) -> None:
    """Raise the vista_sql error inside ``error`` (from a Spark action) if there is one.

    With ``query``, a weights error names the user's file (not the executor's copy of it) and
    points at the WEIGHTS clause.
    """
    from vista_sql.udfs.weights import WeightsError

    if isinstance(error, VistaError):
        return
    translated = worker_error(error)
    if translated is None:
        return
    if query is not None and isinstance(translated, WeightsError):
        message = str(translated)
        if query.weights.path is not None:
            message = _SHIPPED.sub(f"'{query.weights.path}'", message)
        translated = WeightsError.at(message, query.sql, query.origins.get("weights"))
    raise translated from error
