"""Persist what several branches use, instead of recomputing it for each.

Spark recomputes a DataFrame for every action that uses it unless it is persisted; the branches of a
workload are separate actions (one model fit per layer), so shared work is done once only if it is
persisted. Persisting costs memory (or disk), which is what the cost model weighs; the alternative
without this rule is the recompute plan.
"""

from __future__ import annotations

from vista_sql.logical.dag import is_scan, rewrite_nodes, shared_nodes
from vista_sql.logical.plan import Persist, Plan
from vista_sql.logical.rules.base import RuleContext


def persist_shared(plan: Plan, ctx: RuleContext) -> Plan:
    """Wrap every node used by more than one parent in ``Persist`` (level chosen later by the cost
    model); every parent then reads the one Persist node. Scans are not wrapped: re-reading a source
    is what keeping a copy of it would save, at no gain.

        Assemble fc7                        Assemble fc7
          Infer vgg16 -> {fc6, fc7}   =>      Persist (level to choose)
        Assemble fc6                            Infer vgg16 -> {fc6, fc7}
          (the same Infer)                  Assemble fc6
                                              (the same Persist)
    """
    del ctx  # the rule needs nothing but the plan's shape
    wrapped = {
        id(node): _persisted
        for node in shared_nodes(plan)
        if not isinstance(node, Persist) and not is_scan(node)
    }
    if not wrapped:
        return plan
    return rewrite_nodes(plan, wrapped, share_equal=False)


def _persisted(node: Plan) -> Plan:
    return Persist(child=node)
