"""The stateless operators: map, filter and flat-map, `with_watermark`, union."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any, Literal

from weir.tables.operator import BatchContext, MultiInputOperator, Operator, Row, RowIndex
from weir.tables.state.store import StateView
from weir.tables.timeutil import MAX_MS, MIN_MS, iso_utc, many_to_millis, to_millis


class MapOperator(Operator):
    """Stateless map, filter or flat-map over rows."""

    def __init__(
        self,
        fn: Callable[[Row], Any],
        kind: Literal["map", "filter", "flat_map"],
        timestamps: Iterable[str] = (),
        batch: Callable[[list[Row]], list[Row]] | None = None,
    ):
        self.fn = fn
        self.batch = batch
        """The whole map or filter over a batch, when generated from expressions: it gives
        the rows `fn` would, without a call per row."""
        self.kind = kind
        self.name = kind
        self.timestamps = frozenset(timestamps)
        """Output columns the function fills with epoch-ms times (`with_column(...,
        timestamp=True)`)."""

    def process(self, rows: list[Row], state: StateView, ctx: BatchContext) -> list[Row]:
        try:
            return self._apply(rows)
        except Exception:
            # Slow path only when a row fails: find the bad ones, dead-letter them, keep the rest.
            out: list[Row] = []
            for r in rows:
                try:
                    out.extend(self._apply([r]))
                except Exception as exc:
                    ctx.errors.append(
                        (r, f"{self.name} failed: {type(exc).__name__}: {exc}", "user_function")
                    )
            return out

    def origin(
        self, pos: int, output: list[Row], inputs: list[list[Row]], index: RowIndex
    ) -> tuple[int, int] | None:
        """A map's output is parallel to its input unless a row failed; otherwise (and for
        flat-map) the source is found by applying the function again."""
        rows = inputs[0]
        if self.kind == "filter" or (self.kind == "map" and len(output) == len(rows)):
            return (0, pos) if self.kind == "map" else super().origin(pos, output, inputs, index)
        target = output[pos]
        for j, r in enumerate(rows):
            try:
                if any(o == target for o in self._apply([dict(r)])):
                    return 0, j
            except Exception:
                continue
        return None

    def timestamp_columns(self) -> set[str]:
        return set(self.timestamps)

    def _apply(self, rows: list[Row]) -> list[Row]:
        if self.batch is not None:
            return self.batch(rows)
        fn = self.fn
        if self.kind == "filter":
            return [r for r in rows if fn(r)]
        if self.kind == "map":
            return [fn(r) for r in rows]
        out: list[Row] = []
        for r in rows:
            out.extend(fn(r))
        return out


class WatermarkOperator(Operator):
    """`with_watermark(column, delay)`: parses the column to epoch ms and observes its maximum.

    Rows whose column is missing or unparsable go to the dead letters with the reason.
    """

    declares_watermark = True

    def __init__(self, input_name: str, column: str, delay_ms: int) -> None:
        self.input_name = input_name
        self.column = column
        self.delay_ms = delay_ms
        self.name = f"watermark({column})"

    def process(self, rows: list[Row], state: StateView, ctx: BatchContext) -> list[Row]:
        col = self.column
        limit = ctx.event_time_limit
        parsed = many_to_millis(list(map(dict.get, rows, repeat(col))), col)
        latest = max(parsed) if parsed else None  # many_to_millis gives None or a full list
        if parsed is not None and latest is not None and (limit is None or latest <= limit):
            for row, ms in zip(rows, parsed, strict=True):
                row[col] = ms
            ctx.observe(self.input_name, latest)
            ctx.note_event_times(parsed)
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
            ctx.note_event_times([r[col] for r in out])
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
