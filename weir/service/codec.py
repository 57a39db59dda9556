"""JSON in and out: Kafka values to rows, rows to Kafka values and keys."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from weir.tables.operator import Row
from weir.tables.timeutil import iso_utc, learn_texts


def decode_value(value: bytes | None) -> Row:
    """Decode a Kafka value into a row. Raises ValueError with a one-line reason when the value
    is missing, not JSON, or not a JSON object."""
    if value is None:
        raise ValueError("record has no value")
    try:
        row = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"value is not JSON: {exc}") from None
    if type(row) is not dict:
        raise ValueError(f"value is JSON {type(row).__name__}, expected an object")
    return row


_DICT_ONLY = {dict}


def decode_values(values: Sequence[bytes | None]) -> tuple[list[Row], list[tuple[int, str]]]:
    """Decode a batch of Kafka values (or JSON lines) into rows, in order.

    Returns the rows of the values that are JSON objects, and for every other value its index
    in `values` with the one-line reason `decode_value` gives. A batch of good values costs one
    orjson call."""
    try:
        decoded = orjson.loads(b"[" + b",".join(values) + b"]")  # type: ignore[arg-type]
        # The count check catches a value holding "1, 2", the type check a non-object.
        if len(decoded) == len(values) and set(map(type, decoded)) <= _DICT_ONLY:
            return decoded, []
    except (orjson.JSONDecodeError, TypeError):  # TypeError: a None value
        pass
    rows: list[Row] = []
    errors: list[tuple[int, str]] = []
    for i, value in enumerate(values):
        try:
            rows.append(decode_value(value))
        except ValueError as exc:
            errors.append((i, str(exc)))
    return rows, errors


def render_row(row: Row, timestamp_columns: Iterable[str]) -> Row:
    """Return `row` with its epoch-ms timestamp columns as ISO-8601 UTC strings."""
    out = dict(row)
    for col in timestamp_columns:
        v = out.get(col)
        if type(v) is int:
            out[col] = iso_utc(v)
    return out


def render_rows(rows: Iterable[Row], timestamp_columns: Iterable[str]) -> list[Row]:
    """`render_row` of each row (copies; the rows are left as they are)."""
    cols = tuple(timestamp_columns)
    if not cols:
        return [dict(r) for r in rows]
    first = rows[0] if isinstance(rows, list) and rows else None
    for col in cols:
        # A column the rows do not carry (the event time before an aggregation) is not
        # written back: learning its texts would be work for nothing.
        if first is None or col in first:
            learn_texts(col)
    shown: dict[int, str] = {}  # window bounds repeat across a batch's rows
    out: list[Row] = []
    for row in rows:
        r = dict(row)
        for col in cols:
            v = r.get(col)
            if type(v) is int:
                text = shown.get(v)
                if text is None:
                    text = shown[v] = iso_utc(v)
                r[col] = text
        out.append(r)
    return out


def encode_rows(rows: list[Row], timestamp_columns: frozenset[str]) -> list[bytes]:
    """Encode output rows as JSON values, timestamps rendered as ISO-8601 UTC."""
    dumps = orjson.dumps
    if not timestamp_columns:
        return [dumps(r) for r in rows]
    return [dumps(r) for r in render_rows(rows, timestamp_columns)]


WHOLE_ROW = ("*",)
"""A key spec meaning: the whole row (sorted-keys JSON) is the key."""


def encode_key(row: Row, key: tuple[str, ...]) -> bytes | None:
    """The record key for `row`: JSON of the one key column's value, or of the list of values;
    the whole row for `WHOLE_ROW`; None when the agent declares no key. A string value is
    encoded bare (no quotes)."""
    if not key:
        return None
    if key == WHOLE_ROW:
        return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
    if len(key) == 1:
        v: Any = row.get(key[0])
        if isinstance(v, str):
            return v.encode()
        return orjson.dumps(v)
    return orjson.dumps([row.get(k) for k in key])
