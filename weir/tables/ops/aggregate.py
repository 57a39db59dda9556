"""Streaming aggregations: `stream.group_by(keys..., window(...)).agg(count(), sum("x"), ...)`.

Semantics (Spark Structured Streaming, micro-batch, Spark 3.4+): with W = `ctx.watermark` and
L = `ctx.late_watermark` (the previous batch's W), for a grouping whose time column carries
the query's watermark (a `window`/`session_window` on it, or the column itself as a key):

* a row whose window ends at or before L is dropped for that window and reported once in
  `ctx.late_rows` as (operator name, row); it never recreates evicted state;
* append: after applying the batch, every group whose window ends at or before W is emitted
  once, with its final value, and its state dropped (a no-data batch still does this);
* update: the groups changed by the batch are emitted, then groups ending at or before W are
  dropped;
* complete: the whole result table is emitted every batch; nothing is evicted or dropped as
  late (Spark keeps all state in complete mode).

Without such a watermark nothing is ever dropped or evicted (state grows with the keys) and
append mode is refused at build time, as Spark refuses it.

State layout (keys under the operator's prefix; values are JSON lists of aggregate states):

* ``b"w" + be64(end) + be64(start) + json(keys)``: a time window (or time-key group); the
  big-endian end first makes watermark eviction a range scan that stops at the first end > W;
* ``b"g" + json(keys)``: a group without event time, kept forever;
* ``b"s" + be64(end) + be64(start) + json(keys)``: a session, plus an index
  ``b"i" + json(keys)`` -> ``[[start, end], ...]`` of the group's open sessions.
"""

from __future__ import annotations

import builtins
import operator as _operator
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from weir.tables.operator import BatchContext, Operator, OutputMode, Row
from weir.tables.ops.agg_base import AggregateFunction, keys_sort_key
from weir.tables.ops.agg_fold import Folding
from weir.tables.plan import Node
from weir.tables.state.layout import decode_time, encode_time
from weir.tables.state.store import StateView
from weir.tables.timeutil import to_millis
from weir.tables.window import AnyWindow, SessionWindowSpec, WindowSpec

WINDOW_START = "window_start"
WINDOW_END = "window_end"

_bsum = builtins.sum
_TIMED = b"w"
_PLAIN = b"g"
_PLAIN_KEYS = (str, int, float)


def _group_head(start: Any, end: Any) -> bytes:
    """The state key of a group up to its keys: its window (by end, then start) or none."""
    if end is None:
        return _PLAIN
    return _TIMED + encode_time(end) + encode_time(start)


"""Key types whose natural order is `sort_key`'s within one type class."""
SESSION = b"s"
SESSION_INDEX = b"i"
_APPEND_REFUSED = (
    "Append output mode not supported when there are streaming aggregations on streaming "
    "DataFrames without watermark"
)


