"""Streaming queries: a Spark-like builder (`read(...).with_watermark(...).group_by(...)`) and
the per-task runner that executes one micro-batch at a time over a state store.

The same `QueryTask` runs under the Kafka worker (one per input partition) and in replay mode,
so both share every line of operator code.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from weir.tables.operator import BatchContext, ErrorStage, MapOperator, Operator, OutputMode, Row
from weir.tables.state_names import check_compatible, prefix_for, state_names
from weir.tables.store import StateTxn, StateView, Store
from weir.tables.timeutil import (
    MAX_MS,
    MIN_MS,
    Duration,
    iso_utc,
    many_to_millis,
    parse_duration,
    to_millis,
)
from weir.tables.watermark import WatermarkTracker

_QUERY_PREFIX = b"\x01query/"
_POSITIONS = _QUERY_PREFIX + b"positions"


class MultiInputOperator(Operator):
    """An operator with several parents (union, join): rows arrive per parent, in order."""

    @abstractmethod
    def process_multi(
        self, inputs: list[list[Row]], state: StateView, ctx: BatchContext
    ) -> list[Row]:
        """Process one batch of each parent's rows; return the emitted rows."""
        raise NotImplementedError

    def process(self, rows: list[Row], state: StateView, ctx: BatchContext) -> list[Row]:
        return self.process_multi([rows], state, ctx)


@dataclass(frozen=True)
class Node:
    """A node of a query plan: an input (op is None) or an operator over its parents."""

    parents: tuple[Node, ...] = ()
    op: Operator | None = None
    input_name: str | None = None
    timestamp_columns: frozenset[str] = frozenset()
    watermarks: tuple[tuple[str, str, int], ...] = ()
    """(input name, column, delay ms) of every watermark declared upstream of this node."""


class WatermarkOperator(Operator):
    """`with_watermark(column, delay)`: parses the column to epoch ms and observes its maximum.

    Rows whose column is missing or unparsable go to the dead letters with the reason.
    """

    def __init__(self, input_name: str, column: str, delay_ms: int) -> None:
        self.input_name = input_name
        self.column = column
        self.delay_ms = delay_ms
        self.name = f"watermark({column})"

    def process(self, rows: list[Row], state: StateView, ctx: BatchContext) -> list[Row]:
        col = self.column
        limit = ctx.event_time_limit
        parsed = many_to_millis(list(map(dict.get, rows, repeat(col))))
        latest = max(parsed) if parsed else None  # many_to_millis gives None or a full list
        if parsed is not None and latest is not None and (limit is None or latest <= limit):
            for row, ms in zip(rows, parsed, strict=True):
                row[col] = ms
            ctx.observe(self.input_name, latest)
            return list(rows)
        out: list[Row] = []
        append = out.append
        best = None
        for row in rows:
            value = row.get(col)
            if type(value) is not int or not MIN_MS <= value <= MAX_MS:
                try:
                    value = to_millis(value)
                except ValueError as exc:
                    ctx.errors.append((row, f"{col}: {exc}", "event_time"))
                    continue
            if limit is not None and value > limit:
                ctx.errors.append((row, self._too_far_ahead(value, ctx), "event_time"))
                continue
            row[col] = value
            if best is None or value > best:
                best = value
            append(row)
        if best is not None:
            ctx.observe(self.input_name, best)
        return out

    def _too_far_ahead(self, value: int, ctx: BatchContext) -> str:
        assert ctx.event_time_limit is not None
        skew_s = (ctx.event_time_limit - ctx.processing_time) / 1000
        return (
            f"{self.column}: event time {iso_utc(value)} is more than {skew_s:g} s ahead of "
            f"processing time {iso_utc(ctx.processing_time)} (max_event_time_skew)"
        )

    def timestamp_columns(self) -> set[str]:
        return {self.column}


