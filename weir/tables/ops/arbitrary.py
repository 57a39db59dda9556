"""Arbitrary keyed state with timeouts: Spark's `flatMapGroupsWithState` / `mapGroupsWithState`.

    def func(key: tuple, values: list[Row], state: GroupState) -> Iterable[Row]: ...
    sessions = flat_map_groups_with_state(events, ["user_id"], func, timeout="event")

Contract, per micro-batch (Spark semantics):

1. Rows are grouped by the values of `keys`; `func(key, values, state)` is called once per key
   that has rows in the batch, in order of first appearance, with the rows in arrival order.
   `key` is a tuple of the key values.
2. Then `func(key, [], state)` is called, with `state.has_timed_out` True, for every key whose
   timeout has expired: with `timeout="processing"` a timeout timestamp strictly before the
   batch's processing time; with `timeout="event"` strictly before the batch's watermark
   W(k). Timed-out keys are visited in timeout order. This happens in data and in no-data
   batches alike (a processing-time timeout needs the runner to run batches while idle).
3. The timeout is reset at every call: set it again in each call that should time out.
   `set_timeout_duration(d)` sets processing time + d; `set_timeout_timestamp(t)` sets an
   event time, which may not be before the current watermark.
4. `state.update(v)` stores a JSON-able value; `state.remove()` drops it. Changes are kept
   only if `func` returns normally: if it raises, its rows (or, for a timeout call, a row with
   the key) go to the dead letters with the reason and the state is left unchanged.
5. With `timeout="event"`, rows whose watermarked event time is at or before L(k) are late
   (they go to `ctx.late_rows`), as in Spark.

The returned rows are emitted in call order. Output modes: append or update (not complete).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from weir.tables.operator import BatchContext, Operator, OutputMode, Row
from weir.tables.ops.aggregate import AggregateOperator
from weir.tables.state.layout import TimeIndex, encode_key
from weir.tables.state.store import StateView
from weir.tables.timeutil import Duration, parse_duration, to_millis
from weir.tables.watermark import event_time, event_time_columns

TimeoutKind = Literal["none", "processing", "event"]

_NO_STATE = "State is either not defined or has already been removed"


class GroupState:
    """The state handle of one key during one call of the user function.

    Contract: reads see the value as of the start of the call plus this call's own changes;
    nothing reaches the state store unless the call returns normally.
    """

    __slots__ = (
        "_exists",
        "_processing_time",
        "_removed",
        "_timed_out",
        "_timeout",
        "_timeout_kind",
        "_updated",
        "_value",
        "_watermark",
    )

    def __init__(
        self,
        value: Any,
        exists: bool,
        *,
        timed_out: bool,
        timeout_kind: TimeoutKind,
        processing_time: int,
        watermark: int | None,
    ) -> None:
        self._value = value
        self._exists = exists
        self._timed_out = timed_out
        self._timeout_kind: TimeoutKind = timeout_kind
        self._processing_time = processing_time
        self._watermark = watermark
        self._timeout: int | None = None
        self._updated = False
        self._removed = False

    @property
    def exists(self) -> bool:
        """True when the key has a state value."""
        return self._exists

    def get(self) -> Any:
        """Return the state value; ValueError if there is none."""
        if not self._exists:
            raise ValueError(_NO_STATE)
        return self._value

    def get_option(self) -> Any:
        """Return the state value, or None if there is none."""
        return self._value if self._exists else None

    def update(self, value: Any) -> None:
        """Set the state value (JSON-able; None is not a valid state value, use `remove`)."""
        if value is None:
            raise ValueError("None is not a valid state value: call remove() instead")
        self._value = value
        self._exists = True
        self._updated = True
        self._removed = False

    def remove(self) -> None:
        """Drop the state value (a timeout set in this call still applies)."""
        self._value = None
        self._exists = False
        self._removed = True
        self._updated = False

    @property
    def has_timed_out(self) -> bool:
        """True when this call is a timeout call (no values)."""
        return self._timed_out

    def set_timeout_duration(self, duration: Duration) -> None:
        """Time the key out at the batch's processing time plus `duration`."""
        if self._timeout_kind != "processing":
            raise ValueError(
                "Cannot set timeout duration without enabling processing time timeout in "
                'flat_map_groups_with_state(..., timeout="processing")'
            )
        self._timeout = self._processing_time + parse_duration(duration)

    def set_timeout_timestamp(self, timestamp: object, additional: Duration | None = None) -> None:
        """Time the key out when the watermark passes `timestamp` (+ `additional`)."""
        if self._timeout_kind != "event":
            raise ValueError(
                "Cannot set timeout timestamp without enabling event time timeout in "
                'flat_map_groups_with_state(..., timeout="event")'
            )
        ts = to_millis(timestamp) + (parse_duration(additional) if additional else 0)
        if self._watermark is not None and ts < self._watermark:
            raise ValueError(
                f"Timeout timestamp ({ts}) cannot be earlier than the current watermark "
                f"({self._watermark})"
            )
        self._timeout = ts

    def get_current_watermark_ms(self) -> int | None:
        """W(k) of the batch, epoch ms (None before any watermark)."""
        return self._watermark

    def get_current_processing_time_ms(self) -> int:
        """The batch's processing time, epoch ms."""
        return self._processing_time


