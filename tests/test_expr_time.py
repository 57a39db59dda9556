"""Time functions (weir.tables.expressions.expr_time, expr_dates, spark_datetime): exact values with
nulls, zones in the text, UTC fields without daylight saving, leap days, pattern letters, the
batch time of current_timestamp in replay, and agreement with DuckDB over generated rows."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weir import (
    add_months,
    col,
    current_date,
    current_timestamp,
    date_add,
    date_format,
    date_sub,
    date_trunc,
    datediff,
    dayofmonth,
    dayofweek,
    dayofyear,
    from_unixtime,
    hour,
    lit,
    make_dt_interval,
    make_interval,
    minute,
    month,
    quarter,
    second,
    timestamp_millis,
    timestamp_seconds,
    to_date,
    to_timestamp,
    trunc,
    unix_millis,
    unix_seconds,
    unix_timestamp,
    weekofyear,
    year,
)
from weir.service.replay import replay
from weir.tables.expressions.expr import Column
from weir.tables.expressions.expr_time import batch_time
from weir.tables.stream import read


def ev(c: Column, row: dict[str, Any] | None = None, types: dict[str, str] | None = None) -> Any:
    return c.compile(types)(row or {})


def ms(text: str) -> int:
    """Epoch ms of an ISO text with a zone (the test's own oracle)."""
    return (datetime.fromisoformat(text) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1
    )


MAY1 = ms("2024-05-01T10:30:15.250+00:00")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:30:15.250Z", MAY1),
        ("2024-05-01 10:30:15.25", MAY1),  # no zone: UTC, Weir's session time zone
        ("2024-05-01T12:30:15.250+02:00", MAY1),
        ("2024-05-01T05:00:15.250-05:30", MAY1),
        ("2024-05-01T12:30:15.250+0200", MAY1),
        ("2024-05-01T12:30:15.250 +2:00", MAY1),  # Spark also reads +h:mm
        ("2024-05-01T10:30:15.250 UTC", MAY1),
        ("2024-05-01T11:30:15.250 GMT+1", MAY1),
        ("2024-05-01T06:30:15.250 America/New_York", MAY1),  # EDT (-4) in May
        ("2024-01-01T05:00:00 America/New_York", ms("2024-01-01T10:00:00+00:00")),  # EST (-5)
        ("2024-05-01T10:30:15.250999Z", MAY1),  # microseconds floored to the ms
        ("  2024-05-01T10:30:15.250Z\n", MAY1),  # trimmed
        ("2024-05-01", ms("2024-05-01T00:00:00+00:00")),
        ("2024-5-1 7:05", ms("2024-05-01T07:05:00+00:00")),
        ("2024", ms("2024-01-01T00:00:00+00:00")),
        ("2024-02-29T23:59:59Z", ms("2024-02-29T23:59:59+00:00")),  # leap day
        ("2023-02-29", None),
        ("2024-05-01T10:30+01:00", None),  # Spark takes a zone only after the seconds
        ("2024-05-01T24:00:00", None),
        ("2024-05-01T10:30:15 Mars/Olympus", None),
        ("20240501", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_to_timestamp_reads_text_as_spark_casts_it(text: str, expected: int | None) -> None:
    c = to_timestamp(col("t"))
    assert c.dtype == "timestamp" and c.name == "to_timestamp(t)"
    assert ev(c, {"t": text}) == expected


def test_to_timestamp_of_numbers_typed_columns_and_null() -> None:
    assert ev(to_timestamp("n"), {"n": 1714559415}) == 1714559415000  # epoch SECONDS
    assert ev(to_timestamp("n"), {"n": 1714559415.2509}) == 1714559415250
    assert ev(to_timestamp("n"), {"n": -1.5}) == -1500
    assert ev(to_timestamp("n"), {"n": None}) is None
    assert ev(to_timestamp("n"), {"n": float("nan")}) is None
    # a column typed "timestamp" (epoch ms) in the compile scope is returned unchanged
    assert ev(to_timestamp("ts"), {"ts": MAY1}, {"ts": "timestamp"}) == MAY1
    assert ev(to_timestamp("d"), {"d": "2024-05-01"}, {"d": "date"}) == ms(
        "2024-05-01T00:00:00+00:00"
    )
    with batch_time(ms("2024-05-01T23:00:00+00:00")):  # a time alone is on the batch's date
        assert ev(to_timestamp("t"), {"t": "10:30"}) == ms("2024-05-01T10:30:00+00:00")
    with pytest.raises(TypeError):
        ev(to_timestamp("t"), {"t": [1]})


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("yyyy-MM-dd HH:mm:ss", "2024-05-01 10:30:15", "2024-05-01T10:30:15+00:00"),
        ("yyyy-MM-dd HH:mm:ss", "2024-5-01 10:30:15", None),  # MM needs two digits
        ("yyyy-MM-dd HH:mm:ss", "2024-05-01 10:30:15.250", None),  # the whole text must match
        ("yyyy-M-d H:m", "2024-5-1 7:5", "2024-05-01T07:05:00+00:00"),
        ("dd/MM/yyyy", "29/02/2024", "2024-02-29T00:00:00+00:00"),
        ("dd/MM/yyyy", "29/02/2023", None),
        ("dd/MMM/yyyy:HH:mm:ss Z", "01/may/2024:12:30:15 +0200", "2024-05-01T10:30:15+00:00"),
        ("MMMM d, yyyy", "February 29, 2024", "2024-02-29T00:00:00+00:00"),
        (
            "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
            "2024-05-01T10:30:15.25Z",
            "2024-05-01T10:30:15.250+00:00",
        ),
        ("yyyy-MM-dd'T'HH:mm:ssXXX", "2024-05-01T05:30:15-05:00", "2024-05-01T10:30:15+00:00"),
        ("yyyy-MM-dd HH:mm:ss VV", "2024-05-01 12:30:15 Europe/Paris", "2024-05-01T10:30:15+00:00"),
        ("yyyy-MM-dd[ HH:mm[:ss]]", "2024-05-01", "2024-05-01T00:00:00+00:00"),
        ("yyyy-MM-dd[ HH:mm[:ss]]", "2024-05-01 10:30", "2024-05-01T10:30:00+00:00"),
        ("hh:mm a", "12:05 AM", "1970-01-01T00:05:00+00:00"),  # missing date: 1970-01-01
        ("hh:mm a", "12:05 pm", "1970-01-01T12:05:00+00:00"),
        ("yy-D", "24-060", "2024-02-29T00:00:00+00:00"),  # day of year 60 of a leap year
        ("yyyyMMddHHmm", "202405011030", "2024-05-01T10:30:00+00:00"),
        ("'at' HH 'o''clock'", "at 10 o'clock", "1970-01-01T10:00:00+00:00"),
    ],
)
def test_to_timestamp_with_a_pattern(pattern: str, text: str, expected: str | None) -> None:
    assert ev(to_timestamp("t", pattern), {"t": text}) == (expected and ms(expected))
    assert to_timestamp("t", pattern).name == f"to_timestamp(t, {pattern})"


