"""Sharing in logical plans: which nodes several parents use, and rewrites that keep or create it.

A plan is built from immutable values, and one node object may hang under several parents: that is
how a plan says "this work is done once for all of them" (one inference feeding three layers' joins,
one join feeding three layers' inferences). Sharing is identity, never mere equality: the lazy plan
decodes the images once per layer, in nodes that are equal but distinct, because the paper's
lazy plan repeats that work. Equality of plans (``==``) is structural and blind to sharing, so
:func:`sharing_key` gives a key that sees both, for "are these two plans the same plan?".
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping

from vista_sql.logical.plan import ImageScan, Plan, StoredScan, TableScan


def reference_counts(plan: Plan) -> dict[int, int]:
    """How many parent references each distinct node has, by ``id`` (the root has 0)."""
    counts: dict[int, int] = {id(plan): 0}
    for node in plan.walk():
        for child in node.children:
            counts[id(child)] = counts.get(id(child), 0) + 1
    return counts


def shared_nodes(plan: Plan) -> list[Plan]:
    """The nodes used by more than one parent, in pre-order (deterministic)."""
    counts = reference_counts(plan)
    return [node for node in plan.walk() if counts[id(node)] > 1]


def is_scan(node: Plan) -> bool:
    """Scans are leaves that read a source: sharing one means reading the source again, never
    keeping a copy, so they are never persisted."""
    return isinstance(node, ImageScan | TableScan | StoredScan)


def tree_order(plan: Plan) -> Iterator[Plan]:
    """Every node in pre-order of the unfolded tree: a shared node once per reference."""
    stack: list[Plan] = [plan]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def sharing_key(plan: Plan) -> tuple[Plan, tuple[int, ...]]:
    """A key equal for two plans exactly when they are structurally equal *and* share the same
    nodes: the plan itself (structural equality) and, for every position of the unfolded tree, the
    number of the distinct node found there (numbered in order of first appearance)."""
    numbers: dict[int, int] = {}
    pattern = tuple(numbers.setdefault(id(node), len(numbers)) for node in tree_order(plan))
    return plan, pattern


def rewrite_nodes(
    plan: Plan, rewrites: Mapping[int, Callable[[Plan], Plan]], *, share_equal: bool
) -> Plan:
    """``plan`` with every node whose ``id`` is a key of ``rewrites`` replaced by that function of
    the node (rebuilt over its rewritten children); the nodes above are rebuilt over the result.

    With ``share_equal``, every node the rewrite creates (replacements and rebuilt ancestors) that
    is structurally equal to another node it created becomes that same object, so the work the
    rewrite makes common is shared, not merely equal: after three inferences are replaced by one
    merged inference, the joins above them become equal too, and become one join. Without it, the
    rewritten plan keeps the original's sharing node for node (equal but distinct nodes, like the
    lazy plan's per-layer decodes, stay distinct). Nodes the rewrite does not reach keep their
    identity either way.
    """
    memo: dict[int, Plan] = {}
    created: dict[Hashable, Plan] = {}

    def visit(node: Plan) -> Plan:
        key = id(node)
        if key not in memo:
            result = node.with_children(tuple(visit(child) for child in node.children))
            if key in rewrites:
                result = rewrites[key](result)
            if share_equal and result is not node:
                result = created.setdefault(result, result)
            memo[key] = result
        return memo[key]

    return visit(plan)
