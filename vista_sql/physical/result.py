"""What ``vista_sql.execute`` returns for a TRANSFER statement, and what INTO writes.

INTO '<dir>' writes, per layer, ``<dir>/<layer>/features.parquet`` (``id``, ``label``, ``features``:
the structured features followed by the CNN features, as one vector) and ``<dir>/<layer>/model``
(Spark ML format), plus ``<dir>/report.json`` and ``<dir>/metrics.png``. Everything is written under
a temporary sibling directory that is renamed into place only when the statement succeeded, so an
interrupted run never leaves a directory that looks complete. A marker file, ``OUTPUT_MARKER``,
is written last; ``WITH (overwrite = true)`` replaces only a directory that has it (and a
report.json), never one vista_sql did not write, and follows no symbolic link.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vista_sql.cost_model.explain import explain_json, explain_text
from vista_sql.errors import VistaError
from vista_sql.logical.query import TransferQuery
from vista_sql.physical.analyze import analyze_json, analyze_text
from vista_sql.physical.executor import LayerRun, RunOutcome
from vista_sql.physical.monitor import MemorySample

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from pyspark.sql import DataFrame

    from vista_sql.cost_model.optimizer import Decision
    from vista_sql.physical.cluster import ExecutorPeak
    from vista_sql.physical.features import LayerFeatures
    from vista_sql.physical.oom import Replan

METRICS = ("accuracy", "f1", "auc")


@dataclass
class TransferResult:
    """The outcome of one TRANSFER FEATURES statement; layers are listed top layer first."""

    query: TransferQuery
    runs: list[LayerRun]
    skipped_images: list[Any] = field(default_factory=list)
    unmatched: dict[str, int] = field(default_factory=lambda: {"images": 0, "table": 0})
    unnamed_files: tuple[str, ...] = ()
    """Image files not named by an id, skipped under on_bad_image = 'skip'."""
    other_files: tuple[str, ...] = ()
    """Files of the image directory that are not images (another extension, or hidden)."""
    seconds: float = 0.0
    peak_memory: MemorySample | None = None
    advice: list[str] = field(default_factory=list)
    """Settings the optimizer chose that the user's own session does not have."""
    plan: str = ""
    spark_conf: dict[str, str] = field(default_factory=dict)
    """The Spark settings the plan was chosen with (the optimizer's, then the user's own)."""
    plan_choice: dict[str, Any] = field(default_factory=dict)
    """The chosen plan: its logical ``alternative`` and physical choices (join, persist, ...)."""
    mlflow_run_id: str | None = None
    """The MLflow run the statement was logged to (``vista_sql.tracking``), if it was."""
    into: str | None = None
    replanned: Replan | None = None
    """Set when a first plan ran out of memory and this result is the second plan's."""
    inferred_images: int | None = None
    """Images decoded and run through the CNN from their bytes, every pass counted (a plan that
    recomputes infers an image once per layer); layers read from the feature store count none.
    None where it cannot be counted (Spark Connect has no accumulators)."""
    search: list[dict[str, Any]] = field(default_factory=list)
    """``WITH (search = 'halving')``: every (layer, parameters) candidate's last fit: its
    ``round`` (the winner's fit on every row is the round after the last), ``train_rows``, its
    metrics and ``winner``."""
    store: dict[str, Any] = field(default_factory=dict)
    """What the feature store did: ``read`` (entries the plan read), ``written`` (entries this
    statement added), ``write_seconds``, ``failures`` (layers it could not write)."""
    _explain: Callable[[], str] | None = field(default=None, repr=False)
    _explain_json: Callable[[], dict[str, Any]] | None = field(default=None, repr=False)
    _features: LayerFeatures | None = field(default=None, repr=False)

    @property
    def models(self) -> dict[str, Any]:
        """The fitted Spark ML model of each layer."""
        return {run.layer: run.trained.model for run in self.runs}

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for run in self.runs:
            row: dict[str, Any] = {"layer": run.layer, "n_features": run.n_features}
            row.update({m: run.trained.metrics.get(m) for m in METRICS})
            row.update(
                {
                    "inference_seconds": run.inference_seconds,
                    "train_seconds": run.trained.train_seconds,
                    "train_rows": run.trained.train_rows,
                    "validation_rows": run.trained.validation_rows,
                }
            )
            if run.trained.best_params and self.query.model.grid:
                row["best_params"] = json.dumps(run.trained.best_params, sort_keys=True)
            if self.search:  # how far the layer's best candidate went, and whether it won
                mine = [fit for fit in self.search if fit["layer"] == run.layer]
                row["search_round"] = max(fit["round"] for fit in mine)
                row["winner"] = any(fit["winner"] for fit in mine)
            rows.append(row)
        return rows

    def to_pandas(self) -> pd.DataFrame:
        """One row per layer: layer, n_features, accuracy, f1, auc (binary labels), seconds, ..."""
        import pandas as pd

        frame = pd.DataFrame(self.rows())
        if frame["auc"].isna().all():
            frame = frame.drop(columns=["auc"])
        return frame

    @property
    def best(self) -> pd.Series:
        """The row of the layer with the best validation accuracy (then F1, then the top layer);
        after a successive-halving search, the winner's layer."""
        frame = self.to_pandas()
        winner = next((fit["layer"] for fit in self.search if fit["winner"]), None)
        if winner is not None:
            return frame[frame["layer"] == winner].iloc[0]
        order = sorted(
            range(len(frame)),
            key=lambda i: (-frame["accuracy"][i], -(frame["f1"][i] or 0.0), i),
        )
        return frame.iloc[order[0]]

    def explained_by(
        self,
        decision: Decision,
        outcome: RunOutcome,
        order: list[str],
        executors: list[ExecutorPeak] | None = None,
    ) -> None:
        """Keep what ``explain()`` and ``explain_json()`` need once the run is over: the
        optimizer's ``decision`` (its EXPLAIN becomes ``plan``), what ran (``outcome``), the
        layers bottom up (``order``) and, on a cluster, each executor's peak memory
        (``executors``). EXPLAIN ANALYZE is drawn only when asked."""
        self.plan = explain_text(decision)
        chosen = decision.chosen.plan
        self._explain = lambda: analyze_text(
            decision, self.plan, chosen, outcome, order, self.seconds, self.peak_memory, executors
        )
        self._explain_json = lambda: analyze_json(
            decision,
            explain_json(decision),
            chosen,
            outcome,
            order,
            self.seconds,
            self.peak_memory,
            executors,
        )

    def serve_features(self, features: LayerFeatures) -> None:
        """Where ``features()`` reads each layer from (the run sets it once it is over)."""
        self._features = features

    def features(self, layer: str) -> DataFrame:
        """The layer's features as a Spark DataFrame: ``id``, ``label``, the structured feature
        columns, and ``features`` (the layer's CNN features, an ML vector), one row per training
        row (joined, decoded) of the statement.

        Read back from what the run wrote (INTO TABLE, INTO, the feature store); inference runs
        again only when none of them holds the layer (see :mod:`vista_sql.physical.features`).
        """
        from vista_sql.errors import SemanticError, did_you_mean

        layers = {run.layer.lower(): run.layer for run in self.runs}
        found = layers.get(layer.lower())
        if found is None:
            choices = did_you_mean(layer, list(layers.values()))
            raise SemanticError(f"the statement computed no layer {layer}; {choices}")
        if self._features is None:
            raise VistaError("this result holds no features (it was not produced by a run)")
        return self._features.frame(found)

    def register_views(self, prefix: str) -> dict[str, str]:
        """Register ``features(layer)`` of every layer as the temporary view ``<prefix>_<layer>``
        in the session that ran the statement; returns {layer: view name}, top layer first."""
        views = {}
        for run in self.runs:
            name = f"{prefix}_{run.layer}"
            self.features(run.layer).createOrReplaceTempView(name)
            views[run.layer] = name
        return views

    def explain(self) -> str:
        """The plan that ran, with the optimizer's estimates beside what was measured (and, when
        a first plan ran out of memory, how this second one was made)."""
        text = self._explain() if self._explain is not None else self.plan
        if self.replanned is not None:
            text = f"{text.rstrip()}\n{self.replanned.describe()}\n"
        return text

    def explain_json(self) -> str:
        """``explain()`` as JSON text (EXPLAIN ANALYZE FORMAT JSON)."""
        document = self._explain_json() if self._explain_json is not None else {}
        if self.replanned is not None:
            document["replanned"] = self.replanned.to_json()
        return json.dumps(document, indent=2, sort_keys=True, default=str)

    def table(self) -> str:
        """The per-layer table as aligned text (what the command line prints)."""
        frame = self.to_pandas()
        shown = frame.drop(columns=[c for c in ("train_rows", "validation_rows") if c in frame])
        return shown.to_string(index=False, float_format=lambda x: f"{x:.4f}")

    def report(self) -> dict[str, Any]:
        """Everything a reader of report.json needs, JSON-ready."""
        return {
            "statement": self.query.sql.strip(),
            "cnn": self.query.cnn,
            "weights": self.query.weights.describe(),
            "model": self.query.model.describe(),
            "label": self.query.label,
            "layers": self.rows(),
            "best_layer": str(self.best["layer"]),
            "skipped_images": [str(k) for k in self.skipped_images],
            "unmatched": self.unmatched,
            "unnamed_files": list(self.unnamed_files),
            "other_files": list(self.other_files),
            "seconds": round(self.seconds, 3),
            "peak_memory_bytes": None if self.peak_memory is None else self.peak_memory.total,
            "inferred_images": self.inferred_images,
            "search": self.search,
            "spark_advice": self.advice,
            "replanned": None if self.replanned is None else self.replanned.to_json(),
        }

    def plot(self) -> Figure:
        """The validation metrics by layer, bottom layer on the left, as a matplotlib Figure.

        Built as a ``matplotlib.figure.Figure``, not with pyplot: the user's backend and pyplot's
        current figure stay as they were; a notebook shows it inline (``physical.figure``).
        """
        from vista_sql.physical.figure import NotebookFigure

        frame = self.to_pandas().iloc[::-1]
        figure = NotebookFigure(figsize=(6, 3.5), layout="tight")
        axes = figure.add_subplot()
        for metric in METRICS:
            if metric in frame and frame[metric].notna().any():
                axes.plot(frame["layer"], frame[metric], marker="o", label=metric)
        axes.set_xlabel(f"{self.query.cnn} layer")
        axes.set_ylabel("validation metric")
        axes.set_title(f"{self.query.model.name} on structured + CNN features")
        axes.grid(alpha=0.3)
        axes.legend()
        return figure

    def _repr_html_(self) -> str:
        """The per-layer table and a one-line summary, for notebooks."""
        frame = self.to_pandas()
        shown = frame.drop(columns=[c for c in ("train_rows", "validation_rows") if c in frame])
        table = shown.to_html(index=False, float_format=lambda x: f"{x:.4f}", na_rep="-")
        layers = ", ".join(run.layer for run in self.runs)
        summary = (
            f"<b>TRANSFER FEATURES</b> {html.escape(self.query.cnn)} ({html.escape(layers)}),"
            f" {html.escape(self.query.model.name)}: best layer"
            f" <b>{html.escape(str(self.best['layer']))}</b>, {self.seconds:.1f} s"
        )
        notes = []
        if self.unmatched.get("images") or self.unmatched.get("table"):
            notes.append(
                f"unmatched keys: {self.unmatched.get('images', 0)} images,"
                f" {self.unmatched.get('table', 0)} table rows"
            )
        if self.skipped_images:
            notes.append(f"{len(self.skipped_images)} images skipped")
        extra = "".join(f"<br><i>{html.escape(note)}</i>" for note in notes)
        return f'<div class="vista-sql-result"><p>{summary}{extra}</p>{table}</div>'

    def __repr__(self) -> str:
        return f"TransferResult({self.query.cnn}, layers={[r.layer for r in self.runs]})"

    def __str__(self) -> str:
        return self.table()


