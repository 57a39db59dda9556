"""Session windows (`group_by(session_window(col, gap), keys...)`): a session per key grows
while rows arrive within `gap` of it and closes when the watermark passes its end; sessions
that a row bridges merge. Semantics and output modes as in `aggregate`; state layout
``b"s" + be64(end) + be64(start) + json(keys)`` per session, plus the index
``b"i" + json(keys)`` -> ``[[start, end], ...]`` of the key's open sessions."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from weir.tables.operator import BatchContext, Row
from weir.tables.ops.aggregate import SESSION, SESSION_INDEX, AggregateOperator
from weir.tables.state.layout import decode_time, encode_time
from weir.tables.state.store import StateView
from weir.tables.timeutil import to_millis
from weir.tables.window import SessionWindowSpec


class SessionAggregateOperator(AggregateOperator):
    """`group_by(session_window(...), ...).agg(...)`; see the module docstring."""

    def _process(
        self,
        rows: list[Row],
        state: StateView,
        ctx: BatchContext,
        late_wm: int | None,
        evict_wm: int | None,
    ) -> list[Row]:
        """Merge the batch's rows into each key's open sessions; emit and evict closed ones."""
        win = self.window
        assert isinstance(win, SessionWindowSpec)
        gap = win.gap_ms
        tcol = win.column
        keyf = self._key
        single = self._single
        mode = ctx.output_mode
        by_key: defaultdict[Any, list[tuple[int, int, Row]]] = defaultdict(list)
        for i, r in enumerate(rows):
            try:
                t = r[tcol]
                if type(t) is not int:
                    t = to_millis(t)
                by_key[keyf(r)].append((t, i, r))
            except (KeyError, TypeError, ValueError):
                fields = self._slow_fields(r, ctx)
                if fields is not None:
                    by_key[fields[1]].append((fields[0], i, r))
        late_ids: set[int] = set()
        changed: list[tuple[int, int, tuple[Any, ...], list[Any]]] = []
        puts: list[tuple[bytes, list[Any]]] = []
        merged_away: set[bytes] = set()
        """Sessions deleted as merged into a new one (the same key when it did not move)."""
        for k, items in by_key.items():
            if late_wm is not None:
                keep = []
                for item in items:
                    if item[0] + gap <= late_wm:
                        late_ids.add(id(item[2]))
                    else:
                        keep.append(item)
                if not keep:
                    continue
                items = keep
            keys = (k,) if single else k
            kj = orjson.dumps(keys)
            index_key = SESSION_INDEX + kj
            existing: list[list[int]] = state.get(index_key) or []
            # Every open session and every new row as an interval, merged by a sweep over
            # starts: intervals that overlap or touch (start <= current end) are one session.
            intervals: list[tuple[int, int, int, Row | None]] = [
                (s, e, -1, None) for s, e in existing
            ]
            intervals.extend((t, t + gap, i, r) for t, i, r in items)
            intervals.sort(key=lambda iv: (iv[0], iv[2]))
            clusters: list[list[Any]] = []
            cur: list[Any] | None = None
            for s, e, i, maybe_row in intervals:
                if cur is not None and s <= cur[1]:
                    if e > cur[1]:
                        cur[1] = e
                else:
                    cur = [s, e, [], []]
                    clusters.append(cur)
                if maybe_row is None:
                    cur[2].append((s, e))
                else:
                    cur[3].append((i, maybe_row))
            for s, e, olds, news in clusters:
                if not news:
                    continue
                st: list[Any] | None = None
                for old_start, old_end in olds:
                    old_key = SESSION + encode_time(old_end) + encode_time(old_start) + kj
                    old_st = state.get(old_key)
                    state.delete(old_key)
                    if old_st is not None:
                        merged_away.add(old_key)
                        st = old_st if st is None else self._merge(st, old_st)
                news.sort(key=lambda n: n[0])
                st = self._fold(st, [r for _i, r in news], ctx)
                if st is None:  # every row of a new session failed: an empty session
                    st = [a.init() for a in self.aggregates]
                puts.append((SESSION + encode_time(e) + encode_time(s) + kj, st))
                changed.append((s, e, keys, st))
            state.put(index_key, [[c[0], c[1]] for c in clusters])
        for key, value in puts:
            state.put(key, value)
        moved = merged_away.difference(key for key, _value in puts)
        ctx.rows_added += len(puts) - (len(merged_away) - len(moved))
        ctx.rows_removed += len(moved)
        ctx.rows_updated += len(puts)
        if late_ids:
            ctx.late_rows.extend((self.name, r) for r in rows if id(r) in late_ids)
        out: list[Row] = []
        if mode == "update":
            out = [self._row(s, e, k, st) for s, e, k, st in changed]
        if mode == "complete":
            out = [self._row(*self._decode(k), v) for k, v in state.items(SESSION)]
        elif evict_wm is not None:
            bound = encode_time(evict_wm)
            closed = []
            for key, value in state.items(SESSION):
                if key[1:9] > bound:
                    break
                closed.append((key, value))
            gone: defaultdict[bytes, list[list[int]]] = defaultdict(list)
            ctx.rows_removed += len(closed)
            for key, _value in closed:
                state.delete(key)
                gone[key[17:]].append([decode_time(key[9:17]), decode_time(key[1:9])])
            for kj, sessions in gone.items():
                index_key = SESSION_INDEX + kj
                left = [iv for iv in state.get(index_key) or [] if iv not in sessions]
                if left:
                    state.put(index_key, left)
                else:
                    state.delete(index_key)
            if mode == "append":
                out = [self._row(*self._decode(k), v) for k, v in closed]
        return self._sorted(out)