class Stream:
    """A streaming DataFrame: what the course's `spark.readStream ... ` chains build.

    Immutable: every method returns a new Stream. Nothing runs until a `Query` is built and a
    `QueryTask` fed with batches.
    """

    def __init__(self, node: Node) -> None:
        self.node = node

    # -- stateless -----------------------------------------------------------------------
    def then(self, op: Operator) -> Stream:
        """Append an operator to the chain."""
        n = self.node
        ts = n.timestamp_columns | frozenset(op.timestamp_columns())
        return Stream(Node((n,), op, None, ts, n.watermarks))

    def map(self, fn: Callable[[Row], Row]) -> Stream:
        """Transform each row (a function that raises dead-letters that row)."""
        return self.then(MapOperator(fn, "map"))

    def filter(self, fn: Callable[[Row], Any]) -> Stream:
        """Keep rows for which `fn` is truthy."""
        return self.then(MapOperator(fn, "filter"))

    def flat_map(self, fn: Callable[[Row], Iterable[Row]]) -> Stream:
        """Replace each row by zero or more rows (Spark's `explode`)."""
        return self.then(MapOperator(fn, "flat_map"))

    def select(self, *columns: str) -> Stream:
        """Keep only `columns`."""
        cols = tuple(columns)
        return self.map(lambda r: {c: r.get(c) for c in cols})

    def with_watermark(self, column: str, delay: Duration) -> Stream:
        """Declare `column` as event time with a watermark `delay` ("10 minutes", timedelta)."""
        name = self._single_input("with_watermark")
        delay_ms = parse_duration(delay)
        s = self.then(WatermarkOperator(name, column, delay_ms))
        wms = (*self.node.watermarks, (name, column, delay_ms))
        return Stream(Node(s.node.parents, s.node.op, None, s.node.timestamp_columns, wms))

    def union(self, *others: Stream) -> Stream:
        """Rows of this stream and of `others`, in input order (Spark's `union`)."""
        nodes = (self.node, *(o.node for o in others))
        ts = frozenset().union(*(n.timestamp_columns for n in nodes))
        wms = tuple(w for n in nodes for w in n.watermarks)
        return Stream(Node(nodes, UnionOperator(), None, ts, wms))

    # -- stateful (implemented in their own modules) -------------------------------------
    def group_by(self, *keys: Any) -> Any:
        """Group by columns and/or a `window(...)`; follow with `.agg(...)` (tables.aggregate)."""
        from weir.tables.aggregate import GroupedStream

        return GroupedStream(self, keys)

    def drop_duplicates(self, columns: Iterable[str] | None = None) -> Stream:
        """Spark's `dropDuplicates`: see weir.tables.dedup for the watermark semantics."""
        from weir.tables.dedup import DedupOperator

        return self.then(DedupOperator(self, list(columns) if columns else None, within=False))

    def drop_duplicates_within_watermark(self, columns: Iterable[str] | None = None) -> Stream:
        """Spark's `dropDuplicatesWithinWatermark` (weir.tables.dedup)."""
        from weir.tables.dedup import DedupOperator

        return self.then(DedupOperator(self, list(columns) if columns else None, within=True))

    def join(self, other: Any, **kwargs: Any) -> Stream:
        """Stream-stream join with another Stream, or stream-static join with a
        `weir.tables.static.static_table(...)`; see weir.tables.join for the arguments."""
        from weir.tables.join import make_join

        return make_join(self, other, **kwargs)

    def name(self, state_name: str) -> Stream:
        """Name the state of the stateful operator just before (an aggregation, dedup, join
        or arbitrary state), e.g. `.agg(...).name("orders_by_user")`. Without a name it is
        derived from the operator's kind and columns; either way it never depends on the
        operator's place in the plan (see weir.tables.state_names)."""
        op = self.node.op
        if op is None or not op.stateful:
            raise ValueError("name(...) must follow a stateful operator (agg, dedup, join...)")
        if not state_name.strip():
            raise ValueError(f"a state name must not be blank, got {state_name!r}")
        named = copy.copy(op)
        named.state_name = state_name
        return Stream(dataclasses.replace(self.node, op=named))

    # -- terminal ------------------------------------------------------------------------
    def query(self, output_mode: OutputMode = "append") -> Query:
        """Build the query; refuses, with the reason, the combinations Spark refuses."""
        return Query(self.node, output_mode)

    def _single_input(self, what: str) -> str:
        names = input_names(self.node)
        if len(names) != 1:
            raise ValueError(f"{what} applies to a single input stream, not to {sorted(names)}")
        return next(iter(names))


