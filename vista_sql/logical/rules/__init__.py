"""Rewrite rules, one per module: small pure functions ``rule(plan, ctx) -> plan``.

Each returns the very same object when it changes nothing, and keeps the (layer, model) outputs of
the workload. The driver (``vista_sql.logical.driver``) arranges them in batches to produce the
alternative plans:

- ``fuse_pooling``: pooling folded into the inference; every inference emits features.
- ``reuse_layers``: eager inference, one pass emitting every layer.
- ``stage_layers``: staged inference, each layer resumed from the stored layer below.
- ``place_join``: join before inference (``after_join`` placement) or after it (the lazy form).
- ``persist_shared``: persist what several branches use (without it: recompute).
- ``use_stored_layers``: read layers kept in the feature store instead of inferring them.
"""

from vista_sql.logical.rules.base import Rule, RuleContext
from vista_sql.logical.rules.fuse_pooling import fuse_pooling
from vista_sql.logical.rules.persist_shared import persist_shared
from vista_sql.logical.rules.place_join import place_join
from vista_sql.logical.rules.reuse_layers import reuse_layers
from vista_sql.logical.rules.stage_layers import stage_layers
from vista_sql.logical.rules.use_stored_layers import use_stored_layers

__all__ = [
    "Rule",
    "RuleContext",
    "fuse_pooling",
    "persist_shared",
    "place_join",
    "reuse_layers",
    "stage_layers",
    "use_stored_layers",
]
