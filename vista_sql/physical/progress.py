"""A live progress display: layers done, the current stage, and Spark tasks of the running stage.

Shown only when asked for and standard error is a terminal or the code runs in a Jupyter kernel
(where rich draws the bars in an output widget: the ``notebook`` extra's ipywidgets); otherwise
every call is a no-op, so scripts, tests and pipes stay quiet. Spark tasks are counted from the
classic session's status tracker; a Spark Connect session has none, so there only layers and
stages show.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession


def in_jupyter() -> bool:
    """Whether this process is a Jupyter kernel (rich's own test: an IPython ZMQ shell)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ipython = shell.get_ipython()
    return ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell"


def _context(session: SparkSession | None) -> SparkContext | None:
    from vista_sql.physical.session import is_connect

    if session is None or is_connect(session):
        return None
    return session.sparkContext


class Progress:
    """``with Progress(session, layers, enabled) as p: p.stage("..."); p.layer_done()``."""

    def __init__(self, session: SparkSession | None, layers: int, enabled: bool) -> None:
        self.jupyter = in_jupyter()
        self.enabled = enabled and (self.jupyter or sys.stderr.isatty())
        self._context = _context(session) if self.enabled else None
        self._layers = layers
        self._bar: Any = None
        self._layer_task: Any = None
        self._task_task: Any = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console() if self.jupyter else Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        self._layer_task = self._bar.add_task("layers", total=self._layers)
        self._task_task = self._bar.add_task("starting", total=None)
        self._poller = threading.Thread(target=self._poll, name="vista-progress", daemon=True)
        self._poller.start()
        return self

    def _poll(self) -> None:
        """Show the tasks done of Spark's active stages (each task infers one partition)."""
        while not self._stop.wait(0.5):
            if self._context is None:
                continue
            tracker = self._context.statusTracker()
            done = total = 0
            for stage_id in tracker.getActiveStageIds():
                info = tracker.getStageInfo(stage_id)
                if info is not None:
                    done += info.numCompletedTasks
                    total += info.numTasks
            if total:
                self._bar.update(self._task_task, completed=done, total=total)

    def stage(self, description: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task_task, description=description, completed=0, total=None)

    def layer_done(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._layer_task)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        if self._bar is not None:
            self._bar.stop()
