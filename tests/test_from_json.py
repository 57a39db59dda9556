"""`from_json` / `to_json` as Spark's functions, binary cast to string, star expansion in
select, and the course's section 3.1 pipeline end to end through replay."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from weir import col, from_json, to_json, upper
from weir.service.replay import replay
from weir.tables.expressions.expr import Column
from weir.tables.schema import Schema, SchemaError
from weir.tables.stream import Stream, read
from weir.types import DoubleType, StringType, StructField, StructType, TimestampType

COURSE_SCHEMA = StructType(
    [
        StructField("user_id", StringType()),
        StructField("action", StringType()),
        StructField("amount", DoubleType()),
        StructField("timestamp", StringType()),
    ]
)


def run(c: Column, rows: list[dict[str, Any]], types: dict[str, str] | None = None) -> list[Any]:
    f = c.compile(types or {})
    return [f(r) for r in rows]


def test_from_json_parses_text_and_bytes_into_a_struct() -> None:
    c = from_json(col("value").cast("string"), "a INT, b STRUCT<c: STRING>, t TIMESTAMP")
    assert c.name == "from_json(CAST(value AS STRING))"
    assert c.dtype == "struct<a:int,b:struct<c:string>,t:timestamp>"
    rows = [
        {"value": b'{"a": 1, "b": {"c": "x"}, "t": "2024-05-01T00:00:00Z", "z": 0}'},
        {"value": '{"a": 2}'},
        {"value": None},
    ]
    assert run(c, rows, {"value": "binary"}) == [
        {"a": 1, "b": {"c": "x"}, "t": 1_714_521_600_000},
        {"a": 2, "b": None, "t": None},
        None,
    ]


def test_permissive_from_json_nulls_misfits_and_malformed_json_as_spark() -> None:
    c = from_json(col("value"), COURSE_SCHEMA)
    got = run(c, [{"value": '{"user_id": "u", "amount": "12.5"}'}, {"value": '{"user_id" 1'}])
    assert got == [
        {"user_id": "u", "action": None, "amount": None, "timestamp": None},  # "12.5": null
        {"user_id": None, "action": None, "amount": None, "timestamp": None},  # Row(null...)
    ]
    assert run(c, [{"value": "[1, 2]"}]) == [dict.fromkeys(COURSE_SCHEMA.names)]


def test_failfast_from_json_raises_naming_the_field() -> None:
    c = from_json("value", {"loc": {"lat": "double"}}, {"mode": "FAILFAST"})
    f = c.compile({})
    with pytest.raises(SchemaError, match=r"^from_json: loc\.lat: expected double, got string"):
        f({"value": '{"loc": {"lat": "1.5"}}'})
    with pytest.raises(SchemaError, match=r"^from_json: malformed JSON"):
        f({"value": "{"})
    with pytest.raises(ValueError, match="mode must be PERMISSIVE or FAILFAST"):
        from_json("value", "a INT", {"mode": "DROPMALFORMED"})


def test_a_failfast_misfit_dead_letters_the_row_in_replay() -> None:
    q = read("events").select(
        from_json(col("value").cast("string"), COURSE_SCHEMA, {"mode": "FAILFAST"}).alias("d")
    )
    lines = [{"amount": 1}, {"amount": "12.5"}]
    src = io.BytesIO(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    out, dead = io.BytesIO(), io.BytesIO()
    stats = replay(
        q.query("append"), src, out, batch_size=5, dead=dead, record_columns={"value": "value"}
    )
    assert stats.output_rows == 1 and stats.dead_letters == 1
    (letter,) = [orjson.loads(x) for x in dead.getvalue().splitlines()]
    assert "amount: expected double, got string '12.5'" in letter["error"]


def test_to_json_leaves_null_fields_out_and_writes_known_times_and_decimals() -> None:
    parsed = from_json(col("v"), "t TIMESTAMP, p DECIMAL(5,2), n INT, xs ARRAY<INT>")
    c = to_json(parsed)
    assert c.name == "to_json(from_json(v))" and c.dtype == "string"
    rows = [{"v": '{"t": "2024-05-01T00:00:00Z", "p": 1.5, "xs": [1, null]}'}, {"v": None}]
    assert run(c, rows) == ['{"t":"2024-05-01T00:00:00Z","p":1.50,"xs":[1,null]}', None]
    assert run(to_json("s"), [{"s": {"a": 1, "b": None}}, {"s": [1]}]) == ['{"a":1}', "[1]"]


def test_binary_cast_to_string_decodes_utf8_with_replacement() -> None:
    c = col("value").cast("string")
    assert run(c, [{"value": "é".encode()}, {"value": b"\xff"}]) == ["é", "\ufffd"]


def test_select_star_and_struct_star() -> None:
    s = read("e", columns={"a": "int", "s": "struct<x:string,t:timestamp>"})
    both = s.select("*")
    assert both.node.columns == s.node.columns
    flat = s.select("a", "s.*")
    assert dict(flat.node.columns or ()) == {"a": "int", "x": "string", "t": "timestamp"}
    assert flat.node.timestamp_columns == {"t"}
    with pytest.raises(ValueError, match=r"select: 'a\.\*': column 'a' is int, not a struct"):
        s.select("a.*")
    odd = read("e").select(from_json("v", {"order-id": "int", "select": "string"}).alias("d"))
    assert odd.select("d.*").node.columns == (("order-id", "int"), ("select", "string"))
    unknown = read("e").select("*", "s.*")  # columns not known: expanded per row
    assert unknown.node.columns is None


def rows_through(stream: Stream, lines: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
    src = io.BytesIO(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    out = io.BytesIO()
    replay(stream.query("append"), src, out, batch_size=10, **kw)
    return [orjson.loads(x) for x in out.getvalue().splitlines()]


def test_stars_expand_per_row_when_columns_are_unknown() -> None:
    s = read("e").map(lambda r: {**r, "extra": 1}).select("*")
    assert rows_through(s, [{"a": 1}]) == [{"batch_id": 0, "a": 1, "extra": 1}]
    t = read("e").select("s.*")
    assert rows_through(t, [{"s": {"x": 1}}, {"s": None}]) == [
        {"batch_id": 0, "x": 1},
        {"batch_id": 0},
    ]


def test_course_section_3_1_pipeline_through_replay() -> None:
    """raw.select(from_json(col("value").cast("string"), schema).alias("data"))
    .select("data.*").filter(col("amount") > 0).withColumn(...) with exact rows."""
    raw = read("events")
    events = raw.select(from_json(col("value").cast("string"), COURSE_SCHEMA).alias("data")).select(
        "data.*"
    )
    filtered = events.filter(col("amount") > 0)
    transformed = filtered.withColumn("event_time", col("timestamp"), timestamp=True).withColumn(
        "action_upper", upper(col("action"))
    )
    lines = [
        {"user_id": "u1", "action": "click", "amount": 2.5, "timestamp": "2024-05-01T00:00:00Z"},
        {"user_id": "u2", "action": "buy", "amount": "12.5", "timestamp": "2024-05-01T00:00:01Z"},
        {"user_id": "u3", "action": "view", "amount": 0, "timestamp": "2024-05-01T00:00:02Z"},
        {"user_id": "u4", "action": None, "amount": 7, "timestamp": "2024-05-01T00:00:03.5Z"},
    ]
    assert rows_through(transformed, lines, record_columns={"value": "value"}) == [
        {
            "batch_id": 0,
            "user_id": "u1",
            "action": "click",
            "amount": 2.5,
            "timestamp": "2024-05-01T00:00:00Z",
            "event_time": "2024-05-01T00:00:00Z",
            "action_upper": "CLICK",
        },
        {
            "batch_id": 0,
            "user_id": "u4",
            "action": None,
            "amount": 7.0,
            "timestamp": "2024-05-01T00:00:03.5Z",
            "event_time": "2024-05-01T00:00:03.500Z",
            "action_upper": None,
        },
    ]
    assert transformed.column_types()["event_time"] == "timestamp"
    assert Schema(COURSE_SCHEMA).struct == COURSE_SCHEMA
    assert isinstance(COURSE_SCHEMA["amount"].dataType, DoubleType)
    assert TimestampType() != TimestampType(unit="s")
