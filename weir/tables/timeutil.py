"""Time inside the engine is integer epoch milliseconds, UTC; this module converts at the edges."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

Duration = str | timedelta | int

_UNITS_MS = {
    "ms": 1,
    "millisecond": 1,
    "milliseconds": 1,
    "s": 1_000,
    "sec": 1_000,
    "second": 1_000,
    "seconds": 1_000,
    "m": 60_000,
    "min": 60_000,
    "minute": 60_000,
    "minutes": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
    "hours": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
    "days": 86_400_000,
    "w": 604_800_000,
    "week": 604_800_000,
    "weeks": 604_800_000,
}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*")


def parse_duration(value: Duration) -> int:
    """Return a duration in whole milliseconds.

    Accepts a `timedelta`, an int (already milliseconds) or Spark-style text such as
    "10 minutes", "1 hour 30 minutes", "500 ms", "2h". Raises ValueError on anything else or
    on a negative duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, timedelta):
        ms = round(value.total_seconds() * 1000)
    elif isinstance(value, int):
        ms = value
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.startswith("interval "):
            text = text[len("interval ") :]
        pos, ms_f = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            unit = _UNITS_MS.get(match.group(2))
            if unit is None:
                raise ValueError(f"unknown unit {match.group(2)!r} in duration {value!r}")
            ms_f += float(match.group(1)) * unit
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"not a duration: {value!r} (expected e.g. '10 minutes')")
        ms = round(ms_f)
    else:
        raise ValueError(f"not a duration: {value!r}")
    if ms < 0:
        raise ValueError(f"negative duration: {value!r}")
    return ms


def to_millis(value: object) -> int:
    """Return an event time as epoch milliseconds, UTC.

    Accepts an ISO-8601 string (a trailing "Z" or an offset; without one it is read as UTC,
    as Spark does with a UTC session time zone), a `datetime` (naive means UTC), or a number
    of epoch milliseconds. Raises ValueError for anything else, so a caller can dead-letter it.
    """
    kind = type(value)
    if kind is str:
        try:
            dt = _fromiso(value)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from exc
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return (dt - _EPOCH) // _ONE_MS
    if kind is int:
        return in_range(value)  # type: ignore[arg-type]
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int):
        return in_range(int(value))
    if isinstance(value, float):
        if not MIN_MS <= value <= MAX_MS:  # NaN and infinities too
            raise ValueError(f"not a timestamp: {value!r} (epoch ms outside years 1 to 9999)")
        return int(value)
    if isinstance(value, str):
        return to_millis(str(value))
    if isinstance(value, datetime):
        return _datetime_ms(value)
    raise ValueError(f"not a timestamp: {value!r}")


_fromiso = datetime.fromisoformat

MIN_MS = -62_135_596_800_000
"""0001-01-01T00:00:00Z, the earliest time a timestamp column can hold."""
MAX_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the latest."""


def in_range(ms: int) -> int:
    """Return `ms` if it is a representable time (years 1 to 9999), else raise ValueError."""
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"epoch milliseconds {ms} are outside years 1 to 9999")
    return ms


_VECTOR_MIN = 64
"""Below this many values a batch is parsed value by value (Arrow's call overhead dominates)."""


def many_to_millis(values: list[Any], column: str | None = None) -> list[int] | None:
    """Parse a batch of event times in one Arrow call: epoch ms per value, in order, exactly as
    `to_millis` would give them (sub-millisecond digits are floored, as there).

    Returns None when that is not possible for every value (a value that is not an ISO-8601
    string, a null, a shape Arrow does not read such as a naive or nanosecond time, or a
    batch too small to gain): the caller then goes value by value with `to_millis`, which
    also explains any failure. Arrow only reads a subset of what `to_millis` reads, and gives
    the same instant for every string of that subset. With `column`, the batch is kept for
    `learn_texts(column)`.
    """
    if len(values) < _VECTOR_MIN or type(values[0]) is not str:
        return None
    import pyarrow as pa  # lazily: most commands never parse a batch of times
    import pyarrow.compute as pc

    try:
        micros = pa.array(values, pa.string()).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if micros.null_count:
        return None
    out: list[int]
    if pc.min(micros).as_py() >= 0:  # Arrow's integer division truncates: floor only here
        out = pc.divide(micros, 1000).to_pylist()
    else:
        out = [us // 1000 for us in micros.to_pylist()]
    if column is not None:
        _LAST_READ[column] = (out, values)
    return out


def learn_texts(column: str) -> None:
    """Remember the texts of `column`'s last parsed batch, if they are in `iso_utc`'s own
    form, so that `iso_utc` gives them back without formatting (called by a writer about to
    format that column; a column never written back costs nothing)."""
    read = _LAST_READ.pop(column, None)
    if read is None:
        return
    import pyarrow.compute as pc

    out, values = read
    if pc.all(pc.match_substring_regex(values, _AS_ISO_UTC)).as_py():
        if len(_SEEN_TEXTS) > _SEEN_TEXTS_MAX:
            _SEEN_TEXTS.clear()
        _SEEN_TEXTS.update(zip(out, values, strict=True))


_LAST_READ: dict[str, tuple[list[int], list[str]]] = {}
"""Per column, its last batch parsed (a batch is written out before the next is parsed)."""
_AS_ISO_UTC = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|\.\d\d[1-9]Z|\.\d[1-9]\dZ|\.[1-9]\d\dZ)$"
"""Exactly the texts `iso_utc` writes (whole seconds without a fraction): for a text of this
shape that Arrow reads (it refuses fields out of range), `iso_utc` of its instant is the text."""
_SEEN_TEXTS: dict[int, str] = {}
"""Event times read in `iso_utc`'s own form, by instant (see `learn_texts`)."""
_SEEN_TEXTS_MAX = 1 << 17


def _datetime_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _ONE_MS


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def iso_utc(ms: int) -> str:
    """Format epoch ms as ISO-8601 UTC: "2024-05-01T10:05:00Z", or "...:00.123Z"."""
    seen = _SEEN_TEXTS.get(ms)
    if seen is not None:
        return seen
    day, rest = divmod(ms, 86_400_000)
    sec, milli = divmod(rest, 1000)
    hour, sec = divmod(sec, 3600)
    minute, sec = divmod(sec, 60)
    if milli:
        return f"{_iso_day(day)}{hour:02d}:{minute:02d}:{sec:02d}.{milli:03d}Z"
    return f"{_iso_day(day)}{hour:02d}:{minute:02d}:{sec:02d}Z"


@lru_cache(maxsize=4096)
def _iso_day(day: int) -> str:
    """ "2024-05-01T" for a day since the epoch (OverflowError outside years 1-9999)."""
    return (_NAIVE_EPOCH + timedelta(days=day)).date().isoformat() + "T"