class UnionOperator(MultiInputOperator):
    """Concatenation of its parents' rows."""

    name = "union"

    def process_multi(
        self, inputs: list[list[Row]], state: StateView, ctx: BatchContext
    ) -> list[Row]:
        out: list[Row] = []
        for rows in inputs:
            out.extend(rows)
        return out


def read(name: str) -> Stream:
    """A stream of the rows of input `name` (a Kafka topic, or a replay file's "topic" value)."""
    return Stream(Node(input_name=name))


def input_names(node: Node) -> set[str]:
    """Return the input names a plan reads."""
    if node.input_name is not None:
        return {node.input_name}
    out: set[str] = set()
    for p in node.parents:
        out |= input_names(p)
    return out


def _topo(node: Node) -> list[Node]:
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


class Query:
    """A built query: its plan, output mode and inputs. Create tasks with `task(store)`."""

    def __init__(self, node: Node, output_mode: OutputMode) -> None:
        if output_mode not in ("append", "update", "complete"):
            raise ValueError(f"unknown output mode {output_mode!r}: append, update or complete")
        self.node = node
        self.output_mode: OutputMode = output_mode
        self.nodes = _topo(node)
        self.inputs = sorted(input_names(node))
        self.delays = {name: delay for name, _col, delay in node.watermarks}
        self.timestamp_columns = node.timestamp_columns
        self.stateful = [n.op for n in self.nodes if n.op is not None and n.op.stateful]
        has_wm = bool(node.watermarks)
        for n in self.nodes:
            check = getattr(n.op, "check_output_mode", None)
            if check is not None:
                check(output_mode, has_wm)
        if output_mode == "complete" and not self.stateful:
            raise ValueError(
                "complete output mode is not supported when there are no streaming "
                "aggregations: there is no result table to emit"
            )

    def task(
        self, store: Store, *, idle_timeout_ms: int | None = None, no_data_batches: bool = True
    ) -> QueryTask:
        """Return the runner for one task whose state lives in `store`."""
        return QueryTask(
            self, store, idle_timeout_ms=idle_timeout_ms, no_data_batches=no_data_batches
        )


@dataclass
class BatchResult:
    """What one micro-batch produced; commit `txn` only after the outputs are safely out."""

    batch_id: int
    rows: list[Row]
    txn: StateTxn
    ctx: BatchContext
    input_rows: int
    watermark_moved: bool = False
    late_rows: list[tuple[str, Row]] = field(default_factory=list)
    error_origins: list[tuple[str, int] | None] = field(default_factory=list)
    """Per entry of `ctx.errors`: the input and the position in that input's batch rows of
    the row it comes from, or None when it has no single input row (e.g. an aggregate)."""
    watermark_advance: int = 0
    """How far (ms) this batch moved the watermark (0 for the first watermark)."""
    tracer: _Tracer | None = None

    def row_origins(self) -> list[tuple[str, int] | None]:
        """Per output row, the input row it comes from (as `error_origins`); for a stateless
        query, where every output row has one (a repartition stage), this costs a dict
        lookup per row."""
        if self.tracer is None:
            return [None] * len(self.rows)
        return self.tracer.output_origins()


