"""Event-time window specs for `group_by`: tumbling, sliding and session windows.

`window(column, size, slide=None)` and `session_window(column, gap)` mirror Spark's
`window` and `session_window` functions; the time column is a name, a `col(name)`, or a
computed Column (`window(to_timestamp(col("ts")), "1 minute")`, computed by `group_by` into
a column named by the expression before the rows are grouped). They build small immutable
specs; the grouping itself (assigning rows to windows, merging sessions, evicting by
watermark) happens in
`weir.tables.ops.aggregate` and `weir.tables.ops.sessions`. Times are epoch milliseconds (ints)
inside the engine; a window covers the half-open interval ``[start, end)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weir.tables.expressions.expr import Column
from weir.tables.timeutil import Duration, parse_duration


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A tumbling or sliding time window over `column` (Spark's `window(...)`).

    Windows are aligned to the epoch (shifted by `offset_ms`): their starts are exactly the
    times ``s`` with ``(s - offset_ms) % slide_ms == 0``. A row at time ``t`` belongs to
    every window with ``start <= t < start + size_ms`` (one window when tumbling, about
    ``size_ms / slide_ms`` when sliding).
    """

    column: str
    """The event-time column (epoch ms, ISO-8601 text or datetime)."""
    size_ms: int
    """Window length in ms (> 0)."""
    slide_ms: int
    """Distance between consecutive window starts in ms; equals `size_ms` when tumbling."""
    offset_ms: int = 0
    """Spark's `startTime`: shift of the window grid from the epoch, 0 <= offset < slide."""
    expr: Column | None = field(default=None, compare=False, repr=False)
    """The computed Column behind `column`, or None when `column` is an input field."""

    @property
    def tumbling(self) -> bool:
        """True when windows do not overlap (slide == size)."""
        return self.slide_ms == self.size_ms

    def windows_of(self, ts: int) -> list[tuple[int, int]]:
        """Return every (start, end) window covering `ts`, latest start first."""
        size, slide = self.size_ms, self.slide_ms
        start = ts - (ts - self.offset_ms) % slide
        out: list[tuple[int, int]] = []
        while start + size > ts:
            out.append((start, start + size))
            start -= slide
        return out


@dataclass(frozen=True, slots=True)
class SessionWindowSpec:
    """A session window over `column` with inactivity `gap_ms` (Spark's `session_window`).

    Each row at ``t`` opens the session ``[t, t + gap_ms)``; sessions of the same group whose
    intervals overlap or touch (``next.start <= current.end``, as Spark merges them) are one
    session. So a session extends while consecutive events are at most `gap_ms` apart, a row
    that bridges two sessions merges them, and a session ends at its last event + `gap_ms`.
    """

    column: str
    """The event-time column (epoch ms, ISO-8601 text or datetime)."""
    gap_ms: int
    """Inactivity gap in ms (> 0)."""
    expr: Column | None = field(default=None, compare=False, repr=False)
    """The computed Column behind `column`, or None when `column` is an input field."""


AnyWindow = WindowSpec | SessionWindowSpec


def _time_column(what: str, column: str | Column) -> tuple[str, Column | None]:
    """(the column's name, the Column to compute it or None for an input field)."""
    if isinstance(column, Column):
        return (column.field, None) if column.field is not None else (column.name, column)
    if not isinstance(column, str) or not column:
        raise ValueError(f"{what}() needs a column name or a Column, not {column!r}")
    return column, None


def window(
    column: str | Column, size: Duration, slide: Duration | None = None, start_time: Duration = 0
) -> WindowSpec:
    """Spark's `window(timeColumn, windowDuration, slideDuration=None, startTime=None)`.

    Tumbling when `slide` is None, sliding otherwise. Durations are text ("10 minutes"), a
    `timedelta` or int milliseconds. Raises ValueError for a non-positive size or slide, a
    slide longer than the window, or a `start_time` not smaller than the slide (as Spark does).
    """
    name, expr = _time_column("window", column)
    size_ms = parse_duration(size)
    slide_ms = size_ms if slide is None else parse_duration(slide)
    offset_ms = parse_duration(start_time)
    if size_ms <= 0:
        raise ValueError(f"the window duration must be positive, not {size!r}")
    if slide_ms <= 0:
        raise ValueError(f"the slide duration must be positive, not {slide!r}")
    if slide_ms > size_ms:
        raise ValueError(
            f"the slide duration ({slide!r}) must be less than or equal to the window "
            f"duration ({size!r})"
        )
    if offset_ms >= slide_ms:
        raise ValueError(
            f"the start time ({start_time!r}) must be less than the slide duration ({slide_ms} ms)"
        )
    return WindowSpec(name, size_ms, slide_ms, offset_ms, expr)


def session_window(column: str | Column, gap: Duration) -> SessionWindowSpec:
    """Spark's `session_window(timeColumn, gapDuration)`; see `SessionWindowSpec`.

    Raises ValueError for a non-positive gap.
    """
    name, expr = _time_column("session_window", column)
    gap_ms = parse_duration(gap)
    if gap_ms <= 0:
        raise ValueError(f"the session gap must be positive, not {gap!r}")
    return SessionWindowSpec(name, gap_ms, expr)


def group_keys(
    keys: tuple[Any, ...],
) -> tuple[tuple[str, ...], AnyWindow | None, dict[str, Column]]:
    """`group_by(*keys)`'s keys as (key column names, the window or None, the computed
    columns {name: Column} to add before grouping).

    A key is a name, a `col(name)` (that column), or another Column (computed, named by its
    alias or Spark's derived name; a renaming alias counts as computed); lists flatten, as in
    Spark; at most one window. Raises ValueError for a key listed twice, a second window, or
    anything else."""
    cols: list[str] = []
    win: AnyWindow | None = None
    computed: dict[str, Column] = {}
    flat: list[Any] = []
    for k in keys:  # group_by(["a", "b"]) works like group_by("a", "b"), as in Spark
        if isinstance(k, list | tuple):
            flat.extend(k)
        else:
            flat.append(k)
    for k in flat:
        if isinstance(k, WindowSpec | SessionWindowSpec):
            if win is not None:
                raise ValueError("group_by accepts at most one window or session_window")
            win = k
            if k.expr is not None:
                computed[k.column] = k.expr
            continue
        if isinstance(k, Column):
            if k.field is None or k.field != k.name:  # computed, or renamed by alias
                computed[k.name] = k
            k = k.name
        if not isinstance(k, str) or not k:
            raise ValueError(f"group_by keys are column names or a window (or Columns), not {k!r}")
        if k in cols:
            raise ValueError(f"group_by key {k!r} is listed twice")
        cols.append(k)
    return tuple(cols), win, computed
