"""Spark SQL data types with PySpark's names (`pyspark.sql.types`), for input schemas and
`from_json`: `StructType([StructField("amount", DoubleType())])`.

A type's `simpleString()` is the name Spark prints ("int", "bigint", "decimal(10,2)",
"array<string>", "struct<lat:double,lon:double>"); it is also the name a `Column.dtype` and
`Stream.column_types()` give. `parse_type` / `parse_struct` (weir.tables.ddl) build types from
DDL text or the dict form.

Values, as rows hold them: strings are str, int/bigint are int, double/float are float,
boolean is bool, timestamp is epoch milliseconds UTC (int), date is "YYYY-MM-DD" text,
decimal(p,s) is exact text with s digits after the point ("12.50"; JSON, orjson state and
every sink keep it exact), array is a list, struct a dict.

`TimestampType(unit=...)`: how a bare number in the field is read, "s" (epoch seconds) or
"ms" (epoch milliseconds); without a unit a number is not a timestamp (only ISO-8601 text or a
datetime is).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal

TimeUnit = Literal["s", "ms"]


class DataType:
    """A Spark SQL type; equal when their `simpleString()` (and unit) are equal."""

    _name = ""

    def simpleString(self) -> str:
        """Spark's short name of the type, e.g. "int" or "array<string>"."""
        return self._name

    def _key(self) -> tuple[Any, ...]:
        return (self.simpleString(),)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataType) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class StringType(DataType):
    _name = "string"


class IntegerType(DataType):
    _name = "int"


class LongType(DataType):
    _name = "bigint"


class DoubleType(DataType):
    _name = "double"


class FloatType(DataType):
    _name = "float"


class BooleanType(DataType):
    _name = "boolean"


class DateType(DataType):
    _name = "date"


class TimestampType(DataType):
    """A timestamp: ISO-8601 text or a datetime, and a number only when `unit` says which."""

    _name = "timestamp"

    def __init__(self, unit: TimeUnit | None = None) -> None:
        if unit not in (None, "s", "ms"):
            raise ValueError(f"TimestampType unit must be 's' or 'ms', not {unit!r}")
        self.unit: TimeUnit | None = unit

    def _key(self) -> tuple[Any, ...]:
        return ("timestamp", self.unit)

    def __repr__(self) -> str:
        return "TimestampType()" if self.unit is None else f"TimestampType(unit={self.unit!r})"


class DecimalType(DataType):
    """Spark's DecimalType(precision, scale), default (10, 0); values are exact text."""

    def __init__(self, precision: int = 10, scale: int = 0) -> None:
        if not (1 <= precision <= 38 and 0 <= scale <= precision):
            raise ValueError(f"decimal({precision},{scale}): need 1 <= precision <= 38, 0 <= scale")
        self.precision = precision
        self.scale = scale

    def simpleString(self) -> str:
        return f"decimal({self.precision},{self.scale})"

    def __repr__(self) -> str:
        return f"DecimalType({self.precision}, {self.scale})"


class ArrayType(DataType):
    """A list of `elementType` values."""

    def __init__(self, elementType: DataType, containsNull: bool = True) -> None:
        if not isinstance(elementType, DataType):
            raise TypeError(f"ArrayType needs a DataType, not {elementType!r}")
        self.elementType = elementType
        self.containsNull = containsNull

    def simpleString(self) -> str:
        return f"array<{self.elementType.simpleString()}>"

    def _key(self) -> tuple[Any, ...]:
        return ("array", self.elementType._key())

    def __repr__(self) -> str:
        return f"ArrayType({self.elementType!r})"


class StructField:
    """One named field of a StructType."""

    def __init__(
        self,
        name: str,
        dataType: DataType,
        nullable: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a StructField needs a non-empty name, not {name!r}")
        if not isinstance(dataType, DataType):
            raise TypeError(f"StructField {name!r}: {dataType!r} is not a DataType")
        self.name = name
        self.dataType = dataType
        self.nullable = nullable
        self.metadata = dict(metadata or {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StructField) and (self.name, self.dataType, self.nullable) == (
            other.name,
            other.dataType,
            other.nullable,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.dataType))

    def __repr__(self) -> str:
        return f"StructField({self.name!r}, {self.dataType!r}, {self.nullable})"


class StructType(DataType):
    """An ordered list of StructFields (a row, or a nested object)."""

    def __init__(self, fields: Iterable[StructField] | None = None) -> None:
        self.fields: list[StructField] = list(fields or [])
        names = [f.name for f in self.fields]
        for f in self.fields:
            if not isinstance(f, StructField):
                raise TypeError(f"StructType takes StructFields, not {f!r}")
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"field {dup!r} is declared twice")

    def add(
        self,
        field: str | StructField,
        data_type: DataType | str | None = None,
        nullable: bool = True,
    ) -> StructType:
        """PySpark's `add`: append a field (in place) and return self; `data_type` may be a
        simple type name ("string", "bigint", "timestamp"; see NAMES)."""
        if isinstance(field, StructField):
            new = field
        else:
            if data_type is None:
                raise ValueError(f"add({field!r}) needs a data type")
            if isinstance(data_type, str):
                if data_type.strip().lower() not in NAMES:
                    raise ValueError(f"{field}: unknown type {data_type!r} ({', '.join(NAMES)})")
                data_type = NAMES[data_type.strip().lower()]
            new = StructField(field, data_type, nullable)
        if new.name in self.names:
            raise ValueError(f"field {new.name!r} is declared twice")
        self.fields.append(new)
        return self

    @property
    def names(self) -> list[str]:
        """The field names, in order."""
        return [f.name for f in self.fields]

    def fieldNames(self) -> list[str]:
        return self.names

    def __iter__(self) -> Iterator[StructField]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __getitem__(self, key: str | int) -> StructField:
        if isinstance(key, int):
            return self.fields[key]
        for f in self.fields:
            if f.name == key:
                return f
        raise KeyError(f"no field {key!r} (fields: {', '.join(self.names)})")

    def simpleString(self) -> str:
        return f"struct<{','.join(f'{f.name}:{f.dataType.simpleString()}' for f in self)}>"

    def _key(self) -> tuple[Any, ...]:
        return ("struct", tuple((f.name, f.dataType._key()) for f in self))

    def __repr__(self) -> str:
        return f"StructType([{', '.join(map(repr, self.fields))}])"


NAMES: dict[str, DataType] = {
    "string": StringType(),
    "integer": IntegerType(),
    "int": IntegerType(),
    "long": LongType(),
    "bigint": LongType(),
    "double": DoubleType(),
    "float": FloatType(),
    "boolean": BooleanType(),
    "date": DateType(),
    "timestamp": TimestampType(),
    "timestamp_s": TimestampType("s"),
    "timestamp_ms": TimestampType("ms"),
}
"""The simple type names of the dict form and `StructType.add`."""

__all__ = [
    "ArrayType",
    "BooleanType",
    "DataType",
    "DateType",
    "DecimalType",
    "DoubleType",
    "FloatType",
    "IntegerType",
    "LongType",
    "StringType",
    "StructField",
    "StructType",
    "TimestampType",
]
