"""Spark's date and time functions as Columns (`to_timestamp`, `date_format`, `year`, ...).

Representation, as everywhere in Weir: a "timestamp" value is epoch milliseconds (an int, UTC),
written as ISO-8601 UTC at the edges; a "date" value is "YYYY-MM-DD" text. Weir's session time
zone is UTC: text without a zone is read as UTC and every field (`hour`, `date_format`...) is
taken in UTC, so there is no daylight saving (zones in the input text are honoured).

Arguments, as Spark's analyzer casts them:
- a function taking a timestamp (`hour`, `date_format`, `unix_timestamp`...) reads an int as
  epoch ms (a timestamp column's value) and text as CAST(text AS TIMESTAMP) reads it
  (`spark_datetime.cast_timestamp`);
- a function taking a date (`year`, `date_add`, `datediff`...) reads an int as epoch ms and
  text as CAST(text AS DATE) does (the date part; a time and zone after it are ignored);
- `to_timestamp` of a number is epoch SECONDS (Spark's CAST of a number to a timestamp); of a
  column typed "timestamp" in the compile scope (`expr.type_of`) it is that column unchanged.
Text that does not parse gives None (non-ANSI); a value of the wrong kind (a list) raises
TypeError, which dead-letters the row; a pattern Weir cannot use raises ValueError when the
expression is defined. Formats and units are literals (a str, or a constant Column).

`current_timestamp()` is the micro-batch's processing time, the same for every row of a batch
(Spark's batch timestamp): the query task sets it with `batch_time` around each batch, and
replay runs batch k at k * 1000 ms, so replays are deterministic. Outside a batch, the clock.

Intervals are day-time intervals in milliseconds (dtype "interval"); `make_dt_interval` builds
one, and timestamp +/- interval is a timestamp (see `IntervalColumn`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from typing import Any

from weir.tables.expressions.datetime_patterns import datetime_pattern
from weir.tables.expressions.expr import Column, name_or_column, type_of
from weir.tables.expressions.expr_cast import CASTS
from weir.tables.expressions.expr_functions import column_of
from weir.tables.expressions.spark_datetime import (
    cast_date,
    cast_timestamp,
    ms_to_datetime,
)
from weir.tables.timeutil import MAX_MS, MIN_MS

DEFAULT_FORMAT = "yyyy-MM-dd HH:mm:ss"
_BATCH_TIME: ContextVar[int | None] = ContextVar("weir_batch_time", default=None)
_EPOCH_DAY = date(1970, 1, 1)
_to_long = CASTS["long"]


@contextmanager
def batch_time(ms: int) -> Iterator[None]:
    """Within the block, `current_timestamp()` is `ms` (a micro-batch's processing time)."""
    token = _BATCH_TIME.set(ms)
    try:
        yield
    finally:
        _BATCH_TIME.reset(token)


def now_ms() -> int:
    """The current batch's time (epoch ms), or the wall clock outside a batch."""
    t = _BATCH_TIME.get()
    return int(time.time() * 1000) if t is None else t


# -- value conversions -----------------------------------------------------------------------
def _kind_error(fn: str, what: str, v: Any) -> TypeError:
    return TypeError(f"{fn} expects {what}, got {type(v).__name__} {v!r}")


def timestamp_value(fn: str, v: Any) -> int | None:
    """A timestamp argument as epoch ms: an int is epoch ms, text is CAST to a timestamp."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return int(v) if MIN_MS <= v <= MAX_MS else None
    if isinstance(v, str):
        return cast_timestamp(v, now_ms)
    raise _kind_error(fn, "a timestamp", v)


def date_value(fn: str, v: Any) -> date | None:
    """A date argument: an int is epoch ms (its UTC date), text is CAST to a date."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return ms_to_datetime(int(v)).date() if MIN_MS <= v <= MAX_MS else None
    if isinstance(v, str):
        return cast_date(v)
    raise _kind_error(fn, "a date", v)


def _seconds_to_ms(fn: str, v: Any) -> int | None:
    """Spark's CAST of a number to a timestamp: epoch seconds (a fraction to the microsecond)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _kind_error(fn, "a number", v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return None
        micros = int(v * 1_000_000)  # Spark truncates to the microsecond
        ms = micros // 1000
    else:
        ms = v * 1000
    return ms if MIN_MS <= ms <= MAX_MS else None


def _iso_date(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def literal(value: Any, what: str) -> Any:
    """A literal argument: a Python value, or a constant Column (as a SQL helper passes)."""
    if isinstance(value, Column):
        if value.references():
            raise ValueError(f"{what} must be a literal, not the column {value.name!r}")
        return value.compile()({})
    return value


# -- building ----------------------------------------------------------------------------------
def _converted(
    name: str,
    c: str | Column,
    convert: Callable[[str, Any], Any],
    fn: Callable[[Any], Any],
    dtype: str,
    extra: str,
) -> Column:
    def make() -> Callable[[Any], Any]:
        def run(v: Any) -> Any:
            x = convert(name, v)
            return None if x is None else fn(x)

        return run

    return column_of(name, [name_or_column(c)], make, dtype, extra)


def on_timestamp(
    name: str, c: str | Column, fn: Callable[[int], Any], dtype: str, extra: str = ""
) -> Column:
    """`fn(epoch ms)` of a timestamp argument (see `timestamp_value`); None stays None."""
    return _converted(name, c, timestamp_value, fn, dtype, extra)


def on_date(
    name: str, c: str | Column, fn: Callable[[date], Any], dtype: str, extra: str = ""
) -> Column:
    """`fn(date)` of a date argument (see `date_value`); None stays None."""
    return _converted(name, c, date_value, fn, dtype, extra)


# -- parsing and formatting ------------------------------------------------------------------
def to_timestamp(col: str | Column, format: str | Column | None = None) -> Column:
    """Spark's `to_timestamp(col[, format])`, dtype "timestamp" (epoch ms). Without a format,
    text is CAST (ISO-8601 with or without a zone; without one, UTC) and a number is epoch
    seconds; with one, text (or a number as text) is read with the Spark datetime pattern.
    A column typed "timestamp" is returned unchanged; unparseable text gives None."""
    arg = name_or_column(col)
    fmt = literal(format, "to_timestamp's format")
    pattern = None if fmt is None else datetime_pattern(fmt, True)

    def make() -> Callable[[Any], Any]:
        kind = type_of(arg)
        if kind == "timestamp":
            return lambda v: v
        if kind == "date":
            return lambda v: timestamp_value("to_timestamp", v)
        if pattern is None:
            return lambda v: (
                cast_timestamp(v, now_ms)
                if isinstance(v, str)
                else _seconds_to_ms("to_timestamp", v)
            )
        return lambda v: pattern.parse(_text("to_timestamp", v))

    return column_of("to_timestamp", [arg], make, "timestamp", fmt or "")


def _text(fn: str, v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    raise _kind_error(fn, "text", v)


def to_date(col: str | Column, format: str | Column | None = None) -> Column:
    """Spark's `to_date(col[, format])`: "YYYY-MM-DD", dtype "date". Without a format, text is
    CAST to a date (the date part of the text; a zone in it is ignored, as Spark does) and a
    timestamp gives its UTC date; with one, the text is read with the pattern (a zone in it is
    honoured) and the date taken in UTC."""
    arg = name_or_column(col)
    fmt = literal(format, "to_date's format")
    pattern = None if fmt is None else datetime_pattern(fmt, True)

    def make() -> Callable[[Any], Any]:
        kind = type_of(arg)
        if kind == "date":
            return lambda v: v
        if pattern is None or kind == "timestamp":
            return lambda v: _iso_date(date_value("to_date", v))

        def parse(v: Any) -> Any:
            ms = pattern.parse(_text("to_date", v))
            return None if ms is None else ms_to_datetime(ms).date().isoformat()

        return parse

    return column_of("to_date", [arg], make, "date", fmt or "")


def date_format(col: str | Column, format: str | Column) -> Column:
    """Spark's `date_format(timestamp, format)`: the time written with the pattern, in UTC."""
    fmt = literal(format, "date_format's format")
    pattern = datetime_pattern(fmt, False)
    return on_timestamp("date_format", col, pattern.format, "string", fmt)


def current_timestamp() -> Column:
    """The batch's processing time (epoch ms), the same for every row of a micro-batch."""
    return Column(lambda: lambda r: now_ms(), "current_timestamp()", (), "timestamp")


def current_date() -> Column:
    """The UTC date of `current_timestamp()`."""
    return Column(
        lambda: lambda r: ms_to_datetime(now_ms()).date().isoformat(), "current_date()", (), "date"
    )


def unix_timestamp(
    col: str | Column | None = None,
    format: str | Column = DEFAULT_FORMAT,
) -> Column:
    """Spark's `unix_timestamp([col[, format]])`: epoch seconds (floored). Text is read with
    the pattern (by default "yyyy-MM-dd HH:mm:ss": ISO text with a "T" or a zone gives None);
    a timestamp or date column gives its time. Without `col`, the batch's time."""
    arg = current_timestamp() if col is None else name_or_column(col)
    fmt = literal(format, "unix_timestamp's format")
    pattern = datetime_pattern(fmt, True)

    def make() -> Callable[[Any], Any]:
        kind = type_of(arg)

        def run(v: Any) -> Any:
            if isinstance(v, str) and kind not in ("timestamp", "date"):
                ms = pattern.parse(v)
            else:
                ms = timestamp_value("unix_timestamp", v)
            return None if ms is None else ms // 1000

        return run

    return column_of("unix_timestamp", [arg], make, "bigint", fmt)


def from_unixtime(col: str | Column, format: str | Column = DEFAULT_FORMAT) -> Column:
    """Spark's `from_unixtime(seconds[, format])`: epoch seconds (a number, or numeric text;
    a fraction is truncated) written with the pattern, in UTC."""
    fmt = literal(format, "from_unixtime's format")
    pattern = datetime_pattern(fmt, False)

    def make() -> Callable[[Any], Any]:
        def run(v: Any) -> Any:
            secs = _to_long(v)
            return None if secs is None else pattern.format(secs * 1000)

        return run

    return column_of("from_unixtime", [name_or_column(col)], make, "string", fmt)


def timestamp_seconds(col: str | Column) -> Column:
    """Epoch seconds (a fraction to the microsecond) as a timestamp."""

    def make() -> Callable[[Any], Any]:
        return lambda v: _seconds_to_ms("timestamp_seconds", v)

    return column_of("timestamp_seconds", [name_or_column(col)], make, "timestamp")


def timestamp_millis(col: str | Column) -> Column:
    """Epoch milliseconds (a whole number) as a timestamp."""

    def make() -> Callable[[Any], Any]:
        def run(v: Any) -> Any:
            if isinstance(v, bool) or not isinstance(v, int):
                raise _kind_error("timestamp_millis", "a whole number", v)
            return v if MIN_MS <= v <= MAX_MS else None

        return run

    return column_of("timestamp_millis", [name_or_column(col)], make, "timestamp")


def unix_seconds(col: str | Column) -> Column:
    """A timestamp as epoch seconds (floored)."""
    return on_timestamp("unix_seconds", col, lambda ms: ms // 1000, "bigint")


def unix_millis(col: str | Column) -> Column:
    """A timestamp as epoch milliseconds."""
    return on_timestamp("unix_millis", col, lambda ms: ms, "bigint")


# -- fields ----------------------------------------------------------------------------------
def year(col: str | Column) -> Column:
    """The year of a date (of a timestamp: its UTC date)."""
    return on_date("year", col, lambda d: d.year, "int")


def quarter(col: str | Column) -> Column:
    """The quarter of the year, 1 to 4."""
    return on_date("quarter", col, lambda d: (d.month - 1) // 3 + 1, "int")


def month(col: str | Column) -> Column:
    """The month, 1 to 12."""
    return on_date("month", col, lambda d: d.month, "int")


def dayofmonth(col: str | Column) -> Column:
    """The day of the month, 1 to 31."""
    return on_date("dayofmonth", col, lambda d: d.day, "int")


def dayofweek(col: str | Column) -> Column:
    """The day of the week as Spark numbers it: 1 is Sunday, 7 is Saturday."""
    return on_date("dayofweek", col, lambda d: d.isoweekday() % 7 + 1, "int")


def dayofyear(col: str | Column) -> Column:
    """The day of the year, 1 to 366."""
    return on_date("dayofyear", col, lambda d: d.timetuple().tm_yday, "int")


def weekofyear(col: str | Column) -> Column:
    """The ISO-8601 week of the year (weeks start on Monday; week 1 has the first Thursday)."""
    return on_date("weekofyear", col, lambda d: d.isocalendar()[1], "int")


def hour(col: str | Column) -> Column:
    """The hour (UTC), 0 to 23."""
    return on_timestamp("hour", col, lambda ms: ms // 3_600_000 % 24, "int")


def minute(col: str | Column) -> Column:
    """The minute, 0 to 59."""
    return on_timestamp("minute", col, lambda ms: ms // 60_000 % 60, "int")


def second(col: str | Column) -> Column:
    """The second, 0 to 59."""
    return on_timestamp("second", col, lambda ms: ms // 1000 % 60, "int")


SQL_FUNCTIONS: dict[str, Callable[..., Column]] = {
    "to_timestamp": to_timestamp, "to_date": to_date, "date_format": date_format,
    "current_timestamp": current_timestamp, "now": current_timestamp,
    "current_date": current_date, "curdate": current_date, "unix_timestamp": unix_timestamp,
    "from_unixtime": from_unixtime, "timestamp_seconds": timestamp_seconds,
    "timestamp_millis": timestamp_millis, "unix_seconds": unix_seconds,
    "unix_millis": unix_millis, "year": year, "quarter": quarter, "month": month,
    "day": dayofmonth, "dayofmonth": dayofmonth, "dayofweek": dayofweek,
    "dayofyear": dayofyear, "weekofyear": weekofyear, "hour": hour, "minute": minute,
    "second": second,
}  # fmt: skip
"""Spark SQL name -> function, for the SQL-string helper. Every argument may be a Column;
formats must then be constant Columns (`lit`)."""

__all__ = [
    "DEFAULT_FORMAT",
    "SQL_FUNCTIONS",
    "batch_time",
    "column_of",
    "current_date",
    "current_timestamp",
    "date_format",
    "date_value",
    "dayofmonth",
    "dayofweek",
    "dayofyear",
    "from_unixtime",
    "hour",
    "literal",
    "minute",
    "month",
    "now_ms",
    "on_date",
    "on_timestamp",
    "quarter",
    "second",
    "timestamp_millis",
    "timestamp_seconds",
    "timestamp_value",
    "to_date",
    "to_timestamp",
    "unix_millis",
    "unix_seconds",
    "unix_timestamp",
    "weekofyear",
    "year",
]
