"""Spark datetime patterns ("yyyy-MM-dd HH:mm:ss": the Java DateTimeFormatter letters Spark 3+
reads) to parse text into epoch ms and to format epoch ms, in UTC (Weir's session time zone).

Supported letters: y M L d D H h K k m s S a G, zones X x Z O z VV, quoted text ('T', '' for a
quote) and optional sections [...]; E Q q format only (Spark does not parse with them).
Refused with ValueError when compiled, i.e. when the expression is defined: week-based letters
(Y w W u e c, as Spark 3 refuses them), other letters (F, n, N, A, B...), too many letters.
Parsing is case-insensitive, reads the whole text, and gives None for text that does not match
or is no valid time (February 30, a day of year past the year's end, an unknown zone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from weir.tables.expressions.spark_datetime import datetime_to_ms, ms_to_datetime, parse_zone
from weir.tables.timeutil import MAX_MS, MIN_MS

# -- datetime patterns -----------------------------------------------------------------------
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ORDINAL = ("1st", "2nd", "3rd", "4th")
_MAX_COUNT = dict.fromkeys("dHhKkms", 2) | dict.fromkeys("MLEQqGz", 4) | dict.fromkeys("XxZ", 5)
_MAX_COUNT |= {"y": 9, "D": 3, "S": 9, "a": 1, "V": 2, "O": 4}
_FORMAT_ONLY = frozenset("EQq")
_WEEK_BASED = frozenset("YwWuec")
_ZONE_REGEX = {
    "X": [r"Z|[+-]\d\d(?:\d\d)?", r"Z|[+-]\d{4}", r"Z|[+-]\d\d:\d\d", r"Z|[+-]\d{4}(?:\d\d)?",
          r"Z|[+-]\d\d:\d\d(?::\d\d)?"],
    "x": [r"[+-]\d\d(?:\d\d)?", r"[+-]\d{4}", r"[+-]\d\d:\d\d", r"[+-]\d{4}(?:\d\d)?",
          r"[+-]\d\d:\d\d(?::\d\d)?"],
    "Z": [r"[+-]\d{4}"] * 3 + [r"GMT(?:[+-]\d\d:\d\d)?", r"Z|[+-]\d\d:\d\d(?::\d\d)?"],
    "O": [r"GMT(?:[+-]\d{1,2}(?::\d\d)?)?"] * 4,
}  # fmt: skip
_ZONE_TEXT = {
    "X": ["Z"] * 5, "x": ["+00", "+0000", "+00:00", "+0000", "+00:00"],
    "Z": ["+0000"] * 3 + ["GMT", "Z"], "O": ["GMT"] * 4,
    "z": ["UTC"] * 3 + ["Coordinated Universal Time"], "V": ["UTC"] * 2,
}  # fmt: skip

Token = tuple[Any, ...]
"""("lit", text), ("field", letter, count) or ("opt", [tokens])."""


def _tokens(p: str, i: int = 0, depth: int = 0) -> tuple[list[Token], int]:
    out: list[Token] = []
    while i < len(p):
        ch = p[i]
        if ch == "'":
            j, buf = i + 1, []
            while True:
                if j >= len(p):
                    raise ValueError(f"pattern {p!r}: a quote is not closed")
                if p[j] == "'":
                    if p[j + 1 : j + 2] == "'":
                        buf.append("'")
                        j += 2
                        continue
                    break
                buf.append(p[j])
                j += 1
            out.append(("lit", "".join(buf) if j > i + 1 else "'"))
            i = j + 1
        elif ch == "[":
            sub, i = _tokens(p, i + 1, depth + 1)
            out.append(("opt", sub))
        elif ch == "]":
            if depth == 0:
                raise ValueError(f"pattern {p!r}: ']' without '['")
            return out, i + 1
        elif ch.isascii() and ch.isalpha():
            j = i
            while j < len(p) and p[j] == ch:
                j += 1
            out.append(_field(p, ch, j - i))
            i = j
        elif ch in "#{}":
            raise ValueError(f"pattern {p!r}: reserved character {ch!r}")
        else:
            out.append(("lit", ch))
            i += 1
    if depth:
        raise ValueError(f"pattern {p!r}: '[' without ']'")
    return out, i


def _field(p: str, letter: str, count: int) -> Token:
    if letter in _WEEK_BASED:
        raise ValueError(
            f"pattern {p!r}: all week-based patterns are unsupported since Spark 3.0, detected: "
            f"{letter}; use dayofweek/weekofyear instead"
        )
    limit = _MAX_COUNT.get(letter)
    if limit is None:
        raise ValueError(f"pattern {p!r}: unsupported pattern letter {letter!r}")
    if count > limit or (letter == "V" and count != 2) or (letter == "O" and count not in (1, 4)):
        raise ValueError(f"pattern {p!r}: too many pattern letters: {letter * count}")
    return ("field", "M" if letter == "L" else letter, count)


def _digits(lo: int, hi: int) -> str:
    return rf"(\d{{{lo},{hi}}})"


def _parse_regex(letter: str, count: int) -> str:
    """The regex (one group) reading a field; letters that only format are refused before."""
    if letter == "y":
        return {1: _digits(1, 4), 2: _digits(2, 2), 3: _digits(3, 4)}.get(count, _digits(count, 4))
    if letter == "M" and count >= 3:
        names = _MONTHS if count == 4 else tuple(m[:3] for m in _MONTHS)
        return "(" + "|".join(names) + ")"
    if letter == "D":
        return _digits(count, 3)
    if letter == "S":
        return _digits(1, count)
    if letter == "a":
        return "(AM|PM)"
    if letter == "G":
        return "(AD|BC|Anno Domini|Before Christ)"
    if letter in _ZONE_REGEX:
        return f"({_ZONE_REGEX[letter][count - 1]})"
    if letter in ("z", "V"):
        return r"([A-Za-z][A-Za-z0-9~/._+-]*(?:[+-]\d\d?(?::?\d\d)?)?)"
    return _digits(count, 2)  # M, d, H, h, K, k, m, s


def _format_field(letter: str, count: int, dt: datetime) -> str:
    if letter == "y":
        return f"{dt.year % 100:02d}" if count == 2 else f"{dt.year:0{count}d}"
    if letter == "M" and count >= 3:
        return _MONTHS[dt.month - 1] if count == 4 else _MONTHS[dt.month - 1][:3]
    if letter == "E":
        return _DAYS[dt.weekday()] if count == 4 else _DAYS[dt.weekday()][:3]
    if letter in "Qq":
        q = (dt.month - 1) // 3 + 1
        return (str(q), f"0{q}", f"Q{q}", f"{_ORDINAL[q - 1]} quarter")[count - 1]
    if letter == "S":
        return f"{dt.microsecond:06d}000"[:count]
    if letter == "a":
        return "AM" if dt.hour < 12 else "PM"
    if letter == "G":
        return "Anno Domini" if count == 4 else "AD"
    if letter in _ZONE_TEXT:
        return _ZONE_TEXT[letter][count - 1]
    value = {
        "M": dt.month,
        "d": dt.day,
        "D": dt.timetuple().tm_yday,
        "H": dt.hour,
        "k": dt.hour or 24,
        "K": dt.hour % 12,
        "h": dt.hour % 12 or 12,
        "m": dt.minute,
        "s": dt.second,
    }[letter]
    return f"{value:0{count}d}"


_KEYS = {"y": "year", "M": "month", "d": "day", "D": "doy", "H": "H", "k": "k", "K": "K"}
_KEYS |= {"h": "h", "m": "minute", "s": "second", "S": "micros", "a": "pm", "G": "bc"}
_KEYS |= dict.fromkeys("XxZOzV", "zone")


def _value(letter: str, count: int, text: str) -> Any:
    if letter == "M" and count >= 3:
        return 1 + [m[: len(text)].lower() for m in _MONTHS].index(text.lower())
    if letter == "y" and count == 2:
        return 2000 + int(text)
    if letter == "S":
        return int(text[:6].ljust(6, "0"))
    if letter in ("a", "G"):
        return text.upper() in ("PM", "BC", "BEFORE CHRIST")
    if _KEYS[letter] == "zone":
        return parse_zone(text)
    return int(text)


@dataclass(frozen=True)
class DateTimePattern:
    """A compiled Spark datetime pattern: `parse(text)` gives epoch ms or None, `format(ms)`
    the text of a time in UTC."""

    pattern: str
    tokens: tuple[Token, ...]
    regex: re.Pattern[str] | None
    fields: tuple[tuple[str, int], ...]

    def format(self, ms: int) -> str | None:
        """The UTC time `ms` written with the pattern; None outside years 1 to 9999."""
        if not MIN_MS <= ms <= MAX_MS:
            return None
        dt = ms_to_datetime(ms)
        return _render(self.tokens, dt)

    def parse(self, text: str) -> int | None:
        """Epoch ms of `text` read with the pattern (the whole text, case-insensitive); missing
        fields default to 1970-01-01 00:00:00 UTC. None when it does not match or is not a
        valid time (February 30, hour 24, an unknown zone...)."""
        if self.regex is None:
            raise ValueError(f"pattern {self.pattern!r} was compiled to format, not to parse")
        m = self.regex.fullmatch(text)
        if m is None:
            return None
        got: dict[str, Any] = {}
        for (letter, count), raw in zip(self.fields, m.groups(), strict=True):
            if raw is None:  # an optional section that did not match
                continue
            key, value = _KEYS[letter], _value(letter, count, raw)
            if value is None or got.setdefault(key, value) != value:
                return None  # an unknown zone, or two different values for one field
        try:
            return _resolve(got)
        except (ValueError, OverflowError):
            return None


def _render(tokens: tuple[Token, ...] | list[Token], dt: datetime) -> str:
    out = []
    for t in tokens:
        if t[0] == "lit":
            out.append(t[1])
        elif t[0] == "opt":
            out.append(_render(t[1], dt))
        else:
            out.append(_format_field(t[1], t[2], dt))
    return "".join(out)


def _resolve(got: dict[str, Any]) -> int | None:
    if got.get("bc"):
        return None
    year = got.get("year", 1970)
    pm = got.get("pm")
    hour = got.get("H")
    if hour is not None:
        if pm is not None and pm != (hour >= 12):
            return None
    elif "k" in got:
        hour = got["k"] % 24 if 1 <= got["k"] <= 24 else -1
    elif "h" in got:
        hour = got["h"] % 12 + 12 * bool(pm) if 1 <= got["h"] <= 12 else -1
    elif "K" in got:
        hour = got["K"] + 12 * bool(pm) if got["K"] <= 11 else -1
    day = date(year, got.get("month", 1), got.get("day", 1))
    if "doy" in got:
        by_doy = date(year, 1, 1) + timedelta(days=got["doy"] - 1)
        if by_doy.year != year or (("month" in got or "day" in got) and by_doy != day):
            return None
        day = by_doy
    dt = datetime(
        day.year,
        day.month,
        day.day,
        hour or 0,
        got.get("minute", 0),
        got.get("second", 0),
        got.get("micros", 0),
        tzinfo=got.get("zone", UTC),
    )
    return datetime_to_ms(dt)


def _regex(tokens: list[Token], fields: list[tuple[str, int]]) -> str:
    parts = []
    for t in tokens:
        if t[0] == "lit":
            parts.append(re.escape(t[1]))
        elif t[0] == "opt":
            parts.append(f"(?:{_regex(t[1], fields)})?")
        else:
            fields.append((t[1], t[2]))
            parts.append(_parse_regex(t[1], t[2]))
    return "".join(parts)


def _letters(tokens: list[Token]) -> set[str]:
    out: set[str] = set()
    for t in tokens:
        if t[0] == "field":
            out.add(t[1])
        elif t[0] == "opt":
            out |= _letters(t[1])
    return out


@lru_cache(maxsize=256)
def datetime_pattern(pattern: str, parsing: bool) -> DateTimePattern:
    """Compile a Spark datetime pattern; `parsing` refuses the letters Spark only formats with
    (E, Q, q). Raises ValueError, with the reason, for a pattern Spark refuses or Weir does not
    support: week-based letters (Y w W u e c), other unknown letters, too many letters."""
    if not isinstance(pattern, str):
        raise TypeError(f"a datetime pattern is text, not {pattern!r}")
    tokens, _ = _tokens(pattern)
    letters = _letters(tokens)
    if parsing and letters & _FORMAT_ONLY:
        bad = "".join(sorted(letters & _FORMAT_ONLY))
        raise ValueError(f"pattern {pattern!r}: Spark uses {bad} only to format, not to parse")
    fields: list[tuple[str, int]] = []
    regex = re.compile(_regex(tokens, fields), re.IGNORECASE | re.ASCII) if parsing else None
    return DateTimePattern(pattern, tuple(tokens), regex, tuple(fields))


__all__ = ["DateTimePattern", "datetime_pattern"]
