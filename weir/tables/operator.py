"""The operator interface: one step of a query, run once per micro-batch per task.

Operators are pure logic over rows (dicts) and a state view; they never touch Kafka. Event
times inside the engine are epoch milliseconds (ints); see `weir.tables.timeutil`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from weir.tables.state.store import StateView

Row = dict[str, Any]
RowIndex = Callable[[list[Row]], dict[int, int]]
OutputMode = Literal["append", "update", "complete"]
ErrorStage = Literal["decode", "schema", "event_time", "user_function", "sink", "size", "batch"]
"""Where a record failed: its value (decode), its columns (schema), its event time, user code,
a sink, a size limit, or a whole batch that could not be processed (`error.stage` header)."""


@dataclass(slots=True)
class BatchContext:
    """What an operator knows about the micro-batch it is processing."""

    batch_id: int
    """Micro-batch id, from 0, consecutive per task; a restart resumes the sequence."""
    watermark: int | None
    """W(k), the eviction watermark in epoch ms; None before any watermarked event."""
    late_watermark: int | None
    """L(k) = W(k-1): rows whose event time (or window end) is at or before it are late."""
    processing_time: int
    """Wall-clock epoch ms at the start of the batch (fixed per batch; replay makes it 0)."""
    has_data: bool
    """False in a no-data batch, run only to let a moved watermark evict and emit."""
    output_mode: OutputMode = "append"
    """The query's output mode."""
    event_time_limit: int | None = None
    """Event times after this (epoch ms) are refused as too far ahead of processing time:
    dead-lettered, never observed by the watermark (None: no limit)."""
    late_rows: list[tuple[str, Row]] = field(default_factory=list)
    """Rows dropped as late, with the operator name; counted in metrics, optionally routed."""
    errors: list[tuple[Row, str, ErrorStage]] = field(default_factory=list)
    """Rows that could not be processed, with a one-line reason and the kind of failure; they
    go to the dead letters."""
    observed: dict[str, int] = field(default_factory=dict)
    """Largest event time seen in this batch per input (filled by `with_watermark`)."""
    rows_added: int = 0
    """A stateful operator adds the state rows it created in this batch (the query resets it
    per operator); with `rows_removed` it keeps `numRowsTotal` exact without a scan: the
    operator's `state_rows` moves by exactly `rows_added - rows_removed`."""
    rows_removed: int = 0
    """State rows the operator removed in this batch (evicted, expired, merged away)."""
    rows_updated: int = 0
    """State rows the operator wrote in this batch, new or changed (Spark's numRowsUpdated)."""

    event_times: list[int] = field(default_factory=list)
    """[min, max, sum, count] of the event times `with_watermark` read in this batch, over all
    its inputs (empty before any): Spark's progress `eventTime` min, max and avg."""

    def note_event_times(self, times: list[int]) -> None:
        """Add `times` (a `with_watermark` column's values, epoch ms) to `event_times`."""
        if not times:
            return
        lo, hi, total = min(times), max(times), sum(times)
        stats = self.event_times
        if stats:
            stats[:] = [
                min(stats[0], lo),
                max(stats[1], hi),
                stats[2] + total,
                stats[3] + len(times),
            ]
        else:
            stats.extend((lo, hi, total, len(times)))

    def observe(self, input_name: str, ts: int) -> None:
        """Record that `input_name` carried an event at time `ts` in this batch."""
        cur = self.observed.get(input_name)
        if cur is None or ts > cur:
            self.observed[input_name] = ts


