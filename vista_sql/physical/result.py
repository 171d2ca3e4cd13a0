"""What ``vista_sql.execute`` returns for a TRANSFER statement, and what INTO writes.

INTO '<dir>' writes, per layer, ``<dir>/<layer>/features.parquet`` (``id``, ``label``, ``features``:
the structured features followed by the CNN features, as one vector) and ``<dir>/<layer>/model``
(Spark ML format), plus ``<dir>/report.json`` and ``<dir>/metrics.png``. Everything is written under
a temporary sibling directory that is renamed into place only when the statement succeeded, so an
interrupted run never leaves a directory that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vista_sql.errors import VistaError
from vista_sql.logical.query import TransferQuery
from vista_sql.physical.executor import LayerRun
from vista_sql.physical.monitor import MemorySample

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from vista_sql.physical.features import LayerFeatures

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
    into: str | None = None
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
        """The row of the layer with the best validation accuracy (then F1, then the top layer)."""
        frame = self.to_pandas()
        order = sorted(
            range(len(frame)),
            key=lambda i: (-frame["accuracy"][i], -(frame["f1"][i] or 0.0), i),
        )
        return frame.iloc[order[0]]

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
        """The plan that ran, with the optimizer's estimates beside what was measured."""
        return self._explain() if self._explain is not None else self.plan

    def explain_json(self) -> str:
        """``explain()`` as JSON text (EXPLAIN ANALYZE FORMAT JSON)."""
        document = self._explain_json() if self._explain_json is not None else {}
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
            "spark_advice": self.advice,
        }

    def __repr__(self) -> str:
        return f"TransferResult({self.query.cnn}, layers={[r.layer for r in self.runs]})"

    def __str__(self) -> str:
        return self.table()


def staging_directory(target: str, overwrite: bool) -> str:
    """A fresh temporary sibling of ``target`` to write into; refuses to clobber ``target``."""
    target = os.path.abspath(target)
    if os.path.exists(target) and not overwrite:
        raise VistaError(
            f"INTO '{target}' already exists; choose a new directory or add "
            "WITH (overwrite = true) to replace it"
        )
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{os.path.basename(target)}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    return staging


def publish(staging: str, target: str) -> None:
    """Move the finished ``staging`` directory to ``target`` (replacing it when allowed)."""
    target = os.path.abspath(target)
    if os.path.exists(target):
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


def write_report(staging: str, result: TransferResult) -> None:
    """report.json and metrics.png (metrics by layer, bottom to top) under ``staging``."""
    with open(os.path.join(staging, "report.json"), "w") as handle:
        json.dump(result.report(), handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    plot_metrics(result, os.path.join(staging, "metrics.png"))


def plot_metrics(result: TransferResult, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = result.to_pandas().iloc[::-1]  # bottom layer on the left
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for metric in METRICS:
        if metric in frame and frame[metric].notna().any():
            axes.plot(frame["layer"], frame[metric], marker="o", label=metric)
    axes.set_xlabel(f"{result.query.cnn} layer")
    axes.set_ylabel("validation metric")
    axes.set_title(f"{result.query.model.name} on structured + CNN features")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