class _Tracer:
    """Traces failed rows back through the plan to the input rows they came from."""

    def __init__(self, results: dict[int, list[Row]], final: Node) -> None:
        self.results = results
        self.final = final
        self._indexes: dict[int, dict[int, int]] = {}

    def index(self, rows: list[Row]) -> dict[int, int]:
        found = self._indexes.get(id(rows))
        if found is None:
            found = self._indexes[id(rows)] = {id(r): i for i, r in enumerate(rows)}
        return found

    def origins(
        self, errors: list[tuple[Row, str, ErrorStage]], failed_at: list[tuple[int, Node]]
    ) -> list[tuple[str, int] | None]:
        out: list[tuple[str, int] | None] = []
        for end, node in failed_at:
            inputs = [self.results[id(p)] for p in node.parents]
            while len(out) < end:
                row_id = id(errors[len(out)][0])
                found = None
                for parent, rows in zip(node.parents, inputs, strict=True):
                    pos = self.index(rows).get(row_id)
                    if pos is not None:
                        found = self._source(parent, pos)
                        break
                out.append(found)
        return out

    def output_origins(self) -> list[tuple[str, int] | None]:
        return [self._source(self.final, i) for i in range(len(self.results[id(self.final)]))]

    def _source(self, node: Node, pos: int) -> tuple[str, int] | None:
        """The input row behind row `pos` of `node`'s output."""
        while node.input_name is None:
            assert node.op is not None
            inputs = [self.results[id(p)] for p in node.parents]
            step = node.op.origin(pos, self.results[id(node)], inputs, self.index)
            if step is None:
                return None
            node, pos = node.parents[step[0]], step[1]
        return node.input_name, pos


