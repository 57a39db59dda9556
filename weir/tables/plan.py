"""Query plans: nodes, their order, and the repartition split.

Repartitioning: splitting a query at its first keyed stateful operator, as Kafka Streams does
with a repartition topic.

A stateful operator (aggregation, dedup, stream-stream join, arbitrary state) must see every row
of a key in one task. When the input topic is not known to be partitioned by that key, the
query runs in two stages: stage 1 (the stateless chain of each input) writes its rows to an
internal topic `<app>-<agent>-repartition-<input>`, keyed by the operator's key columns, with
the input's partition count (event times travel in the rows, not as record timestamps, so the
broker never refuses a record for its event time); stage 2 reads
those topics, co-partitioned, and runs the rest of the plan with the same watermarks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from weir.tables.operator import MultiInputOperator, Operator


@dataclass(frozen=True)
class Node:
    """A node of a query plan: an input (op is None) or an operator over its parents."""

    parents: tuple[Node, ...] = ()
    op: Operator | None = None
    input_name: str | None = None
    timestamp_columns: frozenset[str] = frozenset()
    watermarks: tuple[tuple[str, str, int], ...] = ()
    """(input name, column, delay ms) of every watermark declared upstream of this node."""
    columns: tuple[tuple[str, str | None], ...] | None = None
    """The node's output columns in order, each with its Spark type name (None: unknown type),
    when they are known at definition (from the input's schema on); None when unknown (after
    a Python `map`). Definition-time only: checks and expression types, no per-row cost."""


def input_names(node: Node) -> set[str]:
    """Return the input names a plan reads."""
    if node.input_name is not None:
        return {node.input_name}
    out: set[str] = set()
    for p in node.parents:
        out |= input_names(p)
    return out


def topo(node: Node) -> list[Node]:
    seen: dict[int, Node] = {}
    order: list[Node] = []

    def visit(n: Node) -> None:
        if id(n) in seen:
            return
        seen[id(n)] = n
        for p in n.parents:
            visit(p)
        order.append(n)

    visit(node)
    return order


@dataclass(frozen=True)
class Cut:
    """One input's stage-1 chain, cut below a keyed stateful operator."""

    input_name: str
    """The input (topic) the chain reads."""
    stage1: Node
    """The stateless chain: its output goes to the repartition topic."""
    key: tuple[str, ...] | None
    """Columns whose values decide the partition; None: the whole row; (): one partition."""


def _is_stateless_chain(node: Node) -> bool:
    while node.input_name is None:
        if node.op is None or node.op.stateful or len(node.parents) != 1:
            return False
        node = node.parents[0]
    return True


def _watermark_nodes(node: Node) -> list[Node]:
    """The nodes of a single-input chain that declare a watermark, from the input on."""
    found: list[Node] = []
    while node.input_name is None:
        if node.op is not None and node.op.declares_watermark:
            found.append(node)
        node = node.parents[0]
    return found[::-1]


def _input_of(node: Node) -> str:
    while node.input_name is None:
        node = node.parents[0]
    return node.input_name


def split(root: Node) -> tuple[Node, list[Cut]] | None:
    """Return (stage-2 plan, cuts), or None when the plan has no keyed stateful operator.

    Stage 2 reads each cut input under its original input name, re-declares that input's
    watermarks (values are already epoch ms), and keeps the output mode. When stateful
    operators follow each other in stage 2, the cut key is narrowed to the columns every one
    of them groups by (a join on (ad_id, user_id) then a count per ad_id repartitions by
    ad_id), so each sees all rows of any of its keys in one task (the columns they share
    none: one partition). Maps between them are taken to keep those columns.
    """
    cuts: list[Cut] = []

    def rebuild(
        node: Node, cut: bool, key: tuple[str, ...] | None, need: tuple[str, ...] | None
    ) -> Node:
        # `cut`: a keyed stateful operator above wants this subtree's rows co-located by `key`;
        # `need`: the partition key must stay within these columns of this node's output,
        # for the stateful operators further up (None: no constraint).
        if cut and _is_stateless_chain(node):
            name = _input_of(node)
            cuts.append(Cut(name, node, key))
            out = Node(
                input_name=name,
                timestamp_columns=node.timestamp_columns,
                watermarks=node.watermarks,
            )
            # the chain's own watermark operators, again: the values are epoch ms by now
            for declaring in _watermark_nodes(node):
                out = Node((out,), declaring.op, None, out.timestamp_columns, node.watermarks)
            return out
        if node.input_name is not None:
            return node
        op = node.op
        assert op is not None
        if op.stateful:
            parents = []
            for i, p in enumerate(node.parents):
                own = op.partition_columns(i)
                allowed = None if need is None else op.upstream_columns(i, need)
                k = _within(own, allowed)
                parents.append(rebuild(p, True, k, k))
            return dataclasses.replace(node, parents=tuple(parents))
        if isinstance(op, MultiInputOperator):
            kept = tuple(rebuild(p, cut, key, need) for p in node.parents)
        else:
            kept = tuple(rebuild(p, False, None, need) for p in node.parents)
        return dataclasses.replace(node, parents=kept)

    stage2 = rebuild(root, False, None, None)
    if not cuts:
        return None
    return stage2, cuts


def _within(own: tuple[str, ...] | None, allowed: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """An operator's partition columns narrowed to `allowed` (None: the whole row / no
    constraint)."""
    if allowed is None:
        return own
    if own is None:
        return allowed
    return tuple(c for c in own if c in allowed)
