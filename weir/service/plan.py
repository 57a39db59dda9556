"""Repartitioning: splitting a query at its first keyed stateful operator, as Kafka Streams does
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

from weir.tables.operator import Operator
from weir.tables.query import MultiInputOperator, Node, Query, WatermarkOperator


@dataclass(frozen=True)
class Cut:
    """One input's stage-1 chain, cut below a keyed stateful operator."""

    input_name: str
    """The input (topic) the chain reads."""
    stage1: Node
    """The stateless chain: its output goes to the repartition topic."""
    key: tuple[str, ...] | None
    """Columns whose values decide the partition; None: the whole row; (): one partition."""


def partition_columns(op: Operator, parent_index: int) -> tuple[str, ...] | None:
    """The columns that must co-locate rows arriving at `op` from parent `parent_index`."""
    from weir.tables.aggregate import AggregateOperator
    from weir.tables.arbitrary import FlatMapGroupsWithStateOperator
    from weir.tables.dedup import DedupOperator
    from weir.tables.join import StreamJoinOperator

    if isinstance(op, AggregateOperator):
        return tuple(op.key_columns)
    if isinstance(op, DedupOperator):
        return None if op.key_cols is None else tuple(op.key_cols)
    if isinstance(op, StreamJoinOperator):
        return tuple(pair[parent_index] for pair in op.keys)
    if isinstance(op, FlatMapGroupsWithStateOperator):
        return tuple(op.keys)
    return ()


def _is_stateless_chain(node: Node) -> bool:
    while node.input_name is None:
        if node.op is None or node.op.stateful or len(node.parents) != 1:
            return False
        node = node.parents[0]
    return True


def _input_of(node: Node) -> str:
    while node.input_name is None:
        node = node.parents[0]
    return node.input_name


def split(query: Query) -> tuple[Query, list[Cut]] | None:
    """Return (stage-2 query, cuts), or None when the query has no keyed stateful operator.

    Stage 2 reads each cut input under its original input name, re-declares that input's
    watermarks (values are already epoch ms), and keeps the output mode.
    """
    cuts: list[Cut] = []

    def rebuild(node: Node, cut: bool, key: tuple[str, ...] | None) -> Node:
        # `cut`: a keyed stateful operator above wants this subtree's rows co-located by `key`.
        if cut and _is_stateless_chain(node):
            name = _input_of(node)
            cuts.append(Cut(name, node, key))
            out = Node(
                input_name=name,
                timestamp_columns=node.timestamp_columns,
                watermarks=node.watermarks,
            )
            for wm_input, column, delay in node.watermarks:
                wm_op = WatermarkOperator(wm_input, column, delay)
                out = Node((out,), wm_op, None, out.timestamp_columns, node.watermarks)
            return out
        if node.input_name is not None:
            return node
        op = node.op
        assert op is not None
        if op.stateful:
            parents = tuple(
                rebuild(p, True, partition_columns(op, i)) for i, p in enumerate(node.parents)
            )
        elif isinstance(op, MultiInputOperator):
            parents = tuple(rebuild(p, cut, key) for p in node.parents)
        else:
            parents = tuple(rebuild(p, False, None) for p in node.parents)
        return dataclasses.replace(node, parents=parents)

    stage2 = rebuild(query.node, False, None)
    if not cuts:
        return None
    return Query(stage2, query.output_mode), cuts