class QueryTask:
    """Runs a query's micro-batches for one task over one store.

    Contract: `run_batch` computes the batch from the store's committed state and returns the
    output rows with an uncommitted transaction; nothing is written until `commit`. A batch
    that is not committed (crash, aborted Kafka transaction) can be recomputed from the same
    input with the same result. Batch ids and the watermark are part of the state (and so of
    the changelog), so a restart or restore resumes them.
    """

    def __init__(
        self,
        query: Query,
        store: Store,
        *,
        idle_timeout_ms: int | None = None,
        no_data_batches: bool = True,
    ) -> None:
        self.query = query
        self.store = store
        self.no_data_batches = no_data_batches
        self.idle_timeout_ms = idle_timeout_ms
        stateful = [(i, n, n.op) for i, n in enumerate(query.nodes) if n.op and n.op.stateful]
        names = state_names(op for _i, _n, op in stateful)
        self._prefixes: dict[int, bytes] = {}
        self._positional: dict[int, bytes] = {}
        """The prefixes of a Weir that named state by plan position (migrated on load)."""
        self._fingerprints: dict[str, Any] = {}
        for (i, n, op), name in zip(stateful, names, strict=True):
            self._prefixes[id(n)] = prefix_for(name)
            self._positional[id(n)] = b"op%d/" % i
            self._fingerprints[name] = op.fingerprint()
        self._pending_no_data = False
        self._load()

    def _load(self) -> None:
        """Read batch id and watermark; check the stored operator fingerprints (raises
        IncompatibleStateError)."""
        txn = StateTxn(self.store)
        meta = txn.get(_QUERY_PREFIX + b"progress") or {}
        self.next_batch_id: int = meta.get("batch_id", 0)
        self.tracker = WatermarkTracker(dict(self.query.delays), self.idle_timeout_ms)
        self.tracker.restore(meta.get("wm"))
        self._pending_no_data = bool(meta.get("pending_no_data", False))
        stored = txn.get(_QUERY_PREFIX + b"operators")
        check_compatible(stored or {}, self._fingerprints)
        self._write_fingerprints = stored != self._fingerprints
        # State of a Weir that named operator state by plan position: moved on the next batch.
        self._migrate = stored is None and bool(meta) and bool(self._positional)

    def positions(self) -> dict[str, int]:
        """Per input source, the position after the last committed batch, as committed with
        the state (so as current as the state itself); {} before any."""
        return dict(StateTxn(self.store).get(_POSITIONS) or {})

    @property
    def watermark(self) -> int | None:
        """W for the next batch, in epoch ms."""
        return self.tracker.watermark

    def wants_no_data_batch(self, processing_time: int | None = None) -> bool:
        """True when a no-data batch should run: the last batch moved the watermark, or (given
        the current processing time) an operator has a due processing-time timer."""
        if not self.no_data_batches or not self.query.stateful:
            return False
        if self._pending_no_data:
            return True
        if processing_time is None:
            return False
        txn = StateTxn(self.store)
        return any(
            n.op.wants_batch(txn.view(self._prefixes[id(n)]), processing_time)
            for n in self.query.nodes
            if n.op is not None and n.op.stateful
        )

    def run_batch(
        self,
        rows_by_input: Mapping[str, list[Row]],
        processing_time: int,
        event_time_limit: int | None = None,
        positions: Mapping[str, int] | None = None,
    ) -> BatchResult:
        """Run one micro-batch (empty mapping: a no-data batch); see the class contract.
        Rows whose event time is after `event_time_limit` are dead-lettered (the event-time
        guard: they never move the watermark). `positions` (per input source, the position
        after the batch) are committed with the state, see `positions()`."""
        txn = StateTxn(self.store)
        if positions:
            txn.put(_POSITIONS, {**(txn.get(_POSITIONS) or {}), **positions})
        wm, late = self.tracker.start_batch()
        ctx = BatchContext(
            batch_id=self.next_batch_id,
            watermark=wm,
            late_watermark=late,
            processing_time=processing_time,
            has_data=any(rows_by_input.values()),
            output_mode=self.query.output_mode,
            event_time_limit=event_time_limit,
        )
        if self._migrate:
            self._move_positional_state(txn)
        if self._write_fingerprints:
            txn.put(_QUERY_PREFIX + b"operators", self._fingerprints)
        results: dict[int, list[Row]] = {}
        input_count = 0
        failed_at: list[tuple[int, Node]] = []
        """(end of the node's errors in ctx.errors, node), in plan order."""
        for n in self.query.nodes:
            if n.input_name is not None:
                rows = list(rows_by_input.get(n.input_name, ()))
                input_count += len(rows)
                results[id(n)] = rows
                continue
            op = n.op
            assert op is not None
            view = txn.view(self._prefixes.get(id(n), b""))
            n_errors = len(ctx.errors)
            if isinstance(op, MultiInputOperator) and len(n.parents) > 1:
                results[id(n)] = op.process_multi([results[id(p)] for p in n.parents], view, ctx)
            else:
                results[id(n)] = op.process(results[id(n.parents[0])], view, ctx)
            if len(ctx.errors) > n_errors:
                failed_at.append((len(ctx.errors), n))
        out = results[id(self.query.node)]
        tracer = _Tracer(results, self.query.node)
        origins = tracer.origins(ctx.errors, failed_at) if failed_at else []
        for name, ts in ctx.observed.items():
            self.tracker.observe(name, ts)
        moved = self.tracker.end_batch(processing_time)
        advance = 0 if wm is None or self.tracker.watermark is None else self.tracker.watermark - wm
        self._pending_no_data = moved
        txn.put(
            _QUERY_PREFIX + b"progress",
            {"batch_id": ctx.batch_id + 1, "wm": self.tracker.snapshot(), "pending_no_data": moved},
        )
        self.next_batch_id = ctx.batch_id + 1
        return BatchResult(
            ctx.batch_id, out, txn, ctx, input_count, moved, ctx.late_rows, origins, advance, tracer
        )

    def _move_positional_state(self, txn: StateTxn) -> None:
        """Move state stored under plan positions (`op<i>/`) to the operators' stable
        prefixes, in the batch's transaction (so the changelog carries the move)."""
        for node_id, old in self._positional.items():
            new = self._prefixes[node_id]
            for key, value in list(txn.items(old)):
                txn.put(new + key[len(old) :], value)
                txn.delete(key)

    def commit(
        self,
        result: BatchResult,
        meta: Mapping[str, Any] | None = None,
        changes: dict[bytes, bytes | None] | None = None,
    ) -> dict[bytes, bytes | None]:
        """Make the batch's state changes durable locally; return them for the changelog.

        `changes`: the batch's already encoded changes (`result.txn.changes()`), if at hand.
        """
        self._migrate = self._write_fingerprints = False
        return result.txn.commit(meta, changes)

    def abort(self) -> None:
        """Forget an uncommitted batch: batch id and watermark go back to the committed ones."""
        self._load()

    def state_rows(self) -> int:
        """Total state rows held by the stateful operators (scans the store)."""
        txn = StateTxn(self.store)
        total = 0
        for n in self.query.nodes:
            if n.op is not None and n.op.stateful:
                total += n.op.state_rows(txn.view(self._prefixes[id(n)]))
        return total