GroupFunc = Callable[[tuple[Any, ...], list[Row], GroupState], Iterable[Row] | None]


class FlatMapGroupsWithStateOperator(Operator):
    """See the module docstring.

    State layout: b"s" + JSON(key) -> [key values, state value or None, timeout or None];
    in local state (rebuilt from those after a restore), a `TimeIndex` under b"t" of
    (timeout, JSON(key)) -> 1 so that expired timeouts are found by a range scan.
    """

    stateful = True
    single: bool = False
    """True for Spark's mapGroupsWithState (one row per call; update mode only)."""

    def __init__(
        self,
        keys: Sequence[str],
        func: GroupFunc,
        timeout: TimeoutKind,
        late_col: str | None,
        output_mode: Literal["append", "update"],
        timestamp_cols: Iterable[str] = (),
    ) -> None:
        self.keys = list(keys)
        self.func = func
        self.timeout: TimeoutKind = timeout
        self.late_col = late_col
        self.output_mode = output_mode
        self._ts = set(timestamp_cols)
        self.name = f"flat_map_groups_with_state({getattr(func, '__name__', 'func')})"
        self.width = 60_000

    def partition_columns(self, parent: int) -> tuple[str, ...] | None:
        return tuple(self.keys)

    def default_state_name(self) -> str:
        func = getattr(self.func, "__qualname__", "func")
        return f"flat_map_groups_with_state({func}, {', '.join(self.keys)})"

    def fingerprint(self) -> dict[str, Any]:
        """Keys, timeout kind and the function's name."""
        return {
            "kind": "flat_map_groups_with_state",
            "keys": self.keys,
            "timeout": self.timeout,
            "function": getattr(self.func, "__qualname__", "func"),
            "index": "local",
        }

    def check_output_mode(self, mode: str, has_watermark: bool) -> None:
        """Refuse complete mode, and update-mode functions in an append-mode query."""
        if mode == "complete":
            raise ValueError(
                "flatMapGroupsWithState is not supported in Complete output mode: there is "
                "no result table to re-emit"
            )
        if mode == "append" and self.output_mode == "update":
            raise ValueError(
                "flatMapGroupsWithState in update mode is not supported with Append output "
                'mode on a streaming DataFrame/Dataset: pass output_mode="append"'
            )

    def timestamp_columns(self) -> set[str]:
        return set(self._ts)

    def check_plan(self, operators: list[Operator], mode: OutputMode) -> None:
        """Spark's rules for several of these in one query, or one with an aggregation."""
        mine = [o for o in operators if isinstance(o, FlatMapGroupsWithStateOperator)]
        maps = [o for o in mine if o.single]
        if len(maps) > 1:
            raise ValueError(
                "Multiple mapGroupsWithStates are not supported on a streaming DataFrames/Datasets"
            )
        if maps and len(maps) < len(mine):
            raise ValueError(
                "Mixing mapGroupsWithStates and flatMapGroupsWithStates are not supported on a "
                "streaming DataFrames/Datasets"
            )
        if len(mine) > 1 and (mode != "append" or any(o.output_mode != "append" for o in mine)):
            raise ValueError(
                "Multiple flatMapGroupsWithStates are not supported when they are not all in "
                "append mode or the output mode is not append on a streaming DataFrame/Dataset"
            )
        aggregates = any(isinstance(o, AggregateOperator) for o in operators)
        if not self.single and self.output_mode == "update" and aggregates:
            raise ValueError(
                "flatMapGroupsWithState in update mode is not supported with aggregation on a "
                'streaming DataFrame/Dataset: pass output_mode="append"'
            )

    def output_watermark(self, input_watermark: int) -> int | None:
        """None: the function's output rows need not relate to any event time (Spark)."""
        return None

    def output_watermarks(
        self, watermarks: tuple[tuple[str, str, int], ...]
    ) -> tuple[tuple[str, str, int], ...]:
        return ()

    def emits_late_rows(self, mode: OutputMode) -> bool:
        """With an event-time timeout the function may emit rows for times the watermark has
        passed (Spark refuses a stateful operator after it)."""
        return self.timeout == "event"

    def _call(
        self,
        key: tuple[Any, ...],
        kb: bytes,
        values: list[Row],
        entry: list[Any] | None,
        timed_out: bool,
        state: StateView,
        idx: TimeIndex,
        ctx: BatchContext,
        out: list[Row],
    ) -> None:
        old_value = entry[1] if entry is not None else None
        old_timeout = entry[2] if entry is not None else None
        gs = GroupState(
            old_value,
            old_value is not None,
            timed_out=timed_out,
            timeout_kind=self.timeout,
            processing_time=ctx.processing_time,
            watermark=ctx.watermark,
        )
        try:
            result = self.func(key, values, gs)
            emitted = list(result) if result is not None else []
        except Exception as exc:
            reason = f"{self.name} failed: {type(exc).__name__}: {exc}"
            bad = values or [dict(zip(self.keys, key, strict=True))]
            ctx.errors.extend((r, reason, "user_function") for r in bad)
            if timed_out and old_timeout is not None:
                # Keep the key retrievable: re-arm the timeout that was just popped.
                idx.put(old_timeout, kb, 1)
            return
        out.extend(emitted)
        new_timeout = gs._timeout
        skey = b"s" + kb
        if timed_out:
            old_timeout = None  # its index entry was popped already
        elif old_timeout is not None and old_timeout != new_timeout:
            idx.delete(old_timeout, kb)
        if new_timeout is not None and new_timeout != old_timeout:
            idx.put(new_timeout, kb, 1)
        if not gs._exists and new_timeout is None:
            if entry is not None:
                state.delete(skey)
                ctx.rows_removed += 1
            return
        changed = gs._updated or gs._removed or entry is None or new_timeout != entry[2]
        if changed:
            state.put(skey, [list(key), gs._value if gs._exists else None, new_timeout])
            ctx.rows_added += entry is None
            ctx.rows_updated += 1

    def process(self, rows: list[Row], state: StateView, ctx: BatchContext) -> list[Row]:
        """Call the function for keys with data, then for timed-out keys; see the module doc."""
        groups: dict[bytes, tuple[tuple[Any, ...], list[Row]]] = {}
        late = ctx.late_watermark if self.timeout == "event" else None
        col = self.late_col
        for row in rows:
            if col is not None and late is not None:
                try:
                    ts = event_time(row, col)
                except ValueError as exc:
                    ctx.errors.append((row, f"{self.name}: {col}: {exc}", "event_time"))
                    continue
                if ts <= late:
                    ctx.late_rows.append((self.name, row))
                    continue
            key = tuple(row.get(c) for c in self.keys)
            kb = encode_key(key)
            group = groups.get(kb)
            if group is None:
                groups[kb] = (key, [row])
            else:
                group[1].append(row)
        idx = TimeIndex(state.local(), b"t", self.width)
        out: list[Row] = []
        for kb, (key, values) in groups.items():
            entry = state.get(b"s" + kb)
            self._call(key, kb, values, entry, False, state, idx, ctx, out)
        bound: int | None = None
        if self.timeout == "processing":
            bound = ctx.processing_time - 1
        elif self.timeout == "event" and ctx.watermark is not None:
            bound = ctx.watermark - 1
        if bound is not None:
            for kb in idx.pop_through(bound):
                entry = state.get(b"s" + kb)
                if entry is None:
                    continue
                self._call(tuple(entry[0]), kb, [], entry, True, state, idx, ctx, out)
        idx.flush()
        return out

    def wants_batch(self, state: StateView, processing_time: int) -> bool:
        """True when a processing-time timeout is due, so an idle query still fires it."""
        if self.timeout != "processing":
            return False
        first = TimeIndex(state.local(), b"t", self.width).earliest()
        return first is not None and first < processing_time

    def state_rows(self, state: StateView) -> int:
        """Number of keys with state (or a pending timeout)."""
        return sum(1 for _ in state.items(b"s"))

    def rebuild_local(self, state: StateView) -> None:
        """The timeout index, from the timeouts kept with each key's state."""
        state.delete_all(state.keys(b"t"))  # where an older Weir kept the index
        idx = TimeIndex(state.local(), b"t", self.width)
        for key, entry in state.items(b"s"):
            if entry[2] is not None:
                idx.put(entry[2], key[1:], 1)
        idx.flush()


