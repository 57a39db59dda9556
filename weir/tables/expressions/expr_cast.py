"""Spark's non-ANSI CAST for `Column.cast`: a value that does not convert gives None.
Casting binary (bytes, such as a Kafka record's `value` column) to string decodes UTF-8."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")
_TRUE = frozenset({"t", "true", "y", "yes", "1"})
_FALSE = frozenset({"f", "false", "n", "no", "0"})


def _integral(bits: int) -> Callable[[Any], Any]:
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def conv(v: Any) -> Any:
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int):  # Spark wraps a narrowing integer cast around
            return (v - lo) % (hi - lo + 1) + lo
        if isinstance(v, float):  # truncated; NaN is 0, beyond the range saturates (JVM)
            if math.isnan(v):
                return 0
            return max(lo, min(hi, int(v))) if math.isfinite(v) else (hi if v > 0 else lo)
        if isinstance(v, str):  # "1.9" is 1; out of range or not a number is null
            s = v.strip()
            if not _DECIMAL.fullmatch(s):
                return None
            n = int(Decimal(s))  # truncates toward zero, exactly
            return n if lo <= n <= hi else None
        return None

    return conv


def _double(v: Any) -> Any:
    if isinstance(v, bool | int | float):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        try:
            return float(s)
        except ValueError:
            return None
    return None


def _string(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, bytes | bytearray | memoryview):  # Spark: binary as UTF-8 text, a bad
        return bytes(v).decode("utf-8", errors="replace")  # sequence as U+FFFD
    return v if isinstance(v, str) else str(v)


def _boolean(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return None if isinstance(v, float) and math.isnan(v) else v != 0
    if isinstance(v, str):
        s = v.strip().lower()
        return True if s in _TRUE else False if s in _FALSE else None
    return None


CASTS: dict[str, Callable[[Any], Any]] = {
    "int": _integral(32),
    "integer": _integral(32),
    "long": _integral(64),
    "bigint": _integral(64),
    "double": _double,
    "float": _double,
    "string": _string,
    "boolean": _boolean,
}
"""Type name -> converter of a non-None value (None for a failed conversion)."""

_SPARK_NAMES = {"int": "INT", "integer": "INT", "long": "BIGINT", "bigint": "BIGINT"}


def spark_type_name(key: str) -> str:
    """The type as Spark prints it in a column name: CAST(a AS BIGINT)."""
    return _SPARK_NAMES.get(key, key.upper())
