"""Date arithmetic (`date_add`, `datediff`, `add_months`, `date_trunc`, `trunc`) and day-time
intervals (`make_dt_interval`) as Columns; conventions as in weir.tables.expressions.expr_time.

An interval is a number of milliseconds with dtype "interval" (what `expr("interval 24 hours")`
gives too), so `col("order_time") + make_dt_interval(hours=lit(24))` adds milliseconds to a
timestamp. Months have no fixed length: `make_interval` refuses years and months (use
`add_months` on dates).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from weir.tables.expressions.expr import Column, Compiled, as_column, lit, name_or_column, type_of
from weir.tables.expressions.expr_time import (
    column_of,
    date_value,
    literal,
    on_date,
    on_timestamp,
    timestamp_value,
)
from weir.tables.expressions.spark_datetime import datetime_to_ms, ms_to_datetime
from weir.tables.operator import Row
from weir.tables.timeutil import MAX_MS, MIN_MS


def _days_arg(days: Any) -> Column:
    return name_or_column(days if isinstance(days, Column | str) else lit(days))


def _whole(fn: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{fn} expects a whole number, got {type(n).__name__} {n!r}")
    return n


def _date_shift(name: str, start: str | Column, days: Any, sign: int) -> Column:
    def make() -> Callable[..., Any]:
        def run(s: Any, n: Any) -> Any:
            d = date_value(name, s)
            if d is None:
                return None
            try:
                return (d + timedelta(days=sign * _whole(name, n))).isoformat()
            except OverflowError:
                return None

        return run

    return column_of(name, [name_or_column(start), _days_arg(days)], make, "date")


def date_add(start: str | Column, days: int | str | Column) -> Column:
    """The date `days` days after `start` (negative: before), dtype "date"."""
    return _date_shift("date_add", start, days, 1)


def date_sub(start: str | Column, days: int | str | Column) -> Column:
    """The date `days` days before `start`, dtype "date"."""
    return _date_shift("date_sub", start, days, -1)


def datediff(end: str | Column, start: str | Column) -> Column:
    """Days from the date of `start` to the date of `end` (negative when `end` is earlier)."""

    def make() -> Callable[..., Any]:
        def run(e: Any, s: Any) -> Any:
            a, b = date_value("datediff", e), date_value("datediff", s)
            return None if a is None or b is None else (a - b).days

        return run

    return column_of("datediff", [name_or_column(end), name_or_column(start)], make, "int")


def add_months(start: str | Column, months: int | str | Column) -> Column:
    """The date `months` months after `start`; a day past the end of the month becomes the
    month's last day (2024-01-31 plus one month is 2024-02-29), dtype "date"."""

    def make() -> Callable[..., Any]:
        def run(s: Any, n: Any) -> Any:
            d = date_value("add_months", s)
            if d is None:
                return None
            y, m = divmod(d.year * 12 + d.month - 1 + _whole("add_months", n), 12)
            if not 1 <= y <= 9999:
                return None
            following = date(y + 1, 1, 1) if m == 11 else date(y, m + 2, 1)
            last = (following - timedelta(days=1)).day
            return date(y, m + 1, min(d.day, last)).isoformat()

        return run

    return column_of("add_months", [name_or_column(start), _days_arg(months)], make, "date")


_UNITS = {
    "year": "year", "yyyy": "year", "yy": "year", "quarter": "quarter", "month": "month",
    "mm": "month", "mon": "month", "week": "week", "day": "day", "dd": "day", "hour": "hour",
    "minute": "minute", "second": "second", "millisecond": "millisecond",
    "microsecond": "millisecond",
}  # fmt: skip
_UNIT_MS = {"day": 86_400_000, "hour": 3_600_000, "minute": 60_000, "second": 1000}


