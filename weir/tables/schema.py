"""Input schemas: the typed fields a pipeline expects in its JSON values, as the course declares
a `StructType` before `from_json`; the one conversion behind an agent's `schema=`, the file
sources and `from_json`.

A schema is a `StructType`, DDL text or the dict form (weir.tables.ddl). `conform(row)` returns
the row with exactly the schema's fields, converted as Spark's JSON reader (`from_json`)
converts them: a missing field or a null is null; a field the schema does not name is left
out; an integer is accepted for a double; a string field takes any value (a number, an object:
its JSON text, as Spark does); a double field takes a string only for "NaN", "Infinity",
"-Infinity" (Spark: "12.5" as text is not a double); an int is 32-bit, a bigint 64-bit;
a timestamp is ISO-8601 text (text without a zone is UTC: Spark reads it in the session time
zone, and Weir's is UTC) or a datetime, and a number only when the type has a unit
(`TimestampType(unit="s"|"ms")`, "timestamp_s"/"timestamp_ms", DDL `COMMENT 'epoch_s'`), held
as epoch ms; a date is "YYYY-MM-DD" text; a decimal(p,s) is rounded half-up to s digits and
held as exact text ("12.50"), refused when it needs more than p digits.

A value that does not fit raises SchemaError naming the field's path and the reason
("loc.lat: expected double, got string '1'"), in `mode="strict"`; in `mode="permissive"` that
field (or list element) becomes null instead, as Spark's PERMISSIVE mode makes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any, Literal

import orjson

from weir.tables.ddl import SchemaLike, parse_struct, remember
from weir.tables.timeutil import to_millis
from weir.tables.types import (
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
    StructType,
    TimestampType,
)

Mode = Literal["strict", "permissive"]
Converter = Callable[[Any], Any]
"""A non-null value -> its typed value; raises Misfit."""


class SchemaError(ValueError):
    """A value that does not fit the schema: `str()` names the field and the reason."""


class Misfit(Exception):
    """What a `converter` raises: the reason, and the path below the value that failed."""

    def __init__(self, reason: str, path: str = "") -> None:
        self.reason = reason
        self.path = path


class Schema:
    """A checked input schema; see the module docstring. Raises ValueError (one line) for a
    schema it cannot read."""

    def __init__(self, fields: SchemaLike | Schema, mode: Mode = "strict") -> None:
        if mode not in ("strict", "permissive"):
            raise ValueError(f"schema mode must be 'strict' or 'permissive', not {mode!r}")
        self.struct: StructType = (
            fields.struct if isinstance(fields, Schema) else parse_struct(fields)
        )
        self.mode: Mode = mode
        self.fields: dict[str, str] = {f.name: remember(f.dataType) for f in self.struct}
        """{field: Spark type name} ("string", "int", "bigint", "decimal(10,2)", ...)."""
        self._convert = _struct_converter(self.struct, mode == "permissive")

    def timestamp_columns(self) -> set[str]:
        """Top-level fields of type timestamp (epoch ms after `conform`)."""
        return {f.name for f in self.struct if isinstance(f.dataType, TimestampType)}

    def column_types(self) -> dict[str, str]:
        """{field: Spark type name}, in order: what a stream of conformed rows holds."""
        return dict(self.fields)

    def conform(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The row as the schema says; raises SchemaError (strict mode) for a misfit."""
        try:
            out: dict[str, Any] = self._convert(row)
        except Misfit as m:
            raise SchemaError(f"{m.path}: {m.reason}") from None
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and (self.struct, self.mode) == (other.struct, other.mode)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Schema({self.struct.simpleString()!r}, mode={self.mode!r})"


def as_schema(schema: SchemaLike | Schema, mode: Mode = "strict") -> Schema:
    """A Schema from any form; a Schema is returned unchanged."""
    return schema if isinstance(schema, Schema) else Schema(schema, mode)


def converter(kind: DataType, lax: bool) -> Converter:
    """The converter of a non-null value to `kind` (`lax`: nested misfits become null)."""
    if isinstance(kind, StructType):
        convert = _struct_converter(kind, lax)

        def struct(v: Any) -> Any:
            if not isinstance(v, Mapping):
                raise Misfit(f"expected an object, got {_kind(v)}")
            return convert(v)

        return struct
    if isinstance(kind, ArrayType):
        element = converter(kind.elementType, lax)

        def array(v: Any) -> Any:
            if not isinstance(v, list):
                raise Misfit(f"expected a list, got {_kind(v)}")
            out: list[Any] = []
            for i, x in enumerate(v):
                if x is None:
                    out.append(None)
                    continue
                try:
                    out.append(element(x))
                except Misfit as m:
                    if not lax:
                        raise Misfit(m.reason, f"[{i}]{m.path}") from None
                    out.append(None)
            return out

        return array
    if isinstance(kind, DecimalType):
        return _decimal(kind)
    if isinstance(kind, TimestampType):
        return _timestamp(kind.unit)
    simple = _SCALARS.get(type(kind))
    if simple is None:
        raise ValueError(f"no conversion to {kind.simpleString()}")
    return simple


