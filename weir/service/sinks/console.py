"""The console sink: each batch's rows as a table on standard output, as Spark's console sink
prints them. For debugging and demos: at least once, and the table shows only the first
`num_rows` rows, each value cut to `truncate` characters."""

from __future__ import annotations

import sys
from typing import IO, Any

from weir.service.codec import render_rows
from weir.service.sinks.base import Delivery, Sink, SinkBatch


class ConsoleSink(Sink):
    """Prints "Batch: <n> (task <t>)" and a table of the batch's rows (times in ISO-8601 UTC).

    At least once: a batch retried after a crash is printed again."""

    delivery: Delivery = "at_least_once"

    def __init__(
        self, num_rows: int = 20, truncate: bool | int = True, out: IO[str] | None = None
    ) -> None:
        if num_rows < 1:
            raise ValueError(f"num_rows must be at least 1, not {num_rows}")
        self.num_rows = num_rows
        self.width = 20 if truncate is True else (None if truncate is False else int(truncate))
        self.out = out

    @property
    def description(self) -> str:
        return "console"

    async def write(self, batch: SinkBatch) -> None:
        rows = render_rows(batch.rows, batch.timestamp_columns)
        ident = batch.identity
        lines = ["-" * 43, f"Batch: {ident.batch_id} (task {ident.task})", "-" * 43]
        lines += table(rows[: self.num_rows], self.width)
        if len(rows) > self.num_rows:
            lines.append(f"only showing top {self.num_rows} rows")
        out = self.out or sys.stdout
        out.write("\n".join(lines) + "\n\n")
        out.flush()


def table(rows: list[dict[str, Any]], width: int | None = 20) -> list[str]:
    """Rows as Spark's `show()` draws them: a header, one line per row, values cut to `width`
    characters (None: whole); columns in first-seen order, missing values null."""
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(r))
    cols = list(columns)

    def cell(value: Any) -> str:
        text = "null" if value is None else str(value)
        if width is not None and len(text) > width:
            text = text[: max(width - 3, 0)] + "..." if width > 3 else text[:width]
        return text

    cells = [[cell(r.get(c)) for c in cols] for r in rows]
    sizes = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(cols)]

    def line(values: list[str]) -> str:
        # as Spark: right-aligned when values are truncated, left-aligned otherwise
        pad = str.rjust if width is not None else str.ljust
        return "|" + "|".join(pad(v, n) for v, n in zip(values, sizes, strict=True)) + "|"

    rule = "+" + "+".join("-" * n for n in sizes) + "+"
    return [rule, line(cols), rule, *(line(c) for c in cells), rule]


def console(num_rows: int = 20, truncate: bool | int = True) -> ConsoleSink:
    """Spark's `format("console")` with its `numRows` and `truncate` options."""
    return ConsoleSink(num_rows, truncate)
