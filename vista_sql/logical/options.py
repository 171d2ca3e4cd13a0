"""The WITH options a statement may give, and the values each takes (SPEC.md, WITH options).

Resources (``memory``, ``cores``, ``nodes``, ``gpu_memory``) describe the machine; overrides
(``inference``, ``placement``, ``join``, ``persist``, ``executor_cores``, ``partitions``,
``batch_size``) force a choice the optimizer would otherwise make. Each name is a field of
``vista_sql.logical.query.Options``.
"""

from __future__ import annotations

from typing import get_args

from vista_sql.catalog import POOLINGS
from vista_sql.logical.query import Inference, JoinStrategy, Placement, StorageLevel
from vista_sql.logical.values import ValueSpec

OPTIONS: dict[str, ValueSpec] = {
    "memory": ValueSpec("size"),
    "cores": ValueSpec("int", low=1),
    "nodes": ValueSpec("int", low=1),
    "gpu_memory": ValueSpec("size"),
    "inference": ValueSpec("choice", choices=get_args(Inference)),
    "placement": ValueSpec("choice", choices=get_args(Placement)),
    "join": ValueSpec("choice", choices=get_args(JoinStrategy)),
    "persist": ValueSpec("choice", choices=get_args(StorageLevel)),
    "executor_cores": ValueSpec("int", low=1),
    "partitions": ValueSpec("int", low=1),
    "batch_size": ValueSpec("int", low=1),
    "conv_pooling": ValueSpec("choice", choices=POOLINGS),
    "on_bad_image": ValueSpec("choice", choices=("fail", "skip")),
    "overwrite": ValueSpec("bool"),
    "cache": ValueSpec("bool"),
    "cache_dir": ValueSpec("string"),
    "cache_match": ValueSpec("choice", choices=("metadata", "content")),
    "search": ValueSpec("choice", choices=("exhaustive", "halving")),
    "mlflow": ValueSpec("bool"),
    "calibrate": ValueSpec("bool"),
}
"""WITH option name -> the values it takes."""