class AggregateOperator(Operator, Folding):
    """The stateful operator behind `group_by(...).agg(...)`; see the module docstring.

    Output rows of a batch are sorted by (window_start, window_end, keys). Rows with a
    missing or unparsable time column, or unhashable key values, go to `ctx.errors`, as do
    rows on which an aggregate's Column input raises (they count in no aggregate).

    An aggregate's Column input is compiled here, once, in the scope of `types` (the input
    stream's known column types, `Stream.column_types()`); a name input is read by name.
    """

    stateful = True

    def __init__(
        self,
        parent: Node,
        key_columns: tuple[str, ...],
        window: AnyWindow | None,
        aggregates: list[AggregateFunction],
        types: Mapping[str, str] | None = None,
    ) -> None:
        names = [a.name for a in aggregates]
        out_cols = [*key_columns, *((WINDOW_START, WINDOW_END) if window else ()), *names]
        dupes = sorted({c for c in out_cols if out_cols.count(c) > 1})
        if dupes:
            raise ValueError(f"duplicate output columns {dupes}: alias the aggregates apart")
        self.key_columns = key_columns
        self.window = window
        self.aggregates = list(aggregates)
        self.output_columns = out_cols
        self._init_folding(aggregates, types)
        wm_cols = {col for _name, col, _delay in parent.watermarks}
        self.time_key: int | None = None
        """Index in the keys of a watermarked key column (grouping by event time itself)."""
        self.windowed = window is not None
        if window is not None:
            self.evicts = window.column in wm_cols
        else:
            for i, c in enumerate(key_columns):
                if c in wm_cols:
                    self.time_key = i
                    break
            self.evicts = self.time_key is not None
        what = [*key_columns]
        if isinstance(window, WindowSpec):
            what.insert(0, f"window({window.column})")
        elif isinstance(window, SessionWindowSpec):
            what.insert(0, f"session_window({window.column})")
        self.name = f"aggregate({', '.join(what)})"
        if len(key_columns) == 0:
            self._key: Callable[[Row], Any] = lambda _r: ()
        else:
            self._key = _operator.itemgetter(*key_columns)
        self._single = len(key_columns) == 1

    # -- build-time checks ----------------------------------------------------------------
    def check_output_mode(self, mode: OutputMode, has_watermark: bool) -> None:
        """Raise ValueError, saying why, for the output modes Spark refuses here.

        Append needs a watermark on the grouping's event time (the window's column, or a key
        column) so a group can be known final; update is refused for session windows (a
        session's rows change identity as sessions merge). A chain of aggregations is Spark's
        (3.4+): each one after the first takes the one before's output watermark.
        """
        if mode == "append" and not self.evicts:
            if self.window is not None:
                why = (
                    f"the window's time column {self.window.column!r} has no watermark, so "
                    "no window can ever be known final"
                    if has_watermark
                    else "declare with_watermark(...) on the window's time column"
                )
            else:
                why = (
                    "group by a window(...) on the watermarked column (or by that column) so "
                    "groups can be known final, or use update/complete mode"
                )
            raise ValueError(f"{_APPEND_REFUSED}: {why}")
        if mode == "update" and isinstance(self.window, SessionWindowSpec):
            raise ValueError(
                "Update output mode not supported for session window on streaming "
                "DataFrames/Datasets: use append (with a watermark) or complete"
            )

    def partition_columns(self, parent: int) -> tuple[str, ...] | None:
        return tuple(self.key_columns)

    def emits_late_rows(self, mode: OutputMode) -> bool:
        """Outside append mode a group is emitted again after it changes, after the
        watermark may have passed its time: late for a downstream stateful operator."""
        return mode != "append"

    def output_watermarks(
        self, watermarks: tuple[tuple[str, str, int], ...]
    ) -> tuple[tuple[str, str, int], ...]:
        """A watermarked key column keeps its watermark; the window's time column's watermark
        goes to `window_end` (Spark's window column, compared by its end)."""
        win = self.window
        out = []
        for name, col, delay in watermarks:
            if win is not None and col == win.column:
                out.append((name, WINDOW_END, delay))
            elif col in self.key_columns:
                out.append((name, col, delay))
        return tuple(dict.fromkeys(out))

    def timestamp_columns(self) -> set[str]:
        return {WINDOW_START, WINDOW_END} if self.window is not None else set()

    def fingerprint(self) -> dict[str, Any]:
        """Keys, window and aggregate functions: what the stored groups mean."""
        win = self.window
        window: dict[str, Any] | None = None
        if isinstance(win, WindowSpec):
            window = {"column": win.column, "size_ms": win.size_ms, "slide_ms": win.slide_ms}
            window["offset_ms"] = win.offset_ms
        elif isinstance(win, SessionWindowSpec):
            window = {"column": win.column, "gap_ms": win.gap_ms}
        return {
            "kind": "aggregate",
            "keys": list(self.key_columns),
            "window": window,
            "aggregates": [a.default_name() for a in self.aggregates],
        }

    # -- the batch ------------------------------------------------------------------------
    def process(self, rows: list[Row], state: StateView, ctx: BatchContext) -> list[Row]:
        mode = ctx.output_mode
        active = self.evicts and mode != "complete"
        late_wm = ctx.late_watermark if active else None
        evict_wm = ctx.watermark if active else None
        self._failed = set[int]()
        return self._process(rows, state, ctx, late_wm, evict_wm)

    def _process(
        self,
        rows: list[Row],
        state: StateView,
        ctx: BatchContext,
        late_wm: int | None,
        evict_wm: int | None,
    ) -> list[Row]:
        """The batch with the watermarks that apply (None: no late filter, no eviction)."""
        mode = ctx.output_mode
        groups = self._group(rows, ctx)
        if late_wm is not None and groups:
            late_ids: set[int] = set()
            for gk in [gk for gk in groups if gk[1] is not None and gk[1] <= late_wm]:
                late_ids.update(map(id, groups.pop(gk)))
            if late_ids:
                ctx.late_rows.extend((self.name, r) for r in rows if id(r) in late_ids)
        changed: list[tuple[Any, Any, tuple[Any, ...], list[Any]]] = []
        want_changed = mode == "update"
        added = written = 0
        # Hot loop: the groups of a window share their key prefix; plain aggregates skip the
        # failure handling of `_fold`.
        fold = self._fold_rows if not (self._exprs or self._user_defined) else None
        window_prefix: dict[tuple[Any, Any], bytes] = {}
        dumps, get, put = orjson.dumps, state.get, state.put
        for (start, end, keys), grows in groups.items():
            head = window_prefix.get((start, end))
            if head is None:
                head = window_prefix[start, end] = _group_head(start, end)
            skey = head + dumps(keys)
            st = get(skey)
            new = fold(st, grows) if fold is not None else self._fold(st, grows, ctx)
            if new is None:
                continue
            put(skey, new)
            written += 1
            added += st is None
            if want_changed:
                changed.append((start, end, keys, new))
        ctx.rows_added += added
        ctx.rows_updated += written
        out: list[Row] = []
        if want_changed:
            out = [self._row(s, e, k, st) for s, e, k, st in changed]
        if mode == "complete":
            out = [self._row(*self._decode(k), v) for k, v in state.items(_TIMED)]
            out.extend(self._row(*self._decode(k), v) for k, v in state.items(_PLAIN))
        elif evict_wm is not None and mode == "append":  # the closed groups are the output
            bound = encode_time(evict_wm)
            closed: list[tuple[bytes, Any]] = []
            for key, value in state.items(_TIMED):
                if key[1:9] > bound:
                    break
                closed.append((key, value))
            state.delete_all([key for key, _value in closed])
            ctx.rows_removed += len(closed)
            out = [self._row(*self._decode(k), v) for k, v in closed]
        elif evict_wm is not None:  # the closed groups go without being read
            gone = state.keys(_TIMED, _TIMED + encode_time(evict_wm + 1))
            state.delete_all(gone)
            ctx.rows_removed += len(gone)
        return self._sorted(out)

    def _group(
        self, rows: list[Row], ctx: BatchContext
    ) -> dict[tuple[Any, Any, tuple[Any, ...]], list[Row]]:
        """Group the batch's rows by (start, end, keys); start/end None without event time.

        The hot path: a handful of operations per row. Rows that fail it (missing column,
        unparsable time, unhashable key) take `_slow_fields`, which dead-letters or repairs.
        """
        keyf = self._key
        raw: defaultdict[Any, list[Row]] = defaultdict(list)
        win = self.window
        single = self._single
        if isinstance(win, WindowSpec):
            tcol = win.column
            size, slide, off = win.size_ms, win.slide_ms, win.offset_ms
            if win.tumbling:
                for r in rows:
                    try:
                        t = r[tcol]
                        if type(t) is not int:
                            t = to_millis(t)
                        raw[(t - (t - off) % size, keyf(r))].append(r)
                    except (KeyError, TypeError, ValueError):
                        fields = self._slow_fields(r, ctx)
                        if fields is not None:
                            t, k = fields
                            raw[(t - (t - off) % size, k)].append(r)
            else:
                for r in rows:
                    try:
                        t = r[tcol]
                        if type(t) is not int:
                            t = to_millis(t)
                        k = keyf(r)
                        start = t - (t - off) % slide
                        raw[(start, k)].append(r)
                    except (KeyError, TypeError, ValueError):
                        fields = self._slow_fields(r, ctx)
                        if fields is None:
                            continue
                        t, k = fields
                        start = t - (t - off) % slide
                        raw[(start, k)].append(r)
                    start -= slide
                    while start + size > t:
                        raw[(start, k)].append(r)
                        start -= slide
            return {(s, s + size, (k,) if single else k): g for (s, k), g in raw.items()}
        for r in rows:
            try:
                raw[keyf(r)].append(r)
            except (KeyError, TypeError):
                fields = self._slow_fields(r, ctx)
                if fields is not None:
                    raw[fields[1]].append(r)
        out: dict[tuple[Any, Any, tuple[Any, ...]], list[Row]] = {}
        tk = self.time_key
        for k, g in raw.items():
            keys = (k,) if single else k
            if tk is None:
                out[(None, None, keys)] = g
                continue
            t = keys[tk]
            if type(t) is not int:
                reason = f"{self.name}: {self.key_columns[tk]} is not epoch ms: {t!r}"
                ctx.errors.extend((r, reason, "event_time") for r in g)
                continue
            out[(t, t, keys)] = g
        return out

    def _slow_fields(self, row: Row, ctx: BatchContext) -> tuple[Any, Any] | None:
        """Return (time or None, key) for a row the fast path refused, or dead-letter it.

        A missing key column groups under a null key, as Spark does; a missing or unparsable
        time column and an unhashable key value are errors.
        """
        t: Any = None
        if self.window is not None:
            col = self.window.column
            raw_t = row.get(col)
            if raw_t is None:
                ctx.errors.append((row, f"{self.name}: missing time column {col!r}", "schema"))
                return None
            try:
                t = raw_t if type(raw_t) is int else to_millis(raw_t)
            except ValueError as exc:
                ctx.errors.append((row, f"{self.name}: {col}: {exc}", "event_time"))
                return None
        if self._single:
            k: Any = row.get(self.key_columns[0])
        else:
            k = tuple(row.get(c) for c in self.key_columns)
        try:
            hash(k)
        except TypeError as exc:
            ctx.errors.append((row, f"{self.name}: key value cannot be grouped: {exc}", "schema"))
            return None
        return t, k

    def state_rows(self, state: StateView) -> int:
        """Return the number of groups and sessions held (the session index not counted)."""
        return _bsum(1 for k, _v in state.items() if not k.startswith(SESSION_INDEX))

    # -- state encoding -------------------------------------------------------------------
    @staticmethod
    def _decode(key: bytes) -> tuple[Any, Any, tuple[Any, ...]]:
        if key[:1] == _PLAIN:
            return None, None, tuple(orjson.loads(key[1:]))
        return decode_time(key[9:17]), decode_time(key[1:9]), tuple(orjson.loads(key[17:]))

    def _row(self, start: Any, end: Any, keys: tuple[Any, ...], st: list[Any]) -> Row:
        row: Row = dict(zip(self.key_columns, keys, strict=True))
        if self.window is not None:
            row[WINDOW_START] = start
            row[WINDOW_END] = end
        if self._states_are_results:
            row.update(zip([a.name for a in self.aggregates], st, strict=True))
            return row
        for a, s in zip(self.aggregates, st, strict=True):
            row[a.name] = a.result(s)
        return row

    def _sorted(self, out: list[Row]) -> list[Row]:
        """`out` by window, then keys in `sort_key` order (None, numbers, strings, others)."""
        if len(out) < 2:
            return out
        cols = self.key_columns
        fields = [WINDOW_START, WINDOW_END, *cols] if self.window is not None else list(cols)
        first = out[0]
        if fields and all(type(first[c]) in _PLAIN_KEYS for c in cols):
            # Keys of one plain type per column compare in C in sort_key's order; a None,
            # a mixed type or a container makes Python raise, and the general path runs.
            try:
                return sorted(out, key=_operator.itemgetter(*fields))
            except TypeError:
                pass
        if self.window is not None:
            return sorted(
                out,
                key=lambda r: (r[WINDOW_START], r[WINDOW_END], keys_sort_key(r[c] for c in cols)),
            )
        return sorted(out, key=lambda r: keys_sort_key(r[c] for c in cols))
