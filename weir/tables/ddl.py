"""Schemas from their three forms: a `StructType`, Spark DDL text (parsed with sqlglot, dialect
"spark") and the dict form.

* DDL: "event_id STRING, amount DOUBLE, tags ARRAY<STRING>, loc STRUCT<lat: DOUBLE, lon:
  DOUBLE>, price DECIMAL(10,2), event_time TIMESTAMP". A timestamp read from epoch numbers
  says its unit in a column comment: `ts TIMESTAMP COMMENT 'epoch_ms'` (or 'epoch_s').
  SMALLINT and TINYINT are read as INT; TIMESTAMP_NTZ / TIMESTAMP_LTZ as TIMESTAMP (naive
  text is UTC either way).
* dict: {field: type}, a type being a name ("string", "integer"/"int", "long"/"bigint",
  "double", "float", "boolean", "date", "timestamp", "timestamp_s", "timestamp_ms"), DDL
  type text ("decimal(10,2)", "array<string>"), a DataType, a dict (a nested struct) or a
  one-element list (an array of that type).

Every function raises ValueError with one line naming the field for a form it cannot read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlglot
from sqlglot import exp

from weir.tables.types import (
    NAMES,
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

SchemaLike = StructType | str | Mapping[str, Any]
"""What a `schema=` argument takes: a StructType, DDL text or the dict form."""

_NAMES = NAMES
_UNITS = {"epoch_s": "s", "epoch_ms": "ms"}
_T = exp.DataType.Type
_SIMPLE: dict[Any, DataType] = {
    _T.TEXT: StringType(),
    _T.VARCHAR: StringType(),
    _T.CHAR: StringType(),
    _T.INT: IntegerType(),
    _T.SMALLINT: IntegerType(),
    _T.TINYINT: IntegerType(),
    _T.BIGINT: LongType(),
    _T.DOUBLE: DoubleType(),
    _T.FLOAT: FloatType(),
    _T.BOOLEAN: BooleanType(),
    _T.DATE: DateType(),
}
_TIMES = {_T.TIMESTAMP, _T.TIMESTAMPTZ, _T.TIMESTAMPNTZ, _T.TIMESTAMPLTZ}


def parse_struct(schema: SchemaLike) -> StructType:
    """A StructType from any schema form; raises ValueError (one line) for a bad one."""
    if isinstance(schema, StructType):
        if not schema.fields:
            raise ValueError("a schema needs at least one field")
        return schema
    if isinstance(schema, str):
        return _ddl(schema)
    if isinstance(schema, Mapping):
        return _dict_struct(schema, "")
    raise TypeError(f"a schema is a StructType, DDL text or a dict, not {type(schema).__name__}")


def parse_type(kind: Any, where: str = "type") -> DataType:
    """A DataType from a type of the dict form (see the module docstring)."""
    if isinstance(kind, DataType):
        return kind
    if isinstance(kind, Mapping):
        return _dict_struct(kind, where)
    if isinstance(kind, list):
        if len(kind) != 1:
            raise ValueError(f"{where}: a list type is [element type], not {kind!r}")
        return ArrayType(parse_type(kind[0], where))
    if isinstance(kind, str):
        named = _NAMES.get(kind.strip().lower())
        return named if named is not None else _type_text(kind, where)
    raise ValueError(f"{where}: unknown type {kind!r}")


_SEEN: dict[str, DataType] = {}
"""Types by name, as `remember` recorded them (a name such as "struct<order-id:int>" does not
parse back)."""


def remember(kind: DataType) -> str:
    """Record `kind` for `type_of_name`; return its name (`simpleString()`)."""
    name = kind.simpleString()
    if len(_SEEN) < 4096:  # a bound: types come from query definitions, not from data
        _SEEN.setdefault(name, kind)
    return name


def type_of_name(name: str) -> DataType | None:
    """The DataType a `simpleString()` names ("struct<a:int>"): one `remember` recorded, or
    parsed from the name; None when it names none."""
    seen = _SEEN.get(name)
    if seen is not None:
        return seen
    try:
        kind = parse_type(name)
    except ValueError:
        return None
    remember(kind)
    return kind


def _dict_struct(fields: Mapping[str, Any], path: str) -> StructType:
    if not fields:
        raise ValueError(f"schema{' of ' + path if path else ''} must be a non-empty mapping")
    out = []
    for name, kind in fields.items():
        where = f"{path}.{name}" if path else str(name)
        out.append(StructField(name, parse_type(kind, where)))
    return StructType(out)


def _type_text(text: str, where: str) -> DataType:
    try:
        built = exp.DataType.build(text, dialect="spark")
    except (sqlglot.errors.ParseError, ValueError):
        built = None
    if built is None or built.this == _T.USERDEFINED:
        raise ValueError(f"{where}: unknown type {text!r} ({', '.join(_NAMES)}, or DDL)")
    return _from_sqlglot(built, where)


def _ddl(text: str) -> StructType:
    head = "CREATE TABLE t ("
    try:
        tree = sqlglot.parse_one(f"{head}{text})", read="spark")
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        at = f" at {first.get('highlight')!r} (column {first.get('col', 0) - len(head)})"
        reason = f"{first.get('description', 'syntax error')}{at if first else ''}"
        raise ValueError(f"schema DDL {text!r} does not parse: {reason}") from None
    schema = tree.this
    if not isinstance(schema, exp.Schema) or not schema.expressions:
        raise ValueError(f"schema DDL {text!r} declares no fields")
    return _fields(schema.expressions, "", text)


def _fields(defs: list[Any], path: str, text: str) -> StructType:
    out = []
    for d in defs:
        if not isinstance(d, exp.ColumnDef) or d.args.get("kind") is None:
            raise ValueError(f"schema DDL {text!r}: {d.sql('spark')!r} is not `name TYPE`")
        name = d.this.name
        where = f"{path}.{name}" if path else name
        kind = _from_sqlglot(d.args["kind"], where)
        for c in d.args.get("constraints") or []:
            if isinstance(c.args.get("kind"), exp.CommentColumnConstraint):
                comment = c.args["kind"].this.name
                unit = _UNITS.get(comment.strip().lower())
                if unit is not None:
                    if not isinstance(kind, TimestampType):
                        raise ValueError(f"{where}: {comment!r} applies to a TIMESTAMP only")
                    kind = TimestampType(unit)  # type: ignore[arg-type]
        nullable = not any(
            isinstance(c.args.get("kind"), exp.NotNullColumnConstraint)
            for c in d.args.get("constraints") or []
        )
        out.append(StructField(name, kind, nullable))
    return StructType(out)


def _from_sqlglot(t: exp.DataType, where: str) -> DataType:
    simple = _SIMPLE.get(t.this)
    if simple is not None:
        return simple
    if t.this in _TIMES:
        return TimestampType()
    if t.this == _T.DECIMAL:
        params = [int(p.name) for p in t.expressions]
        return DecimalType(*params)
    if t.this == _T.ARRAY and len(t.expressions) == 1:
        return ArrayType(_from_sqlglot(t.expressions[0], where))
    if t.this == _T.STRUCT and t.expressions:
        return _fields(t.expressions, where, t.sql("spark"))
    raise ValueError(f"{where}: unsupported type {t.sql('spark')}")