def _struct_converter(struct: StructType, lax: bool) -> Callable[[Mapping[str, Any]], Any]:
    fields = [(f.name, converter(f.dataType, lax)) for f in struct]

    def convert(value: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, conv in fields:
            v = value.get(name)
            if v is not None:
                try:
                    v = conv(v)
                except Misfit as m:
                    if not lax:
                        sep = "" if m.path.startswith("[") or not m.path else "."
                        raise Misfit(m.reason, f"{name}{sep}{m.path}") from None
                    v = None
            out[name] = v
        return out

    return convert


def _misfit(expected: str, v: Any) -> Misfit:
    return Misfit(f"expected {expected}, got {_kind(v)} {_short(v)}")


def _string(v: Any) -> Any:
    if type(v) is str:
        return v
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    try:  # Spark's JSON reader keeps any other value as its JSON text
        return orjson.dumps(v).decode()
    except TypeError:
        return str(v)


def _integral(bits: int, name: str) -> Converter:
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def conv(v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            if lo <= v <= hi:
                return v
            raise Misfit(f"{v} is out of the {name} range")
        raise _misfit(name, v)

    return conv


_NON_NUMBERS = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "+Infinity": math.inf,
    "+INF": math.inf,
    "-Infinity": -math.inf,
    "-INF": -math.inf,
}


def _floating(name: str) -> Converter:
    def conv(v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, Decimal):
            return float(v)
        if isinstance(v, str) and v in _NON_NUMBERS:
            return _NON_NUMBERS[v]
        raise _misfit(name, v)

    return conv


def _boolean(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    raise _misfit("boolean", v)


def _date(v: Any) -> Any:
    if isinstance(v, datetime):
        return (v.astimezone(UTC) if v.tzinfo else v).date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, str) and len(v.strip()) == 10:
        try:
            return date.fromisoformat(v.strip()).isoformat()
        except ValueError:
            pass
    raise _misfit("a date (YYYY-MM-DD)", v)


def _timestamp(unit: str | None) -> Converter:
    scale = {"s": 1000, "ms": 1, None: 0}[unit]

    def conv(v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool):
            if not scale:
                raise Misfit(
                    f"a number ({_short(v)}) is not a timestamp without a unit: declare it "
                    "TimestampType(unit='s') or 'ms' (DDL: COMMENT 'epoch_s' / 'epoch_ms')"
                )
            if isinstance(v, float) and not math.isfinite(v):
                raise _misfit("a timestamp", v)
            v = round(v * scale) if isinstance(v, float) else v * scale
        if isinstance(v, date) and not isinstance(v, datetime):
            v = v.isoformat()
        try:
            return to_millis(v)
        except ValueError as exc:
            raise Misfit(str(exc)) from None

    return conv


_WIDE = Context(prec=80)
"""Room for any decimal(38, s) (the default context has 28 digits)."""


def _decimal(kind: DecimalType) -> Converter:
    quantum = Decimal(1).scaleb(-kind.scale)
    digits = kind.precision - kind.scale
    name = kind.simpleString()

    def conv(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float | str | Decimal):
            raise _misfit(name, v)
        try:
            d = Decimal(repr(v) if isinstance(v, float) else v.strip() if isinstance(v, str) else v)
            q = d.quantize(quantum, rounding=ROUND_HALF_UP, context=_WIDE)
        except (InvalidOperation, ValueError):
            raise _misfit(name, v) from None
        if not q.is_finite() or q.adjusted() >= digits:
            raise Misfit(f"{_short(v)} does not fit {name}")
        return str(abs(q) if q == 0 else q)

    return conv


_SCALARS: dict[type, Converter] = {
    StringType: _string,
    IntegerType: _integral(32, "integer"),
    LongType: _integral(64, "long"),
    DoubleType: _floating("double"),
    FloatType: _floating("float"),
    BooleanType: _boolean,
    DateType: _date,
}


def _kind(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "double",
        str: "string",
        list: "list",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
