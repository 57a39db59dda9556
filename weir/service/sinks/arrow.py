"""Output rows as Arrow tables of a fixed schema, for the file and table sinks (Parquet,
Delta Lake)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeAlias

import pyarrow as pa

from weir.tables.operator import Row
from weir.tables.schema import Schema as WeirSchema
from weir.tables.types import ArrayType, DataType, DecimalType, StructType

TYPES: Mapping[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "long": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
    "date": pa.date32(),
}
"""Column types by name, as a schema mapping may give them."""

Schema: TypeAlias = pa.Schema | Mapping[str, str | pa.DataType] | WeirSchema | StructType
"""A pyarrow schema, {column: type} with type names of TYPES or pyarrow types, or Weir's
schema (`Schema`, `StructType`: weir.tables.types) with Spark's types."""


def as_schema(schema: Schema) -> pa.Schema:
    """A pyarrow schema from a `Schema`; raises ValueError naming an unknown type."""
    if isinstance(schema, pa.Schema):
        return schema
    if isinstance(schema, WeirSchema | StructType):
        struct = schema.struct if isinstance(schema, WeirSchema) else schema
        return pa.schema([pa.field(f.name, arrow_type(f.dataType)) for f in struct])
    fields = []
    for name, kind in schema.items():
        if isinstance(kind, str):
            if kind not in TYPES:
                raise ValueError(f"column {name!r}: unknown type {kind!r} ({', '.join(TYPES)})")
            kind = TYPES[kind]
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def arrow_type(kind: DataType) -> pa.DataType:
    """The Arrow type of a Spark type (decimals as decimal128, arrays as lists, structs)."""
    if isinstance(kind, DecimalType):
        return pa.decimal128(kind.precision, kind.scale)
    if isinstance(kind, ArrayType):
        return pa.list_(arrow_type(kind.elementType))
    if isinstance(kind, StructType):
        return pa.struct([pa.field(f.name, arrow_type(f.dataType)) for f in kind])
    simple = {"int": pa.int32(), "bigint": pa.int64(), "float": pa.float32()}
    name = kind.simpleString()
    if name in simple:
        return simple[name]
    if name not in TYPES:
        raise ValueError(f"no Arrow type for {name}")
    return TYPES[name]


def infer_schema(rows: Sequence[Row], timestamp_columns: Iterable[str] = ()) -> pa.Schema:
    """The schema of `rows` for `to_table`: columns in first-seen order, `timestamp_columns`
    (times as epoch ms or ISO-8601) as TYPES["timestamp"], the others of the type pyarrow
    infers from their values (null when they are all null). Raises as `to_table` (UNFIT) for a
    column whose values have no common type."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    times = frozenset(timestamp_columns)
    return pa.schema(
        pa.field(c, TYPES["timestamp"] if c in times else pa.array([r.get(c) for r in rows]).type)
        for c in columns
    )


def to_table(rows: Sequence[Row], schema: pa.Schema) -> pa.Table:
    """The rows as a table of `schema`: a missing column is null, times (epoch ms or ISO-8601)
    become timestamps or dates, decimal text ("12.50") decimals. Raises pyarrow's
    ArrowInvalid / ArrowTypeError (or TypeError, ValueError) naming the value when one does
    not fit its column."""
    arrays = []
    for f in schema:
        values = [row.get(f.name) for row in rows]
        if pa.types.is_timestamp(f.type):
            values = [_to_time(v) for v in values]
        elif pa.types.is_date(f.type):
            values = [_to_date(v) for v in values]
        elif pa.types.is_decimal(f.type):  # a decimal column holds exact text ("12.50")
            values = [Decimal(v) if isinstance(v, str) else v for v in values]
        arrays.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


UNFIT = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError)
"""What `to_table` raises for a value that does not fit its column."""


def _to_time(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool):
        return datetime.fromtimestamp(v / 1000, UTC)
    if isinstance(v, str):
        return datetime.fromisoformat(v.replace("Z", "+00:00"))
    return v


def _to_date(v: Any) -> Any:
    t = _to_time(v)
    return t.date() if isinstance(t, datetime) else t
