"""One schema model in its three forms (StructType, DDL, dict), every type's conversion as
Spark's JSON reader does it (nulls, misfits naming the field's path, permissive nulls), epoch
numbers only with a declared unit, and decimals kept exact through state and a Parquet file."""

from __future__ import annotations

import io
import math
from decimal import Decimal
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import weir
from weir.service.replay import replay
from weir.service.sinks.parquet import parquet, read_parquet
from weir.tables.ddl import parse_struct
from weir.tables.ops.functions import collect_list, count
from weir.tables.schema import Schema, SchemaError
from weir.tables.stream import read
from weir.tables.window import window
from weir.types import (
    ArrayType,
    BooleanType,
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

DDL = (
    "event_id STRING, amount DOUBLE, event_time TIMESTAMP, tags ARRAY<STRING>, "
    "loc STRUCT<lat: DOUBLE, lon: DOUBLE>, price DECIMAL(10,2)"
)
STRUCT = StructType(
    [
        StructField("event_id", StringType()),
        StructField("amount", DoubleType()),
        StructField("event_time", TimestampType()),
        StructField("tags", ArrayType(StringType())),
        StructField(
            "loc", StructType([StructField("lat", DoubleType()), StructField("lon", DoubleType())])
        ),
        StructField("price", DecimalType(10, 2)),
    ]
)
DICT = {
    "event_id": "string",
    "amount": "double",
    "event_time": "timestamp",
    "tags": ["string"],
    "loc": {"lat": "double", "lon": "double"},
    "price": "decimal(10,2)",
}
MAY_1 = 1_714_521_600_000  # 2024-05-01T00:00:00Z


def test_the_three_forms_are_one_schema() -> None:
    assert Schema(STRUCT) == Schema(DDL) == Schema(DICT)
    assert parse_struct(DDL) == STRUCT
    added = StructType().add("event_id", "string").add("amount", DoubleType())
    assert added == parse_struct("event_id STRING, amount DOUBLE")
    assert STRUCT.simpleString() == (
        "struct<event_id:string,amount:double,event_time:timestamp,tags:array<string>,"
        "loc:struct<lat:double,lon:double>,price:decimal(10,2)>"
    )
    assert Schema(DDL).column_types() == {
        "event_id": "string",
        "amount": "double",
        "event_time": "timestamp",
        "tags": "array<string>",
        "loc": "struct<lat:double,lon:double>",
        "price": "decimal(10,2)",
    }
    assert weir.StructType is StructType and weir.DecimalType is DecimalType
    assert Schema("n INT, big BIGINT, f FLOAT, ok BOOLEAN, d DATE") == Schema(
        {"n": "integer", "big": "long", "f": "float", "ok": "boolean", "d": "date"}
    )


def test_epoch_units_in_every_form() -> None:
    by_class = Schema(StructType([StructField("ts", TimestampType(unit="s"))]))
    assert by_class == Schema("ts TIMESTAMP COMMENT 'epoch_s'") == Schema({"ts": "timestamp_s"})
    in_ms = Schema({"ts": "timestamp_ms"})
    assert in_ms == Schema("ts TIMESTAMP COMMENT 'epoch_ms'") != by_class
    assert by_class.conform({"ts": 1_714_521_600}) == {"ts": MAY_1}
    assert by_class.conform({"ts": 1_714_521_600.25}) == {"ts": MAY_1 + 250}
    assert in_ms.conform({"ts": MAY_1 + 5}) == {"ts": MAY_1 + 5}
    assert in_ms.conform({"ts": "2024-05-01T02:00:00+02:00"}) == {"ts": MAY_1}  # text still


def test_a_bare_number_is_no_timestamp_without_a_unit() -> None:
    """The issue's bug: epoch seconds were read as milliseconds, windows in 1970."""
    with pytest.raises(SchemaError, match=r"^ts: a number \(1714521600\) is not a timestamp"):
        Schema({"ts": "timestamp"}).conform({"ts": 1_714_521_600})
    assert Schema({"ts": "timestamp"}, "permissive").conform({"ts": 1_714_521_600}) == {"ts": None}


def test_epoch_seconds_make_windows_in_their_year_through_replay() -> None:
    q = (
        read("events", timestamp_columns={"ts"})
        .with_watermark("ts", "1 minute")
        .group_by(window("ts", "10 minutes"))
        .agg(count().alias("n"))
        .query("update")
    )
    lines = [{"ts": 1_714_521_660}, {"ts": 1_714_521_720}]
    src = io.BytesIO(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    out, dead = io.BytesIO(), io.BytesIO()
    replay(
        q,
        src,
        out,
        batch_size=10,
        dead=dead,
        schemas={"events": Schema("ts TIMESTAMP COMMENT 'epoch_s'")},
    )
    rows = [orjson.loads(x) for x in out.getvalue().splitlines()]
    assert rows == [
        {
            "batch_id": 0,
            "window_start": "2024-05-01T00:00:00Z",
            "window_end": "2024-05-01T00:10:00Z",
            "n": 2,
        }
    ]
    src.seek(0)
    out, dead = io.BytesIO(), io.BytesIO()
    stats = replay(
        q, src, out, batch_size=10, dead=dead, schemas={"events": Schema({"ts": "timestamp"})}
    )
    assert stats.dead_letters == 2 and out.getvalue() == b""  # not windows in 1970


ALL = Schema(
    "s STRING, i INT, l BIGINT, d DOUBLE, f FLOAT, b BOOLEAN, t TIMESTAMP, day DATE, "
    "p DECIMAL(10,2), a ARRAY<INT>, st STRUCT<x: INT, y: STRUCT<z: STRING>>"
)


def test_every_type_converts_and_null_stays_null() -> None:
    row = {
        "s": {"k": [1, True]},  # a string field keeps any JSON value as its text (Spark)
        "i": -(2**31),
        "l": 2**63 - 1,
        "d": 3,
        "f": 1.5,
        "b": False,
        "t": "2024-05-01T00:00:00.5",  # no zone: UTC (Weir's session time zone)
        "day": "2024-05-01",
        "p": 12.345,
        "a": [1, None, 3],
        "st": {"x": 1, "y": {"z": 7}, "extra": 0},
        "unknown": "left out",
    }
    assert ALL.conform(row) == {
        "s": '{"k":[1,true]}',
        "i": -(2**31),
        "l": 2**63 - 1,
        "d": 3.0,
        "f": 1.5,
        "b": False,
        "t": MAY_1 + 500,
        "day": "2024-05-01",
        "p": "12.35",  # half up to the scale, as Spark rounds
        "a": [1, None, 3],
        "st": {"x": 1, "y": {"z": "7"}},
    }
    assert ALL.conform(dict.fromkeys(ALL.fields)) == dict.fromkeys(ALL.fields)
    assert ALL.conform({}) == dict.fromkeys(ALL.fields)
    special = ALL.conform({"d": "NaN", "f": "-Infinity", "p": "-0.001"})
    assert math.isnan(special["d"]) and special["f"] == -math.inf and special["p"] == "0.00"


MISFITS = [
    ({"d": "12.5"}, "d: expected double, got string '12.5'"),
    ({"i": 2**31}, "i: 2147483648 is out of the integer range"),
    ({"i": 1.0}, "i: expected integer, got double 1.0"),
    ({"l": "7"}, "l: expected long, got string '7'"),
    ({"b": "true"}, "b: expected boolean, got string 'true'"),
    ({"t": "yesterday"}, "t: not an ISO-8601 timestamp: 'yesterday'"),
    ({"day": "2024-13-01"}, "day: expected a date (YYYY-MM-DD), got string '2024-13-01'"),
    ({"p": 123456789}, "p: 123456789 does not fit decimal(10,2)"),
    ({"p": "abc"}, "p: expected decimal(10,2), got string 'abc'"),
    ({"a": [1, "x"]}, "a[1]: expected integer, got string 'x'"),
    ({"a": 1}, "a: expected a list, got integer"),
    ({"st": {"y": {"z": None}, "x": "1"}}, "st.x: expected integer, got string '1'"),
    ({"st": {"y": []}}, "st.y: expected an object, got list"),
]


@pytest.mark.parametrize(("row", "reason"), MISFITS)
def test_strict_names_the_path_and_reason_permissive_makes_it_null(
    row: dict[str, object], reason: str
) -> None:
    with pytest.raises(SchemaError) as caught:
        ALL.conform(row)
    assert str(caught.value) == reason
    lax = Schema(ALL.struct, "permissive").conform(row)
    field = next(iter(row))
    if field == "a" and isinstance(row["a"], list):
        assert lax["a"] == [1, None]  # only the element that does not fit
    elif field == "st":
        assert lax["st"] is not None and None in (lax["st"]["x"], lax["st"]["y"])
    else:
        assert lax[field] is None


def test_bad_schemas_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="does not parse"):
        Schema("a INT b")
    with pytest.raises(ValueError, match="amount: unknown type 'money'"):
        Schema({"amount": "money"})
    with pytest.raises(ValueError, match="declared twice"):
        StructType([StructField("a", IntegerType()), StructField("a", LongType())])
    with pytest.raises(ValueError, match="TIMESTAMP only"):
        Schema("n INT COMMENT 'epoch_s'")
    assert Schema("d DATE, x FLOAT, y BOOLEAN").struct == StructType(
        [
            StructField("d", DateType()),
            StructField("x", FloatType()),
            StructField("y", BooleanType()),
        ]
    )


@given(st.decimals(min_value=-(10**8) + 1, max_value=10**8 - 1, places=2, allow_nan=False))
def test_decimal_text_is_exact(value: Decimal) -> None:
    got = Schema("p DECIMAL(10,2)").conform({"p": str(value)})["p"]
    assert Decimal(got) == value and len(got.split(".")[1]) == 2


def test_decimals_survive_state_and_a_parquet_file(tmp_path: Path) -> None:
    """Kept exact in the aggregation's state (orjson) and written as Parquet decimal128."""
    q = (
        read("orders", timestamp_columns={"ts"})
        .with_watermark("ts", "1 minute")
        .group_by(window("ts", "10 minutes"), "user")
        .agg(collect_list("price").alias("prices"))
        .query("update")
    )
    lines = [
        {"user": "u", "price": "0.10", "ts": "2024-05-01T00:01:00Z"},
        {"user": "u", "price": 12345678.99, "ts": "2024-05-01T00:02:00Z"},
    ]
    schema = Schema("user STRING, price DECIMAL(10,2), ts TIMESTAMP")
    flat = read("orders").select("user", "price").query("append")
    sink = parquet(tmp_path / "t", {"user": "string", "price": pa.decimal128(10, 2)})
    src, out = io.BytesIO(b"".join(orjson.dumps(x) + b"\n" for x in lines)), io.BytesIO()
    replay(q, src, out, batch_size=1, schemas={"orders": schema})
    src.seek(0)
    replay(flat, src, io.BytesIO(), batch_size=1, schemas={"orders": schema}, sinks=[sink])
    rows = [orjson.loads(x) for x in out.getvalue().splitlines()]
    assert [r["prices"] for r in rows] == [["0.10"], ["0.10", "12345678.99"]]
    table = read_parquet(tmp_path / "t")
    assert table.schema.field("price").type == pa.decimal128(10, 2)
    assert sorted(table.column("price").to_pylist()) == [Decimal("0.10"), Decimal("12345678.99")]