class Operator(ABC):
    """A step of a query's operator chain.

    Contract: `process` receives the rows of one task's micro-batch in arrival order and
    returns the rows it emits, in a deterministic order. All state goes through `state`
    (nothing is kept on `self` between batches except caches that `state` can rebuild), so a
    dropped transaction leaves no trace and a restore from the changelog reproduces it.
    Stateless operators ignore `state`.
    """

    name: str = "op"
    stateful: bool = False
    state_name: str | None = None
    """Stateful operators: the name the user gave their state (`Stream.name`), if any."""
    windowed: bool = False
    """Stateful operators: True when the rows it removes are closed windows or sessions."""
    declares_watermark: bool = False
    """True for `with_watermark`: the planner repeats it after a repartition."""

    @abstractmethod
    def process(self, rows: list[Row], state: StateView, ctx: BatchContext) -> list[Row]:
        """Process one batch and return the emitted rows."""

    def state_rows(self, state: StateView) -> int:
        """Return how many state rows this operator holds (for progress; may scan)."""
        return sum(1 for _ in state.items())

    def rebuild_local(self, state: StateView) -> None:  # noqa: B027 - optional hook
        """Stateful operators that keep local state (`state.local()`, an eviction index):
        write it again from `state` alone, and drop from `state` what an older Weir kept
        there instead; called with the local state empty, after changelog records were
        applied to the store (a restore) or the state was moved."""

    def timestamp_columns(self) -> set[str]:
        """Return the output columns that hold epoch-ms timestamps (rendered as ISO-8601)."""
        return set()

    def default_state_name(self) -> str:
        """Stateful operators: the state name when the user gives none, from the operator's
        kind and columns (never its position in the plan); see weir.tables.state_names."""
        return self.name

    def fingerprint(self) -> dict[str, Any]:
        """Stateful operators: the JSON-able configuration the meaning of their state depends
        on; a restart with another one for the same state name is refused."""
        return {"kind": self.name}

    def partition_columns(self, parent: int) -> tuple[str, ...] | None:
        """The columns whose values must co-locate the rows arriving from parent number
        `parent` in one task (the planner repartitions by them): () for none (stateless
        operators), None for the whole row (dedup of entire rows)."""
        return ()

    def upstream_columns(self, parent: int, columns: tuple[str, ...]) -> tuple[str, ...]:
        """The columns of parent number `parent`'s rows that carry output columns `columns`
        unchanged (the planner's co-location of chained stateful operators): the same names
        by default; a join maps its key columns to each side's names."""
        return columns

    def check_output_mode(self, mode: OutputMode, has_watermark: bool) -> None:  # noqa: B027
        """Raise ValueError, saying why, when the query's output mode is one Spark refuses
        for this operator (`has_watermark`: the query declares a watermark)."""

    def output_watermark(self, input_watermark: int) -> int | None:
        """The watermark this operator passes downstream, given its input watermark (Spark's
        `produceOutputWatermark`): unchanged by default; None when its output rows carry no
        event time a downstream operator could trust."""
        return input_watermark

    def output_watermarks(
        self, watermarks: tuple[tuple[str, str, int], ...]
    ) -> tuple[tuple[str, str, int], ...]:
        """The (input, column, delay) watermarks of the output rows, given the input rows'
        ones: unchanged by default; an aggregation keeps only what its output columns carry."""
        return watermarks

    def emits_late_rows(self, mode: OutputMode) -> bool:
        """True when, in output mode `mode`, this operator may emit rows a downstream stateful
        operator would take as late (Spark refuses such chains): an aggregation outside
        append mode, arbitrary state with an event-time timeout."""
        return False

    def watches_event_time(self) -> bool:
        """True for a stateful operator that drops late rows or evicts by event time, so an
        upstream `emits_late_rows` operator would make it lose rows."""
        return self.stateful

    def check_plan(self, operators: list[Operator], mode: OutputMode) -> None:  # noqa: B027
        """Raise ValueError, saying why, when Spark refuses this operator together with the
        other `operators` of the query (all of them, this one included) in output mode
        `mode`."""

    def wants_batch(self, state: StateView, processing_time: int) -> bool:
        """True when the operator needs a batch now even without input (a due timer)."""
        return False

    def origin(
        self, pos: int, output: list[Row], inputs: list[list[Row]], index: RowIndex
    ) -> tuple[int, int] | None:
        """Where emitted row `output[pos]` came from: (parent index, position in that parent's
        rows), or None when it has no single source row (an aggregate, a joined row).

        Used only to trace a failed row back to its input record, so it may be slow. The
        default finds the very same row object in an input (operators that pass rows on);
        `index(rows)` maps `id(row)` to its position in `rows`.
        """
        row_id = id(output[pos])
        for i, rows in enumerate(inputs):
            j = index(rows).get(row_id)
            if j is not None:
                return i, j
        return None


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