def group_state_operator(
    watermarks: Iterable[tuple[str, str, int]],
    keys: str | Sequence[str],
    func: GroupFunc,
    timeout: TimeoutKind,
    output_mode: Literal["append", "update"],
    timestamp_columns: Iterable[str],
) -> FlatMapGroupsWithStateOperator:
    """The operator behind `flat_map_groups_with_state` over a stream with the given
    `watermarks` (input, column, delay). Raises ValueError for an event-time timeout on a
    stream without a watermark (as Spark does)."""
    key_list = [keys] if isinstance(keys, str) else list(keys)
    if not key_list:
        raise ValueError("flat_map_groups_with_state needs at least one key column")
    if timeout not in ("none", "processing", "event"):
        raise ValueError(f"unknown timeout {timeout!r}: 'none', 'processing' or 'event'")
    wms = event_time_columns(watermarks)
    if timeout == "event" and not wms:
        raise ValueError(
            "Watermark must be specified in the query using with_watermark() for using "
            "event-time timeout in a flat_map_groups_with_state. Event-time timeout not "
            "supported without watermark."
        )
    late_col = next(iter(wms)) if len(wms) == 1 else None
    return FlatMapGroupsWithStateOperator(
        key_list, func, timeout, late_col, output_mode, timestamp_columns
    )
