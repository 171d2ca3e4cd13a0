"""Checked statements: what a parsed statement means, after every name and value was validated.

``vista_sql.logical.builder`` turns sqlglot trees into these values (raising ``SemanticError``s that
point at the text); the lazy logical plan, the cost model and the executor read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vista_sql.errors import Origin
from vista_sql.logical.plan import ModelSpec, SourceRef, WeightsSpec

Inference = Literal["lazy", "eager", "staged"]
Placement = Literal["before_join", "after_join"]
JoinStrategy = Literal["broadcast", "shuffle"]
StorageLevel = Literal["deserialized", "serialized", "disk"]


@dataclass(frozen=True, slots=True)
class Options:
    """The WITH clause. ``None`` means: not given, let the optimizer (or the machine) decide.

    Resources: ``memory`` and ``gpu_memory`` in bytes per node, ``cores`` per node, ``nodes``.
    Overrides of the optimizer's choices: ``inference``, ``placement``, ``join``, ``persist``,
    ``executor_cores``, ``partitions``, ``batch_size``.
    """

    memory: int | None = None
    cores: int | None = None
    nodes: int | None = None
    gpu_memory: int | None = None
    inference: Inference | None = None
    placement: Placement | None = None
    join: JoinStrategy | None = None
    persist: StorageLevel | None = None
    executor_cores: int | None = None
    partitions: int | None = None
    batch_size: int | None = None
    conv_pooling: str = "max2x2"
    on_bad_image: Literal["fail", "skip"] = "fail"
    overwrite: bool = False
    cache: bool = True
    cache_dir: str | None = None
    cache_match: Literal["metadata", "content"] = "metadata"
    """How the feature store tells an image unchanged since it stored the image's features: by
    its path, size and modification time, or by the SHA-256 of its content (reads every image
    before planning)."""
    search: Literal["exhaustive", "halving"] = "exhaustive"
    """How the (layer, parameters) candidates are trained: every one on every training row, or
    by successive halving (``vista_sql.logical.search``)."""
    mlflow: bool = False
    """Log the run to MLflow (``vista_sql.tracking``): the ``mlflow`` extra."""
    calibrate: bool = False
    """Profile the statement's CNN and a sample of its images before planning
    (``physical.profile.profile_statement``), over the calibration file's constants."""
    origins: dict[str, Origin] = field(default_factory=dict, compare=False, hash=False)
    """Where each given option is in the text, to point errors (e.g. an override that cannot
    fit)."""


@dataclass(frozen=True, slots=True)
class TransferQuery:
    """A checked TRANSFER FEATURES statement."""

    sql: str
    image_source: SourceRef
    image_alias: str
    image_column: str | None
    image_key: str
    cnn: str
    weights: WeightsSpec
    layers: tuple[str, ...]
    """Roster layer names, top layer first (results come back top-down)."""
    table_source: SourceRef
    table_alias: str
    table_key: str
    features: tuple[str, ...] | None
    model: ModelSpec
    label: str
    validate: float = 0.2
    validate_seed: int = 2019
    options: Options = field(default_factory=Options)
    into: str | None = None
    into_table: str | None = None
    """INTO TABLE <name>: one table per layer, ``<name>_<layer>``, in the session's catalog."""
    origins: dict[str, Origin] = field(default_factory=dict, compare=False, hash=False)
    """Where clauses are in the text: 'images', 'table', 'cnn', 'layers', 'features', 'label',
    ..."""


@dataclass(frozen=True, slots=True)
class ExplainStatement:
    """EXPLAIN [mode] [FORMAT f] <statement>. ``mode`` None is plain EXPLAIN (the physical plan)."""

    query: TransferQuery
    mode: Literal["logical", "cost", "verbose", "analyze"] | None = None
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True)
class DescribeCnnStatement:
    cnn: str


@dataclass(frozen=True, slots=True)
class ShowCnnsStatement:
    pass


Statement = TransferQuery | ExplainStatement | DescribeCnnStatement | ShowCnnsStatement