def test_to_timestamp_pattern_of_a_number_reads_its_digits() -> None:
    assert ev(to_timestamp("n", "yyyyMMdd"), {"n": 20240229}) == ms("2024-02-29T00:00:00+00:00")


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("YYYY-MM-dd", "week-based"),
        ("yyyy-ww", "week-based"),
        ("yyyy-MM-dd b", "unsupported pattern letter 'b'"),
        ("ddd", "too many pattern letters"),
        ("EEE yyyy", "only to format"),
        ("yyyy 'T", "quote is not closed"),
        ("yyyy]", "without '\\['"),
    ],
)
def test_unsupported_patterns_are_refused_at_definition(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        to_timestamp("t", pattern)


def test_date_format_letters_in_utc() -> None:
    row = {"ts": ms("2024-02-29T23:05:09.007+00:00")}
    cases = {
        "yyyy-MM-dd HH:mm:ss.SSS": "2024-02-29 23:05:09.007",
        "yy/M/d H:m:s S": "24/2/29 23:5:9 0",
        "EEE EEEE MMM MMMM": "Thu Thursday Feb February",
        "hh:mm a K k": "11:05 PM 11 23",
        "D DDD Q QQ QQQ QQQQ": "60 060 1 01 Q1 1st quarter",
        "XXX xxx Z z VV": "Z +00:00 +0000 UTC UTC",
        "yyyy-MM-dd'T'HH:mm:ss[.SSS]": "2024-02-29T23:05:09.007",
        "'quarter' Q, ''yy": "quarter 1, '24",
    }
    for pattern, expected in cases.items():
        assert ev(date_format("ts", pattern), row) == expected, pattern
    assert ev(date_format("ts", "HH"), {"ts": "2024-05-01T10:00:00+02:00"}) == "08"  # text is cast
    assert ev(date_format("ts", "HH"), {"ts": None}) is None
    assert date_format("ts", "yyyy").name == "date_format(ts, yyyy)"
    assert date_format("ts", "yyyy").dtype == "string"
    with pytest.raises(ValueError, match="week-based"):
        date_format("ts", "YYYY")


def test_to_date() -> None:
    assert ev(to_date("t"), {"t": "2024-05-01T23:30:00-05:00"}) == "2024-05-01"  # zone ignored
    assert ev(to_date("t", "yyyy-MM-dd HH:mmXXX"), {"t": "2024-05-01 23:30-05:00"}) == "2024-05-02"
    assert ev(to_date("t", "dd.MM.yyyy"), {"t": "29.02.2024"}) == "2024-02-29"
    assert ev(to_date("t"), {"t": "2024-13-01"}) is None
    assert ev(to_date("ts"), {"ts": ms("2024-05-01T23:59:59.999+00:00")}) == "2024-05-01"
    assert ev(to_date("ts"), {"ts": -1}) == "1969-12-31"
    assert to_date("t").dtype == "date"


def test_fields_in_utc_with_leap_days() -> None:
    row = {"t": "2024-02-29T23:30:45+00:00", "ms": ms("2024-12-30T01:02:03+00:00")}
    got = [ev(f("t"), row) for f in (year, quarter, month, dayofmonth, dayofweek, dayofyear)]
    assert got == [2024, 1, 2, 29, 5, 60]  # Thursday is 5 (Sunday is 1)
    assert [ev(f("t"), row) for f in (hour, minute, second)] == [23, 30, 45]
    assert ev(weekofyear("ms"), row) == 1  # ISO week 1 of 2025
    assert ev(dayofweek(lit("2024-05-05")), {}) == 1  # a Sunday
    # the date part of text: year() does not move to the next day over a zone
    assert ev(year("t"), {"t": "2024-12-31T23:00:00-05:00"}) == 2024
    assert ev(hour("t"), {"t": "2024-12-31T23:00:00-05:00"}) == 4  # hour() casts to a timestamp
    assert all(ev(f("n"), {"n": None}) is None for f in (year, hour, dayofweek))


def test_unix_time_conversions() -> None:
    assert (
        ev(unix_timestamp("t"), {"t": "2024-05-01 10:30:15"})
        == ms("2024-05-01T10:30:15+00:00") // 1000
    )
    assert ev(unix_timestamp("t"), {"t": "2024-05-01T10:30:15Z"}) is None  # default pattern
    assert ev(unix_timestamp("t", "dd/MM/yyyy"), {"t": "01/05/2024"}) == 1714521600
    assert ev(unix_timestamp("ts"), {"ts": -1}) == -1  # floored
    assert ev(from_unixtime("s"), {"s": 1714559415}) == "2024-05-01 10:30:15"
    assert ev(from_unixtime("s", "yyyy"), {"s": "1714559415"}) == "2024"
    assert ev(from_unixtime("s"), {"s": "soon"}) is None
    assert ev(timestamp_seconds("s"), {"s": 1.5}) == 1500
    assert ev(timestamp_millis("s"), {"s": 1714559415250}) == 1714559415250
    assert ev(unix_seconds("ts"), {"ts": 1999}) == 1 and ev(unix_millis("ts"), {"ts": 7}) == 7
    assert timestamp_seconds("s").dtype == timestamp_millis("s").dtype == "timestamp"
    with batch_time(1714559415250):
        assert ev(unix_timestamp()) == 1714559415
        assert ev(current_date()) == "2024-05-01"
    assert unix_timestamp().name == "unix_timestamp(current_timestamp(), yyyy-MM-dd HH:mm:ss)"


def test_date_arithmetic() -> None:
    row = {"d": "2024-02-28", "e": "2024-03-01T10:00:00Z", "n": 2}
    assert ev(date_add("d", 1), row) == "2024-02-29"
    assert ev(date_add("d", "n"), row) == "2024-03-01"  # a str is a column name, as in PySpark
    assert ev(date_sub("d", 365), row) == "2023-02-28"
    assert ev(date_add("d", -1), row) == ev(date_sub("d", 1), row) == "2024-02-27"
    assert ev(datediff("e", "d"), row) == 2 and ev(datediff("d", "e"), row) == -2
    assert ev(add_months(lit("2024-01-31"), 1)) == "2024-02-29"
    assert ev(add_months(lit("2023-01-31"), 1)) == "2023-02-28"
    assert ev(add_months(lit("2024-02-29"), -12)) == "2023-02-28"
    assert ev(date_add("d", 1), {"d": None}) is None
    assert date_add("d", 1).name == "date_add(d, 1)" and date_add("d", 1).dtype == "date"
    ts = {"ts": ms("2024-05-01T10:30:15.250+00:00")}  # a Wednesday
    expected = {
        "year": "2024-01-01T00:00:00", "quarter": "2024-04-01T00:00:00",
        "month": "2024-05-01T00:00:00", "week": "2024-04-29T00:00:00",
        "DD": "2024-05-01T00:00:00", "hour": "2024-05-01T10:00:00",
        "minute": "2024-05-01T10:30:00", "second": "2024-05-01T10:30:15",
    }  # fmt: skip
    for unit, iso in expected.items():
        assert ev(date_trunc(unit, "ts"), ts) == ms(iso + "+00:00"), unit
    assert date_trunc("HOUR", "ts").name == "date_trunc(HOUR, ts)"
    assert (
        ev(trunc("d", "month"), row) == "2024-02-01" and ev(trunc("d", "yy"), row) == "2024-01-01"
    )
    with pytest.raises(ValueError, match="unsupported unit"):
        date_trunc("fortnight", "ts")
    with pytest.raises(ValueError, match="unsupported unit"):
        trunc("d", "hour")


def test_intervals_add_milliseconds_to_timestamps() -> None:
    day = make_dt_interval(days=lit(1))
    assert day.dtype == "interval" and ev(day) == 86_400_000
    assert ev(make_dt_interval(hours=lit(1), mins=lit(2), secs=lit(3.5))) == 3_723_500
    assert ev(make_interval(weeks=1, hours=2)) == 7 * 86_400_000 + 7_200_000
    later = col("ts") + make_dt_interval(hours=lit(24))
    assert later.dtype == "timestamp" and later.name == "(ts + make_dt_interval(0, 24, 0, 0))"
    assert ev(later, {"ts": MAY1}, {"ts": "timestamp"}) == MAY1 + 86_400_000
    assert ev(later, {"ts": "2024-05-01T10:30:15.250Z"}) == MAY1 + 86_400_000  # text is cast
    assert ev(later, {"ts": None}) is None
    assert ev(col("ts") - day, {"ts": MAY1}) == MAY1 - 86_400_000
    assert ev(day + col("ts"), {"ts": MAY1}) == MAY1 + 86_400_000
    assert (day + day).dtype == "interval" and ev(day + day - day) == 86_400_000
    named = make_dt_interval(hours=lit(1)).alias("grace")
    assert named.name == "grace" and (col("ts") + named).dtype == "timestamp"
    with pytest.raises(TypeError):
        _ = day - col("ts")
    with pytest.raises(ValueError, match="add_months"):
        make_interval(months=1)


def _replay(stream: Any, rows: list[dict[str, Any]], batch_size: int) -> list[dict[str, Any]]:
    src = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    out = io.BytesIO()
    replay(stream.query(), io.BytesIO(src), out, batch_size=batch_size)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def test_current_timestamp_is_the_batch_time_in_replay() -> None:
    orders = read("orders")
    stream = orders.with_column("seen", current_timestamp()).with_column(
        "deadline", col("seen") + make_dt_interval(hours=lit(24))
    )
    rows = [{"id": i} for i in range(5)]
    first = _replay(stream, rows, batch_size=2)
    assert [(r["batch_id"], r["seen"], r["deadline"]) for r in first] == [
        (0, "1970-01-01T00:00:00Z", "1970-01-02T00:00:00Z"),
        (0, "1970-01-01T00:00:00Z", "1970-01-02T00:00:00Z"),
        (1, "1970-01-01T00:00:01Z", "1970-01-02T00:00:01Z"),
        (1, "1970-01-01T00:00:01Z", "1970-01-02T00:00:01Z"),
        (2, "1970-01-01T00:00:02Z", "1970-01-02T00:00:02Z"),
    ]
    assert _replay(stream, rows, batch_size=2) == first  # deterministic


def test_course_to_timestamp_in_with_column_is_a_timestamp_column() -> None:
    """The course's `withColumn("event_time", to_timestamp(col("timestamp")))`."""
    s = read("events").with_column("event_time", to_timestamp(col("timestamp")))
    s = s.select("id", "event_time", hour("event_time").alias("h"))
    out = _replay(s, [{"id": 1, "timestamp": "2024-05-01 12:30:00+02:00"}, {"id": 2}], 10)
    assert out == [
        {"batch_id": 0, "id": 1, "event_time": "2024-05-01T10:30:00Z", "h": 10},
        {"batch_id": 0, "id": 2, "event_time": None, "h": None},
    ]


# -- DuckDB as the oracle ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def _one(con: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> Any:
    return con.execute(sql, list(params)).fetchone()[0]  # type: ignore[index]


instants = st.datetimes(datetime(1901, 1, 1), datetime(2099, 12, 31))
offsets = st.integers(-14 * 4, 14 * 4).map(lambda q: timedelta(minutes=15 * q))


@settings(max_examples=150, deadline=None)
@given(instants, offsets, st.sampled_from(["T", " "]), st.booleans())
def test_to_timestamp_agrees_with_duckdb_cast(
    duck: duckdb.DuckDBPyConnection, dt: datetime, off: timedelta, sep: str, zulu: bool
) -> None:
    sign = "-" if off < timedelta(0) else "+"
    minutes = abs(off) // timedelta(minutes=1)
    zone = "Z" if zulu else f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    text = dt.isoformat(sep=sep, timespec="microseconds") + zone
    micros = _one(duck, "SELECT epoch_us(CAST(? AS TIMESTAMPTZ))", text)
    assert ev(to_timestamp("t"), {"t": text}) == micros // 1000


SPARK_TO_STRFTIME = [
    ("yyyy-MM-dd HH:mm:ss", "%Y-%m-%d %H:%M:%S"),
    ("dd/MM/yy hh:mm a", "%d/%m/%y %I:%M %p"),
    ("EEE, d MMM yyyy", "%a, %-d %b %Y"),
    ("EEEE MMMM DDD", "%A %B %j"),
    ("yyyy-MM-dd'T'HH:mm:ss.SSS", "%Y-%m-%dT%H:%M:%S.%g"),
]


@settings(max_examples=100, deadline=None)
@given(instants, st.sampled_from(SPARK_TO_STRFTIME))
def test_date_format_and_pattern_parsing_agree_with_duckdb(
    duck: duckdb.DuckDBPyConnection, dt: datetime, patterns: tuple[str, str]
) -> None:
    spark, strf = patterns
    t = ms(dt.replace(tzinfo=UTC).isoformat())
    text = _one(duck, "SELECT strftime(epoch_ms(?::BIGINT), ?)", t, strf)
    assert ev(date_format("ts", spark), {"ts": t}) == text
    if "E" not in spark and "yyyy" in spark:  # Spark's yy is 2000-2099, strptime's %y not
        back = _one(duck, "SELECT epoch_ms(strptime(?, ?))", text, strf)
        assert ev(to_timestamp("s", spark), {"s": text}) == back


@settings(max_examples=100, deadline=None)
@given(instants, st.integers(-1000, 1000), st.integers(-30, 30))
def test_fields_and_date_arithmetic_agree_with_duckdb(
    duck: duckdb.DuckDBPyConnection, dt: datetime, days: int, months: int
) -> None:
    t = ms(dt.replace(tzinfo=UTC).isoformat())
    row = {"ts": t}
    expected = duck.execute(
        """SELECT year(x), quarter(x), month(x), day(x), dayofweek(x) + 1, dayofyear(x),
                  weekofyear(x), hour(x), minute(x), second(x),
                  strftime(x::DATE + INTERVAL (?) DAY, '%Y-%m-%d'),
                  strftime(x::DATE + INTERVAL (?) MONTH, '%Y-%m-%d'),
                  date_diff('day', DATE '2000-01-01', x::DATE),
                  epoch_ms(date_trunc('week', x)), epoch_ms(date_trunc('quarter', x))
           FROM (SELECT epoch_ms(?::BIGINT) AS x)""",
        [days, months, t],
    ).fetchone()
    fields = (year, quarter, month, dayofmonth, dayofweek, dayofyear, weekofyear)
    got = [ev(f("ts"), row) for f in (*fields, hour, minute, second)]
    got += [ev(date_add("ts", days), row), ev(add_months("ts", months), row)]
    got += [ev(datediff("ts", lit("2000-01-01")), row)]
    got += [ev(date_trunc("week", "ts"), row), ev(date_trunc("quarter", "ts"), row)]
    assert tuple(got) == expected
