"""Spark's `from_json` and `to_json` over Columns (pyspark.sql.functions).

The course's parse of a Kafka value::

    raw.select(from_json(col("value").cast("string"), schema).alias("data")).select("data.*")

`from_json` makes a struct column (a dict per row) whose `dtype` is the struct's Spark type
name ("struct<user_id:string,amount:double>"), so `select("data.*")` knows its fields when the
query is defined.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from weir.tables.ddl import SchemaLike, remember, type_of_name
from weir.tables.expressions.expr import Column, Compiled, name_or_column, type_of
from weir.tables.operator import Row
from weir.tables.schema import Misfit, Schema, SchemaError, converter
from weir.tables.timeutil import iso_utc
from weir.tables.types import ArrayType, DataType, DecimalType, StructType, TimestampType

_MODES = {"PERMISSIVE": "permissive", "FAILFAST": "strict"}


def from_json(
    col: str | Column, schema: SchemaLike | Schema, options: Mapping[str, str] | None = None
) -> Column:
    """Spark's `from_json(col, schema, options)`: parse JSON text (or UTF-8 bytes) into a
    struct of `schema` (a StructType, DDL text, the dict form or a Schema).

    Values convert as `weir.tables.schema` says (Spark's JSON reader). `options["mode"]`:
    "PERMISSIVE" (the default, as in Spark): a field that does not fit is null, and malformed
    JSON (or JSON that is not an object) gives a struct whose fields are all null, as Spark 3+
    does; "FAILFAST": either raises SchemaError naming the field and the reason, which
    dead-letters the row. A null input is null. Other options are accepted and ignored.
    Raises ValueError for an unknown mode or a schema that is not a struct.
    """
    opts = {str(k).lower(): v for k, v in (options or {}).items()}
    mode = str(opts.get("mode", "PERMISSIVE")).upper()
    if mode not in _MODES:
        raise ValueError(f"from_json: mode must be PERMISSIVE or FAILFAST, not {mode!r}")
    struct = schema.struct if isinstance(schema, Schema) else Schema(schema).struct
    lax = mode == "PERMISSIVE"
    arg = name_or_column(col)
    inner = arg._build
    convert = converter(struct, lax)
    nulls = dict.fromkeys(struct.names)

    def build() -> Compiled:
        a = inner()

        def run(r: Row) -> Any:
            v = a(r)
            if v is None:
                return None
            if isinstance(v, bytes | bytearray | memoryview):
                v = bytes(v).decode("utf-8", errors="replace")
            if not isinstance(v, str):
                raise TypeError(f"from_json takes JSON text, not {type(v).__name__}")
            try:
                parsed = orjson.loads(v)
            except orjson.JSONDecodeError as exc:
                if lax:
                    return dict(nulls)
                raise SchemaError(f"from_json: malformed JSON: {exc}") from None
            if type(parsed) is not dict:
                if lax:
                    return dict(nulls)
                raise SchemaError(f"from_json: expected a JSON object, got {v[:40]!r}")
            try:
                return convert(parsed)
            except Misfit as m:  # FAILFAST only: permissive makes the field null
                raise SchemaError(f"from_json: {m.path}: {m.reason}") from None

        return run

    return Column(build, f"from_json({arg.name})", arg.references(), remember(struct))


def to_json(col: str | Column, options: Mapping[str, str] | None = None) -> Column:
    """Spark's `to_json(col)`: a struct (dict) or array (list) as JSON text; null is null.

    As Spark (ignoreNullFields): a struct's null fields are left out, at every level. When the
    column's type is known (a `from_json` column or a schema's struct), its timestamps are
    written as ISO-8601 UTC text ("2024-05-01T00:00:00Z", as Weir writes times at the edges)
    and its decimals as JSON numbers; otherwise values are written as they are held.
    `options` are accepted and ignored. A value that is not a dict or a list raises
    TypeError, which dead-letters the row (Spark refuses such a query).
    """
    arg = name_or_column(col)
    inner = arg._build

    def build() -> Compiled:
        a = inner()
        name = type_of(arg)
        kind = type_of_name(name) if name else None

        def run(r: Row) -> Any:
            v = a(r)
            if v is None:
                return None
            if not isinstance(v, dict | list):
                raise TypeError(f"to_json takes a struct or an array, not {type(v).__name__}")
            return orjson.dumps(_render(v, kind)).decode()

        return run

    return Column(build, f"to_json({arg.name})", arg.references(), "string")


def _render(v: Any, kind: DataType | None) -> Any:
    if v is None:
        return None
    if isinstance(v, dict):
        fields = {f.name: f.dataType for f in kind} if isinstance(kind, StructType) else {}
        return {k: _render(x, fields.get(k)) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        element = kind.elementType if isinstance(kind, ArrayType) else None
        return [_render(x, element) for x in v]
    if isinstance(kind, TimestampType) and type(v) is int:
        return iso_utc(v)
    if isinstance(kind, DecimalType) and isinstance(v, str):
        return orjson.Fragment(v)
    return v


SQL_FUNCTIONS = {"from_json": from_json, "to_json": to_json}
"""The functions of this module under their Spark SQL names (expressions.sql_functions)."""
