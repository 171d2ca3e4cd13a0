"""What every rewrite rule receives besides the plan, and the shape of a rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vista_sql.catalog import Catalog
from vista_sql.logical.plan import Plan
from vista_sql.logical.query import Placement
from vista_sql.logical.stored import StoredLayer


@dataclass(frozen=True, slots=True)
class RuleContext:
    """The catalog (layer order, kinds, resume tensors) and the knobs of the plan being built.

    ``placement`` is the join placement that ``place_join`` rewrites towards; ``stored`` the
    feature-store entries matching the statement, which ``use_stored_layers`` reads.
    """

    catalog: Catalog
    placement: Placement = "before_join"
    stored: tuple[StoredLayer, ...] = ()


Rule = Callable[[Plan, RuleContext], Plan]
"""A rewrite: a pure function returning the same object when it changes nothing."""