OUTPUT_MARKER = ".vista_sql_output.json"
"""Written last into every INTO directory (after report.json and the plot): what marks a directory
as vista_sql's, the only kind ``overwrite = true`` replaces."""


def staging_directory(target: str, overwrite: bool, query: TransferQuery | None = None) -> str:
    """A fresh temporary sibling of ``target`` to write into; refuses to clobber ``target``.

    An existing ``target`` is replaced only with ``overwrite`` and only when vista_sql wrote it
    (:func:`is_vista_output`); a symbolic link is never followed, as the target or inside it.
    Refusals point at the INTO clause of ``query``.
    """
    target = os.path.abspath(target)
    if os.path.lexists(target):
        refusal = replace_refusal(target, overwrite)
        if refusal is not None:
            origin = query.origins.get("into") if query is not None else None
            raise VistaError.at(refusal, query.sql if query is not None else None, origin)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{os.path.basename(target)}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    return staging


def replace_refusal(target: str, overwrite: bool) -> str | None:
    """Why the existing ``target`` may not be replaced, or None when it may."""
    if not overwrite:
        return (
            f"INTO '{target}' already exists; choose a new directory or add"
            " WITH (overwrite = true) to replace it"
        )
    if os.path.islink(target):
        return (
            f"INTO '{target}' is a symbolic link; vista_sql does not follow links in INTO"
            " targets: name the directory itself"
        )
    if not is_vista_output(target):
        return (
            f"INTO '{target}' exists and is not a directory vista_sql wrote (it has no"
            f" {OUTPUT_MARKER} beside a report.json); overwrite = true replaces only an earlier"
            " INTO's output: choose a new directory in INTO, or remove this one yourself"
        )
    return None