def _trunc_date(d: date, unit: str) -> date:
    if unit == "year":
        return d.replace(month=1, day=1)
    if unit == "quarter":
        return d.replace(month=(d.month - 1) // 3 * 3 + 1, day=1)
    if unit == "month":
        return d.replace(day=1)
    return d - timedelta(days=d.weekday())  # week: back to Monday


def _unit(fn: str, value: Any, allowed: set[str]) -> tuple[str, str]:
    given = str(literal(value, f"{fn}'s unit"))
    unit = _UNITS.get(given.lower())
    if unit is None or unit not in allowed:
        raise ValueError(f"{fn}: unsupported unit {given!r}; use one of {sorted(allowed)}")
    return unit, given


def date_trunc(format: str | Column, timestamp: str | Column) -> Column:
    """Spark's `date_trunc(unit, timestamp)`: the timestamp truncated (in UTC) to "year",
    "quarter", "month", "week" (Monday), "day", "hour", "minute", "second" or "millisecond"
    (Spark's other spellings too: "yyyy", "mm", "dd"...), dtype "timestamp". An unknown unit is
    refused at definition (Spark gives None)."""
    unit, given = _unit("date_trunc", format, set(_UNITS.values()))

    def cut(ms: int) -> int | None:
        size = _UNIT_MS.get(unit)
        if unit == "millisecond":
            return ms
        if size is not None:
            return ms - ms % size
        d = _trunc_date(ms_to_datetime(ms).date(), unit)
        return datetime_to_ms(datetime(d.year, d.month, d.day))

    c = on_timestamp("date_trunc", timestamp, cut, "timestamp")
    c.name = f"date_trunc({given}, {c.name[len('date_trunc(') :]}"
    return c


def trunc(date: str | Column, format: str | Column) -> Column:
    """Spark's `trunc(date, unit)`: the date truncated to "year", "quarter", "month" or
    "week" (Monday), dtype "date". An unknown unit is refused at definition."""
    unit, given = _unit("trunc", format, {"year", "quarter", "month", "week"})
    return on_date("trunc", date, lambda d: _trunc_date(d, unit).isoformat(), "date", given)


# -- intervals -------------------------------------------------------------------------------
class IntervalColumn(Column):
    """A day-time interval in milliseconds (dtype "interval"). Added to (or subtracted from) a
    timestamp it gives a timestamp: the other side is read as a timestamp argument (epoch ms,
    or text as CAST reads it; a date is its midnight), so `col("order_time") + interval`
    works whether or not `order_time` is known to be a timestamp. Interval +/- interval is an
    interval."""

    __slots__ = ()

    def __add__(self, other: Any) -> Column:
        return _shift(other, self, 1, f"({_name(self)} + {_name(other)})")

    def __radd__(self, other: Any) -> Column:
        return _shift(other, self, 1, f"({_name(other)} + {_name(self)})")

    def __rsub__(self, other: Any) -> Column:
        return _shift(other, self, -1, f"({_name(other)} - {_name(self)})")

    def __sub__(self, other: Any) -> Column:
        if type_of_interval(other):
            return _interval_sum(self, other, -1, f"({self.name} - {_name(other)})")
        raise TypeError("an interval minus a timestamp is not a value; write timestamp - interval")

    def alias(self, name: str) -> IntervalColumn:
        """The same interval, output as column `name`."""
        c = super().alias(name)
        return _interval(c._build, c.name, c.references())

    def __neg__(self) -> Column:
        f = self._build
        return _interval(lambda: _negate(f()), f"(- {self.name})", self.references())


def _negate(a: Compiled) -> Compiled:
    return lambda r: None if (v := a(r)) is None else -v


def _name(v: Any) -> str:
    return as_column(v).name


def type_of_interval(v: Any) -> bool:
    """True for an interval Column (an IntervalColumn, or dtype "interval")."""
    return isinstance(v, Column) and (isinstance(v, IntervalColumn) or v.dtype == "interval")


def _interval(build: Callable[[], Compiled], name: str, refs: Any) -> IntervalColumn:
    return IntervalColumn(build, name, refs, "interval")


def _interval_sum(a: Column, b: Any, sign: int, name: str) -> Column:
    bc = as_column(b)
    fa, fb = a._build, bc._build

    def build() -> Compiled:
        x, y = fa(), fb()

        def run(r: Row) -> Any:
            u, v = x(r), y(r)
            return None if u is None or v is None else u + sign * v

        return run

    return _interval(build, name, a.references() | bc.references())


def _shift(base: Any, interval: Column, sign: int, name: str) -> Column:
    """`base + sign * interval`: an interval when `base` is one, else a timestamp."""
    if type_of_interval(base):
        return _interval_sum(as_column(base), interval, sign, name)
    bc = as_column(base)
    fb, fi = bc._build, interval._build

    def build() -> Compiled:
        typed = type_of(bc) == "timestamp"
        x, y = fb(), fi()

        def run(r: Row) -> Any:
            t, d = x(r), y(r)
            if t is None or d is None:
                return None
            ms = (t if typed else timestamp_value("+ interval", t)) if t is not None else None
            if ms is None:
                return None
            out = ms + sign * d
            return out if MIN_MS <= out <= MAX_MS else None

        return run

    return Column(build, name, bc.references() | interval.references(), "timestamp")


def _number(fn: str, v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"{fn} expects numbers, got {type(v).__name__} {v!r}")
    return v


def make_dt_interval(
    days: Any = None, hours: Any = None, mins: Any = None, secs: Any = None
) -> IntervalColumn:
    """PySpark's `make_dt_interval(days, hours, mins, secs)`: a day-time interval (ms) from
    Columns (or numbers; a str is a column name, as in PySpark); a missing part is 0, a None
    part gives None; `secs` may have a fraction (to the microsecond, floored to the ms)."""
    parts = [
        name_or_column(p if isinstance(p, Column | str) else lit(p or 0))
        for p in (days, hours, mins, secs)
    ]
    scale = (86_400_000_000, 3_600_000_000, 60_000_000, 1_000_000)

    def make() -> Callable[..., Any]:
        def run(*values: Any) -> Any:
            micros = sum(
                int(_number("make_dt_interval", v) * s) for v, s in zip(values, scale, strict=True)
            )
            return micros // 1000

        return run

    c = column_of("make_dt_interval", parts, make, "interval")
    return _interval(c._build, c.name, c.references())


def make_interval(
    years: Any = None,
    months: Any = None,
    weeks: Any = None,
    days: Any = None,
    hours: Any = None,
    mins: Any = None,
    secs: Any = None,
) -> IntervalColumn:
    """PySpark's `make_interval` for day-time parts (weeks, days, hours, mins, secs); years
    and months are refused (they have no fixed length in milliseconds: use `add_months`)."""
    if years is not None or months is not None:
        raise ValueError(
            "make_interval: years and months have no fixed length in milliseconds; use "
            "add_months(date, n) or make_dt_interval(days, hours, mins, secs)"
        )
    if weeks is not None:
        w = name_or_column(weeks if isinstance(weeks, Column | str) else lit(weeks))
        d = name_or_column(days if isinstance(days, Column | str) else lit(days or 0))
        days = w * 7 + d
    return make_dt_interval(days, hours, mins, secs)


SQL_FUNCTIONS: dict[str, Callable[..., Column]] = {
    "date_add": date_add, "dateadd": date_add, "date_sub": date_sub, "datediff": datediff,
    "add_months": add_months, "date_trunc": date_trunc, "trunc": trunc,
    "make_dt_interval": make_dt_interval, "make_interval": make_interval,
}  # fmt: skip
"""Spark SQL name -> function, for the SQL-string helper (units as constant Columns)."""

__all__ = [
    "SQL_FUNCTIONS",
    "IntervalColumn",
    "add_months",
    "date_add",
    "date_sub",
    "date_trunc",
    "datediff",
    "make_dt_interval",
    "make_interval",
    "trunc",
    "type_of_interval",
]
