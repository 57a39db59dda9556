"""Queries: a built plan checked against Spark's rules (`Query`), and the per-task executor
that runs it one micro-batch at a time over a state store (`QueryTask`).

The same `QueryTask` runs under the Kafka worker (one per input partition) and in replay mode,
so both share every line of operator code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from weir.tables.chains import check_chain, check_watermarks
from weir.tables.expressions.expr_time import batch_time
from weir.tables.operator import BatchContext, ErrorStage, MultiInputOperator, OutputMode, Row
from weir.tables.plan import Node, input_names, topo
from weir.tables.state.store import LOCAL_STALE, StateTxn, Store
from weir.tables.state_names import check_compatible, prefix_for, state_names
from weir.tables.watermark import WatermarkPlan, WatermarkTracker

_QUERY_PREFIX = b"\x01query/"
_POSITIONS = _QUERY_PREFIX + b"positions"
_PLAN = _QUERY_PREFIX + b"plan"
_SOURCES = _QUERY_PREFIX + b"source/"
QUERY_PREFIX = _QUERY_PREFIX
"""Every key of the query's own (batch id and watermark, positions, fingerprints, plan, its
sources' checkpoint state) starts with this; every other key belongs to a stateful
operator."""


class Query:
    """A built query: its plan, output mode and inputs. Create tasks with `task(store)`."""

    def __init__(self, node: Node, output_mode: OutputMode) -> None:
        if output_mode not in ("append", "update", "complete"):
            raise ValueError(f"unknown output mode {output_mode!r}: append, update or complete")
        self.node = node
        self.output_mode: OutputMode = output_mode
        self.nodes = topo(node)
        self.inputs = sorted(input_names(node))
        self.delays = {name: delay for n in self.nodes for name, _col, delay in n.watermarks}
        self.timestamp_columns = node.timestamp_columns
        self.stateful = [n.op for n in self.nodes if n.op is not None and n.op.stateful]
        self.watermarks = WatermarkPlan(self.nodes)
        has_wm = bool(self.delays)
        check_watermarks(self.nodes)
        for n in self.nodes:
            if n.op is not None:
                n.op.check_output_mode(output_mode, has_wm)
        if output_mode == "complete" and not self.stateful:
            raise ValueError(
                "complete output mode is not supported when there are no streaming "
                "aggregations: there is no result table to emit"
            )
        operators = [n.op for n in self.nodes if n.op is not None]
        for op in operators:
            op.check_plan(operators, output_mode)
        check_chain(self.nodes, output_mode)

    def task(
        self, store: Store, *, idle_timeout_ms: int | None = None, no_data_batches: bool = True
    ) -> QueryTask:
        """Return the runner for one task whose state lives in `store`."""
        return QueryTask(
            self, store, idle_timeout_ms=idle_timeout_ms, no_data_batches=no_data_batches
        )


@dataclass(frozen=True, slots=True)
class OperatorBatch:
    """One stateful operator's part of a batch (Spark's `stateOperators` entry)."""

    operator: str
    """The operator's name (its kind and columns)."""
    state_name: str
    """The operator's state name (weir.tables.state_names)."""
    prefix: bytes
    """Its key prefix in the store (to count its state changes)."""
    watermark: int | None
    """Its own input watermark for eviction in this batch, epoch ms."""
    late_rows: int
    """Rows it dropped as late in this batch (numRowsDroppedByWatermark)."""
    rows_total: int
    """The state rows it holds once this batch commits, exactly (numRowsTotal): groups,
    sessions, remembered keys, join rows on both sides, keys with group state."""
    rows_updated: int
    """State rows it wrote in this batch, new or changed (numRowsUpdated)."""
    rows_removed: int
    """State rows it removed in this batch (numRowsRemoved): evicted, expired, merged."""
    windows_closed: int
    """Windows or sessions it closed and removed in this batch (windowed aggregations)."""


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
    operators: list[OperatorBatch] = field(default_factory=list)
    """Per stateful operator, in plan order: what it did in this batch."""

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
        self._names: dict[int, str] = {}
        for (i, n, op), name in zip(stateful, names, strict=True):
            self._names[id(n)] = name
            self._prefixes[id(n)] = prefix_for(name)
            self._positional[id(n)] = b"op%d/" % i
            self._fingerprints[name] = op.fingerprint()
        self._pending_no_data = False
        self._rows: dict[str, int] = {}
        """Per state name, the rows its operator holds as of the last commit (counted from
        the store once, then moved by each committed batch)."""
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
        if self.store.get_meta(LOCAL_STALE):
            txn = StateTxn(self.store)
            self._rebuild_local(txn)
            txn.commit({LOCAL_STALE: False})

    def _rebuild_local(self, txn: StateTxn) -> None:
        """Write every operator's local state again from its state in `txn` (after a
        restore or a move of its state)."""
        for n in self.query.nodes:
            prefix = self._prefixes.get(id(n))
            if prefix is None or n.op is None:
                continue
            view = txn.view(prefix)
            local = view.local()
            local.delete_all(local.keys())
            n.op.rebuild_local(view)

    def positions(self) -> dict[str, int]:
        """Per input source, the position after the last committed batch, as committed with
        the state (so as current as the state itself); {} before any."""
        return dict(StateTxn(self.store).get(_POSITIONS) or {})

    def source_state(self) -> dict[bytes, Any]:
        """What the query's sources keep with its checkpoint beyond their positions (a file
        source's taken files), as committed (see `run_batch`)."""
        return {k[len(_SOURCES) :]: v for k, v in StateTxn(self.store).items(_SOURCES)}

    def encode_source_state(self, state: Mapping[bytes, Any]) -> dict[bytes, bytes | None]:
        """`state` (as `run_batch` takes it) as store records, for a changelog write of their
        own (a batch plan's); the store itself is not changed."""
        txn = StateTxn(self.store)
        for key, value in state.items():
            txn.put(_SOURCES + key, value)
        return txn.changes()

    def plan(self, ranges: Mapping[str, tuple[int, int]]) -> tuple[bytes, bytes]:
        """The store record (key, encoded value) saying that the next batch covers exactly
        `ranges` (per input source, first position and the one after the last; {} for a
        no-data batch). Written durably before a batch's first write outside the checkpoint,
        it lets a restart run that batch again over the same input (see `planned`)."""
        value = {"batch_id": self.next_batch_id, "ranges": {k: list(v) for k, v in ranges.items()}}
        return _PLAN, orjson.dumps(value)

    def planned(self) -> dict[str, tuple[int, int]] | None:
        """The input ranges planned for the next batch when it was planned but not committed
        (a crash between its external writes and its checkpoint); None otherwise."""
        plan = StateTxn(self.store).get(_PLAN)
        if not plan or plan["batch_id"] != self.next_batch_id:
            return None
        return {k: (v[0], v[1]) for k, v in plan["ranges"].items()}

    def skip_batch(
        self, positions: Mapping[str, int], source_state: Mapping[bytes, Any] | None = None
    ) -> StateTxn:
        """The uncommitted state change for a batch whose input was dead-lettered instead of
        run: its end `positions` (per input source) become the committed ones, with its
        `source_state`, and its plan is dropped. Put `changes()` in the checkpoint, commit it
        after."""
        txn = StateTxn(self.store)
        txn.put(_POSITIONS, {**(txn.get(_POSITIONS) or {}), **positions})
        for key, value in (source_state or {}).items():
            txn.put(_SOURCES + key, value)
        txn.delete(_PLAN)
        return txn

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
        source_state: Mapping[bytes, Any] | None = None,
    ) -> BatchResult:
        """Run one micro-batch (empty mapping: a no-data batch); see the class contract.
        Rows whose event time is after `event_time_limit` are dead-lettered (the event-time
        guard: they never move the watermark). `positions` (per input source, the position
        after the batch) are committed with the state, see `positions()`, and so is
        `source_state` (what a source needs to find those positions again), see
        `source_state()`. Every row of the batch sees `processing_time` as
        `current_timestamp()` (Spark's batch timestamp)."""
        with batch_time(processing_time):
            return self._run_batch(
                rows_by_input, processing_time, event_time_limit, positions, source_state
            )

    def _run_batch(
        self,
        rows_by_input: Mapping[str, list[Row]],
        processing_time: int,
        event_time_limit: int | None,
        positions: Mapping[str, int] | None,
        source_state: Mapping[bytes, Any] | None,
    ) -> BatchResult:
        txn = StateTxn(self.store)
        if positions:
            txn.put(_POSITIONS, {**(txn.get(_POSITIONS) or {}), **positions})
        for key, value in (source_state or {}).items():
            txn.put(_SOURCES + key, value)
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
            self._rebuild_local(txn)
        if self._write_fingerprints:
            txn.put(_QUERY_PREFIX + b"operators", self._fingerprints)
        evict_wms = self.query.watermarks.inputs(wm)
        late_wms = self.query.watermarks.inputs(late)
        operators: list[OperatorBatch] = []
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
            prefix = self._prefixes.get(id(n), b"")
            view = txn.view(prefix)
            n_errors, n_late = len(ctx.errors), len(ctx.late_rows)
            ctx.watermark, ctx.late_watermark = evict_wms[id(n)], late_wms[id(n)]
            ctx.rows_added = ctx.rows_removed = ctx.rows_updated = 0
            if op.stateful and self._names[id(n)] not in self._rows:
                # counted once, before this batch's writes (after a migration's moves)
                self._rows[self._names[id(n)]] = op.state_rows(view)
            if isinstance(op, MultiInputOperator) and len(n.parents) > 1:
                results[id(n)] = op.process_multi([results[id(p)] for p in n.parents], view, ctx)
            else:
                results[id(n)] = op.process(results[id(n.parents[0])], view, ctx)
            if len(ctx.errors) > n_errors:
                failed_at.append((len(ctx.errors), n))
            if op.stateful:
                name = self._names[id(n)]
                held = self._rows[name]
                operators.append(
                    OperatorBatch(
                        op.name,
                        name,
                        prefix,
                        ctx.watermark,
                        len(ctx.late_rows) - n_late,
                        held + ctx.rows_added - ctx.rows_removed,
                        ctx.rows_updated,
                        ctx.rows_removed,
                        ctx.rows_removed if op.windowed else 0,
                    )
                )
        ctx.watermark, ctx.late_watermark = wm, late
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
            ctx.batch_id,
            out,
            txn,
            ctx,
            input_count,
            moved,
            ctx.late_rows,
            origins,
            advance,
            tracer,
            operators,
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
        committed = result.txn.commit(meta, changes)
        for op in result.operators:
            self._rows[op.state_name] = op.rows_total
        return committed

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
