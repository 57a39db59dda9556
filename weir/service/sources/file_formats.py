"""A data file's rows as record values: JSON lines, CSV and Parquet (the directory source's
readers, `weir.service.sources.directory`).

`read_rows(data, format, schema)` gives each row of a file as the JSON bytes of one object, in
file order, and never raises for what the file holds:

* JSON lines: each non-blank line as it is (a line that is not a JSON object is still a row;
  the driver dead-letters it). Blank lines are not rows.
* CSV (UTF-8, an optional BOM): the header row names the columns; each field becomes the
  schema's type of its column (integer/long: int, double: float, boolean: true/false in any
  case; timestamp, string and columns the schema does not name stay text); an empty field is
  null. A field that does not convert stays text, so `Schema.conform` rejects the row naming
  the field. As Spark's permissive CSV reader: a short row's missing fields are null, a long
  row's extra fields are dropped. Blank lines are not rows.
* Parquet: the schema's columns (all columns when the file has none of them); timestamps
  as epoch milliseconds (a naive timestamp is UTC), dates and times as ISO text, decimals as
  floats, binary as UTF-8 text (base64 when it is not).

A file that cannot be read at all (not Parquet, not UTF-8 CSV, a broken CSV) gives one value
`unreadable(reason)`, which is not JSON: the driver dead-letters it with the file's headers.
"""

from __future__ import annotations

import base64
import csv
import io
import math
import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal

import orjson

from weir.service.schema import Schema

Format = Literal["json", "csv", "parquet"]
FORMATS: tuple[Format, ...] = ("json", "csv", "parquet")


def unreadable(reason: str) -> bytes:
    """The one value of a file that cannot be read: `unreadable file: <reason>` (not JSON)."""
    return f"unreadable file: {reason}".encode()


def read_rows(data: bytes, format: Format, schema: Schema) -> list[bytes]:
    """Every row of a file's bytes as JSON object bytes, in file order (see the module doc);
    `[unreadable(reason)]` when the file cannot be read at all."""
    if format == "json":
        return [line for line in data.splitlines() if line.strip()]
    if format == "csv":
        return _csv_rows(data, schema)
    if format == "parquet":
        return _parquet_rows(data, schema)
    raise ValueError(f"unknown file format {format!r} ({', '.join(FORMATS)})")


# -- CSV -----------------------------------------------------------------------------------

_INTEGER = re.compile(r"[+-]?[0-9]+")


def _to_int(text: str) -> Any:
    s = text.strip()
    return int(s) if _INTEGER.fullmatch(s) else text


def _to_float(text: str) -> Any:
    s = text.strip()
    try:
        value = float(s)
    except ValueError:
        return text
    # float() also takes "1_0", "nan" and "inf"; JSON has no NaN (orjson would write null).
    return value if math.isfinite(value) and "_" not in s else text


def _to_bool(text: str) -> Any:
    s = text.strip().lower()
    return True if s == "true" else False if s == "false" else text


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "integer": _to_int,
    "long": _to_int,
    "double": _to_float,
    "boolean": _to_bool,
}


def _csv_rows(data: bytes, schema: Schema) -> list[bytes]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [unreadable(f"csv: not UTF-8 text: {exc}")]
    try:
        lines = csv.reader(io.StringIO(text, newline=""))
        header = next(lines, None)
        if header is None:
            return []
        converters = [
            _CONVERTERS.get(kind) if isinstance(kind, str) else None
            for kind in (schema.fields.get(name) for name in header)
        ]
        columns = list(zip(header, converters, strict=True))
        out: list[bytes] = []
        for fields in lines:
            if not fields:  # a blank line
                continue
            row: dict[str, Any] = {}
            for (name, convert), field in zip(columns, fields, strict=False):
                if field == "":
                    row[name] = None
                else:
                    row[name] = convert(field) if convert is not None else field
            for name, _convert in columns[len(fields) :]:
                row[name] = None
            out.append(orjson.dumps(row))
    except csv.Error as exc:
        return [unreadable(f"csv: {exc}")]
    return out


# -- Parquet -------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    """What orjson cannot write itself (it writes datetimes, dates and times as ISO text)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, timedelta):
        return round(value.total_seconds() * 1000)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _epoch_ms(column: Any) -> Any:
    """A timestamp column as int64 epoch ms, floored (as `to_millis` does); the stored
    values are UTC whatever the column's time zone."""
    import pyarrow as pa

    unit = column.type.unit
    raw = column.cast(pa.int64())
    if unit == "ms":
        return raw
    if unit == "s":
        return pa.array([None if v is None else v * 1000 for v in raw.to_pylist()], pa.int64())
    per_ms = 1000 if unit == "us" else 1_000_000
    return pa.array([None if v is None else v // per_ms for v in raw.to_pylist()], pa.int64())


def _parquet_rows(data: bytes, schema: Schema) -> list[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(pa.BufferReader(data))
        present = set(file.schema_arrow.names)
        wanted = [name for name in schema.fields if name in present]
        table = file.read(columns=wanted or None)
        for i, field in enumerate(table.schema):
            if pa.types.is_timestamp(field.type):
                table = table.set_column(i, field.name, _epoch_ms(table.column(i)))
        rows = table.to_pylist()
        option = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
        return [orjson.dumps(row, default=_json_default, option=option) for row in rows]
    except Exception as exc:  # whatever a corrupt file makes pyarrow raise is the file's fault
        return [unreadable(f"parquet: {type(exc).__name__}: {exc}")]
