"""Spark's datetime text for the time functions (expressions.expr_time): the CAST of text to a
timestamp or a date, and datetime patterns ("yyyy-MM-dd HH:mm:ss": the Java DateTimeFormatter
letters Spark 3+ reads) to parse and to format.

Weir's session time zone is UTC: text without a zone is read as UTC, and formatting writes UTC
(so "XXX" writes "Z" and "z" writes "UTC"). Times are epoch milliseconds, years 1 to 9999:
sub-millisecond digits are floored, and text that does not parse, or a time outside those
years, gives None (Spark's non-ANSI null). A pattern that cannot be used raises ValueError
when it is compiled, i.e. when the expression is defined.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from weir.tables.timeutil import MAX_MS, MIN_MS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)
_JAVA_SPACE = "".join(map(chr, range(33))) + "\x7f"  # Java's trim: controls and space


def ms_to_datetime(ms: int) -> datetime:
    """Epoch ms as a naive UTC datetime (ms must be within years 1 to 9999)."""
    return _NAIVE_EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(dt: datetime) -> int | None:
    """An aware (or naive UTC) datetime as epoch ms, floored; None outside years 1 to 9999."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ms = (dt - _EPOCH) // _ONE_MS
    return ms if MIN_MS <= ms <= MAX_MS else None


# -- zones ---------------------------------------------------------------------------------
_SHORT_IDS = {  # java.time.ZoneId.SHORT_IDS, which Spark accepts
    "EST": "-05:00", "HST": "-10:00", "MST": "-07:00", "ACT": "Australia/Darwin",
    "AET": "Australia/Sydney", "AGT": "America/Argentina/Buenos_Aires", "ART": "Africa/Cairo",
    "AST": "America/Anchorage", "BET": "America/Sao_Paulo", "BST": "Asia/Dhaka",
    "CAT": "Africa/Harare", "CNT": "America/St_Johns", "CST": "America/Chicago",
    "CTT": "Asia/Shanghai", "EAT": "Africa/Addis_Ababa", "ECT": "Europe/Paris",
    "IET": "America/Indiana/Indianapolis", "IST": "Asia/Kolkata", "JST": "Asia/Tokyo",
    "MIT": "Pacific/Apia", "NET": "Asia/Yerevan", "NST": "Pacific/Auckland",
    "PLT": "Asia/Karachi", "PNT": "America/Phoenix", "PRT": "America/Puerto_Rico",
    "PST": "America/Los_Angeles", "SST": "Pacific/Guadalcanal", "VST": "Asia/Ho_Chi_Minh",
}  # fmt: skip
_OFFSET = re.compile(r"([+-])(\d{1,2}|\d\d:?\d\d|\d\d:\d\d:\d\d|\d{6})")
_REGION = re.compile(r"[A-Za-z][A-Za-z0-9~/._+-]+")


def _offset(text: str) -> tzinfo | None:
    m = _OFFSET.fullmatch(text)
    if m is None:
        return None
    digits = m.group(2).replace(":", "")
    h, mi, s = int(digits[:2] if len(digits) > 2 else digits), 0, 0
    if len(digits) >= 4:
        mi = int(digits[2:4])
    if len(digits) == 6:
        s = int(digits[4:])
    if mi > 59 or s > 59 or h * 3600 + mi * 60 + s > 18 * 3600:
        return None
    sign = -1 if m.group(1) == "-" else 1
    return timezone(sign * timedelta(hours=h, minutes=mi, seconds=s))


@lru_cache(maxsize=1024)
def parse_zone(text: str) -> tzinfo | None:
    """A zone as Spark reads one (`getZoneId`): "Z", an offset ("+05:00", "-0800", "+5:30"),
    "UTC"/"GMT"/"UT" with or without an offset, a short id ("PST") or a region ("Europe/Paris",
    daylight saving applies). None when it is not a zone."""
    t = text.strip(_JAVA_SPACE)
    t = re.sub(r"([+-])(\d):", r"\g<1>0\2:", t, count=1)
    t = re.sub(r"([+-]\d\d):(\d)$", r"\1:0\2", t, count=1)
    t = _SHORT_IDS.get(t, t)
    if t in ("Z", "z", "UTC", "GMT", "UT"):
        return UTC
    if t[:1] in ("+", "-"):
        return _offset(t)
    for prefix in ("UTC", "GMT", "UT"):
        if t.startswith(prefix) and t[len(prefix) : len(prefix) + 1] in ("+", "-"):
            return _offset(t[len(prefix) :])
    if not _REGION.fullmatch(t):
        return None
    try:
        return ZoneInfo(t)
    except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return None


# -- CAST(text AS TIMESTAMP / DATE) ----------------------------------------------------------
_CAST_DATE = re.compile(r"\+?(\d{4,7})(?:-(\d{1,2})(?:-(\d{1,2})(?:[ T].*)?)?)?", re.S)
_CAST_TS = re.compile(r"\+?(\d{4,6})(?:-(\d{1,2})(?:-(\d{1,2})(?:[ T](.*))?)?)?", re.S)
_CAST_TIME = re.compile(r"(\d{1,2})(?::(\d{1,2})(?::(\d{1,2})(?:\.(\d*))?(.*))?)?", re.S)
_JUST_TIME = re.compile(r"T?(\d{1,2}:.*|(?<=T)\d{1,2})", re.S)


def cast_date(text: str) -> date | None:
    """Spark's CAST(text AS DATE): "yyyy", "yyyy-[m]m", "yyyy-[m]m-[d]d", and anything after a
    date followed by " " or "T" is ignored (a time and its zone too); None otherwise."""
    m = _CAST_DATE.fullmatch(text.strip(_JAVA_SPACE))
    if m is None:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1))
    except ValueError:
        return None


def cast_timestamp(text: str, today: Callable[[], int]) -> int | None:
    """Spark's CAST(text AS TIMESTAMP) as epoch ms: "yyyy[-[m]m[-[d]d[( |T)time]]]" where time
    is "[h]h[:[m]m[:[s]s[.fraction][zone]]]" (a zone only after the seconds), or a time alone
    ("10:30:00", "T10:30"), on the date of `today()` (epoch ms). Without a zone, UTC."""
    s = text.strip(_JAVA_SPACE)
    m = _CAST_TS.fullmatch(s)
    if m is not None:
        y, mo, d = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
        rest = m.group(4)
    else:
        t = _JUST_TIME.fullmatch(s)
        if t is None:
            return None
        y = mo = d = 0  # set below, once the zone is known
        rest = t.group(1)
    h = mi = sec = micros = 0
    zone: tzinfo | None = UTC
    if rest is not None:
        tm = _CAST_TIME.fullmatch(rest)
        if tm is None:
            return None
        h, mi, sec = int(tm.group(1)), int(tm.group(2) or 0), int(tm.group(3) or 0)
        micros = int((tm.group(4) or "")[:6].ljust(6, "0"))
        if tm.group(5) and tm.group(5).strip(_JAVA_SPACE):
            zone = parse_zone(tm.group(5))
            if zone is None:
                return None
    if m is None:
        now = datetime.fromtimestamp(today() / 1000, zone)
        y, mo, d = now.year, now.month, now.day
    try:
        return datetime_to_ms(datetime(y, mo, d, h, mi, sec, micros, tzinfo=zone))
    except (ValueError, OverflowError):
        return None


__all__ = [
    "cast_date",
    "cast_timestamp",
    "datetime_to_ms",
    "ms_to_datetime",
    "parse_zone",
]
