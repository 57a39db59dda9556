"""Input schemas: the typed fields a pipeline expects in its JSON values, as the course declares
a `StructType` before `from_json`.

A schema maps field names to types: "string", "integer" (or "long"), "double", "boolean",
"timestamp" (ISO-8601 text, epoch ms or a datetime; stored as epoch ms), a dict for a nested
struct, or a one-element list for a list of that type. `conform(row)` returns the row with
exactly the schema's fields: a missing field or a null is null, a field the schema does not
name is left out, an integer is accepted for a double, and a value of another type is
refused with the field's path and the reason. In `mode="permissive"` such a value becomes null
instead, as Spark's `from_json` makes it (silently, which is why it is not the default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from weir.tables.timeutil import to_millis

FieldType = str | Mapping[str, Any] | list[Any]
Mode = Literal["strict", "permissive"]
SCALARS = ("string", "integer", "long", "double", "boolean", "timestamp")


class SchemaError(ValueError):
    """A value that does not fit the schema: `str()` names the field and the reason."""


class Schema:
    """A checked input schema; see the module docstring."""

    def __init__(self, fields: Mapping[str, FieldType], mode: Mode = "strict") -> None:
        if mode not in ("strict", "permissive"):
            raise ValueError(f"schema mode must be 'strict' or 'permissive', not {mode!r}")
        _check(fields, "")
        self.fields = dict(fields)
        self.mode: Mode = mode

    def timestamp_columns(self) -> set[str]:
        """Top-level fields of type timestamp (epoch ms after `conform`)."""
        return {name for name, kind in self.fields.items() if kind == "timestamp"}

    def conform(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The row as the schema says; raises SchemaError (strict mode) for a misfit."""
        return _struct(row, self.fields, "", self.mode == "permissive")


def _check(fields: Mapping[str, FieldType], path: str) -> None:
    if not isinstance(fields, Mapping) or not fields:
        raise ValueError(f"schema{' of ' + path if path else ''} must be a non-empty mapping")
    for name, kind in fields.items():
        where = f"{path}.{name}" if path else name
        if isinstance(kind, Mapping):
            _check(kind, where)
        elif isinstance(kind, list):
            if len(kind) != 1:
                raise ValueError(f"{where}: a list type is [element type], not {kind!r}")
            inner = kind[0]
            if isinstance(inner, Mapping):
                _check(inner, where)
            elif inner not in SCALARS:
                raise ValueError(f"{where}: unknown element type {inner!r} ({', '.join(SCALARS)})")
        elif kind not in SCALARS:
            raise ValueError(f"{where}: unknown type {kind!r} ({', '.join(SCALARS)})")


def _struct(
    value: Mapping[str, Any], fields: Mapping[str, FieldType], path: str, lax: bool
) -> dict[str, Any]:
    return {
        name: _value(value.get(name), kind, f"{path}.{name}" if path else name, lax)
        for name, kind in fields.items()
    }


def _value(value: Any, kind: FieldType, path: str, lax: bool) -> Any:
    if value is None:
        return None
    try:
        return _typed(value, kind, path, lax)
    except SchemaError:
        if lax:
            return None
        raise


def _typed(value: Any, kind: FieldType, path: str, lax: bool) -> Any:
    if isinstance(kind, Mapping):
        if not isinstance(value, Mapping):
            raise SchemaError(f"{path}: expected an object, got {_kind(value)}")
        return _struct(value, kind, path, lax)
    if isinstance(kind, list):
        if not isinstance(value, list):
            raise SchemaError(f"{path}: expected a list, got {_kind(value)}")
        return [_value(v, kind[0], f"{path}[{i}]", lax) for i, v in enumerate(value)]
    if kind == "string":
        if isinstance(value, str):
            return value
    elif kind in ("integer", "long"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "double":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind == "boolean":
        if isinstance(value, bool):
            return value
    elif kind == "timestamp":
        try:
            return to_millis(value)
        except ValueError as exc:
            raise SchemaError(f"{path}: {exc}") from None
    raise SchemaError(f"{path}: expected {kind}, got {_kind(value)} {_short(value)}")


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