def is_vista_output(directory: str) -> bool:
    """Whether ``directory`` (not a link) holds a regular report.json and a regular marker file
    that says vista_sql wrote it. Nothing is followed: a link in its place does not count."""
    try:
        if not stat.S_ISDIR(os.lstat(directory).st_mode):
            return False
        marker = os.path.join(directory, OUTPUT_MARKER)
        report = os.path.join(directory, "report.json")
        if not all(stat.S_ISREG(os.lstat(path).st_mode) for path in (marker, report)):
            return False
        descriptor = os.open(marker, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(descriptor) as handle:
            found = json.loads(handle.read(4096))
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and found.get("written_by") == "vista_sql"


def write_marker(directory: str) -> None:
    """Mark ``directory`` as vista_sql's output; call it after everything else is written."""
    from vista_sql import __version__

    with open(os.path.join(directory, OUTPUT_MARKER), "w") as handle:
        json.dump({"written_by": "vista_sql", "version": __version__}, handle)
        handle.write("\n")


def publish(staging: str, target: str) -> None:
    """Move the finished ``staging`` directory to ``target``, replacing an earlier INTO output
    (checked again here: the directory may have changed while the statement ran)."""
    target = os.path.abspath(target)
    if os.path.lexists(target):
        refusal = replace_refusal(target, overwrite=True)
        if refusal is not None:
            raise VistaError(refusal)
        backup = f"{target}.old-{os.getpid()}"
        os.rename(target, backup)
        os.rename(staging, target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.rename(staging, target)


def write_layer(staging: str, run: LayerRun, table: Any, labels: tuple[Any, ...]) -> None:
    """One layer's feature table (id, label, features) and fitted model under ``staging``."""
    from pyspark.sql import functions as F

    from vista_sql.physical.sources import KEY
    from vista_sql.physical.train import FEATURES, LABEL

    directory = os.path.join(staging, run.layer)
    originals = F.array(*[F.lit(v) for v in labels])
    table.select(
        F.col(KEY).alias("id"),
        F.element_at(originals, F.col(LABEL).cast("int") + 1).alias("label"),
        F.col(FEATURES).alias("features"),
    ).write.parquet(os.path.join(directory, "features.parquet"))
    model: Any = run.trained.model
    model.save(os.path.join(directory, "model"))


def write_report(staging: str, result: TransferResult, *, marker: bool = True) -> None:
    """report.json and metrics.png (metrics by layer, bottom to top) under ``staging``, then
    (for an INTO directory) the marker that makes it replaceable by a later ``overwrite = true``."""
    with open(os.path.join(staging, "report.json"), "w") as handle:
        json.dump(result.report(), handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    plot_metrics(result, os.path.join(staging, "metrics.png"))
    if marker:
        write_marker(staging)


def plot_metrics(result: TransferResult, path: str) -> None:
    result.plot().savefig(path, dpi=120)
