"""A data file's rows as record values: JSON lines, CSV and Parquet (the directory source's
readers, `weir.service.sources.directory`).

`read_rows(data, format, schema)` gives each row of a file as the JSON bytes of one object, in
file order, and never raises for what the file holds:

* JSON lines (UTF-8, an optional BOM): each non-blank line as it is (a line that is not a
  JSON object is still a row; the driver dead-letters it). Blank lines are not rows.
* CSV (UTF-8, an optional BOM): the first row names the columns; each field becomes the
  schema's type of its column (integer/long: int, double: float, boolean: true/false in any
  case; timestamp, string and columns the schema does not name stay text); an empty field is
  null. A field that does not convert stays text, so `Schema.conform` rejects the row naming
  the field. As Spark's permissive CSV reader: a short row's missing fields are null, a long
  row's extra fields are dropped. Blank lines are not rows.
* Parquet: the columns the schema names (all columns when the file has none of them);
  timestamp columns as ISO-8601 UTC text to the millisecond (a naive timestamp is UTC;
  timestamps nested in structs or lists to the microsecond), dates and times as ISO text,
  decimals as floats, binary as UTF-8 text (base64 when it is not).

A file that cannot be read at all (not Parquet, not UTF-8 CSV, a broken CSV) gives one value
`unreadable(reason)`, which is not JSON: the driver dead-letters it with the file's headers.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
from collections.abc import Callable, Sequence
from itertools import islice, zip_longest
from typing import Any, Literal

import orjson

from weir.tables.ops.static import normalize_value
from weir.tables.schema import Schema

Format = Literal["json", "csv", "parquet"]
FORMATS: tuple[Format, ...] = ("json", "csv", "parquet")


def unreadable(reason: str) -> bytes:
    """The one value of a file that cannot be read: `unreadable file: <reason>` (not JSON)."""
    return f"unreadable file: {reason}".encode()


def read_rows(data: bytes, format: Format, schema: Schema) -> list[bytes]:
    """Every row of a file's bytes as JSON object bytes, in file order (see the module doc);
    `[unreadable(reason)]` when the file cannot be read at all."""
    if format == "json":
        data = data.removeprefix(codecs.BOM_UTF8)
        return [line for line in data.splitlines() if line.strip()]
    if format == "csv":
        return _csv_rows(data, schema)
    if format == "parquet":
        return _parquet_rows(data, schema)
    raise ValueError(f"unknown file format {format!r} ({', '.join(FORMATS)})")


_BETWEEN = orjson.Fragment(b"\n")


def _dump_rows(
    rows: list[dict[str, Any]], default: Callable[[Any], Any] | None = None, option: int = 0
) -> list[bytes]:
    """Each row's JSON bytes, as `orjson.dumps(row)` gives them, from one orjson call (a call
    per row costs several times more). The rows are written as one array with a raw newline
    between them, which compact JSON never holds anywhere else (orjson escapes control
    characters in strings), so splitting there gives each row's bytes exactly."""
    if not rows:
        return []
    parts: list[Any] = [_BETWEEN] * (2 * len(rows) - 1)
    parts[::2] = rows
    return orjson.dumps(parts, default=default, option=option)[1:-1].split(b",\n,")


# -- CSV -----------------------------------------------------------------------------------


def _to_int(text: str) -> Any:
    if "_" in text:  # int() reads "1_000"; a CSV number does not have them
        return text
    try:
        return int(text)  # surrounding blanks are fine
    except ValueError:
        return text


def _to_float(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    # float() also reads "1_0", "nan" and "inf"; JSON has no NaN (orjson would write null).
    return value if math.isfinite(value) and "_" not in text else text


_BOOLEANS = {"true": True, "false": False}


def _column(fields: Sequence[str], kind: Any) -> list[Any]:
    """A CSV column's fields as the schema's type `kind` says (see the module doc)."""
    if kind in ("int", "bigint", "double", "float"):  # Schema.fields: Spark type names
        parse: Callable[[str], Any] = float if kind in ("double", "float") else int
        try:  # the usual case first: every field a number, converted in one pass
            out = [parse(f) for f in fields]
        except ValueError:
            pass
        else:
            if "_" not in "".join(fields) and (parse is int or all(map(math.isfinite, out))):
                return out
        convert = _to_float if parse is float else _to_int
        return [convert(f) if f else None for f in fields]
    if kind == "boolean":
        return [_BOOLEANS.get(f.strip().lower(), f) if f else None for f in fields]
    return [f or None for f in fields]


def _csv_rows(data: bytes, schema: Schema) -> list[bytes]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [unreadable(f"csv: not UTF-8 text: {exc}")]
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        records = [fields for fields in reader if fields]  # [] is a blank line
    except csv.Error as exc:
        return [unreadable(f"csv: {exc}")]
    if len(records) < 2:
        return []
    header, records = records[0], records[1:]
    # Column by column: short rows are padded with empty fields (null), long rows' extra
    # fields fall off the end with the columns the header does not name.
    fields_of = list(islice(zip_longest(*records, fillvalue=""), len(header)))
    fields_of += [("",) * len(records)] * (len(header) - len(fields_of))
    columns = [
        _column(fields, schema.fields.get(name))
        for name, fields in zip(header, fields_of, strict=True)
    ]
    return _dump_rows(
        [dict(zip(header, values, strict=True)) for values in zip(*columns, strict=True)]
    )


# -- Parquet -------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    """What orjson cannot write itself (it writes datetimes, dates and times as ISO text): as
    a static table's rows hold it."""
    out = normalize_value(value)
    if out is not value:
        return out
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


def _micros(kind: Any) -> Any:
    """`kind` with nanosecond timestamps inside structs and lists made microseconds (Python's
    datetime has no nanoseconds, so reading them as rows would fail)."""
    import pyarrow as pa

    if pa.types.is_timestamp(kind) and kind.unit == "ns":
        return pa.timestamp("us", kind.tz)
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_micros(f.type)) for f in kind])
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_micros(kind.value_type)))
    if pa.types.is_large_list(kind):
        return pa.large_list(kind.value_field.with_type(_micros(kind.value_type)))
    return kind


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
                ms = _epoch_ms(table.column(i)).cast(pa.timestamp("ms", tz="UTC"))
                table = table.set_column(i, field.name, ms)  # ISO-8601 text in the JSON
            elif (micros := _micros(field.type)) != field.type:
                table = table.set_column(i, field.name, table.column(i).cast(micros, safe=False))
        names = table.column_names
        if not names:
            return [b"{}"] * table.num_rows
        columns = [column.to_pylist() for column in table.columns]
        rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
        return _dump_rows(rows, _json_default, orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z)
    except Exception as exc:  # whatever a corrupt file makes pyarrow raise is the file's fault
        return [unreadable(f"parquet: {type(exc).__name__}: {exc}")]
