"""Generators (explode, explode_outer, posexplode) in select and with_column, and PySpark's
`lines.value` column access: exact rows, nulls and empty arrays, maps, refusals, and the
course's section 1.2 word count against the flat_map version through replay."""

from __future__ import annotations

import io
import random
from typing import Any

import orjson
import pytest

from weir import (
    col,
    current_timestamp,
    explode,
    explode_outer,
    lit,
    posexplode,
    posexplode_outer,
    split,
    upper,
)
from weir.agents import word_count
from weir.service.replay import replay
from weir.tables.expressions.expr import Column
from weir.tables.query import Query
from weir.tables.stream import Stream, read

ROWS = [
    {"id": 1, "tags": ["a", "b"]},
    {"id": 2, "tags": []},
    {"id": 3, "tags": None},
    {"id": 4, "tags": ["c", None]},
    {"id": 5},
]


def run(stream: Stream | Query, rows: list[dict[str, Any]], batch_size: int = 100) -> list[Any]:
    query = stream if isinstance(stream, Query) else stream.query()
    src = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    out, dead = io.BytesIO(), io.BytesIO()
    replay(query, io.BytesIO(src), out, batch_size=batch_size, dead=dead)
    rows_out = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return [{k: v for k, v in r.items() if k != "batch_id"} for r in rows_out] + [
        {"dead": orjson.loads(line)["error"]} for line in dead.getvalue().splitlines()
    ]


def test_explode_in_select_skips_null_and_empty_arrays() -> None:
    s = read("t").select("id", explode("tags").alias("tag"))
    assert run(s, ROWS) == [
        {"id": 1, "tag": "a"},
        {"id": 1, "tag": "b"},
        {"id": 4, "tag": "c"},
        {"id": 4, "tag": None},  # a null element is a row
    ]
    assert run(read("t").select(explode("tags")), ROWS[:1]) == [{"col": "a"}, {"col": "b"}]


def test_explode_outer_and_posexplode() -> None:
    s = read("t").select(explode_outer(col("tags")).alias("tag"), (col("id") * 10).alias("x"))
    assert run(s, ROWS) == [
        {"tag": "a", "x": 10},
        {"tag": "b", "x": 10},
        {"tag": None, "x": 20},
        {"tag": None, "x": 30},
        {"tag": "c", "x": 40},
        {"tag": None, "x": 40},
        {"tag": None, "x": 50},
    ]
    assert run(read("t").select("id", posexplode("tags")), ROWS[:2]) == [
        {"id": 1, "pos": 0, "col": "a"},
        {"id": 1, "pos": 1, "col": "b"},
    ]
    s = read("t").select("id", posexplode_outer("tags").alias("i", "t"))
    assert run(s, ROWS[1:3]) == [{"id": 2, "i": None, "t": None}, {"id": 3, "i": None, "t": None}]


def test_exploding_a_map_gives_key_and_value() -> None:
    rows = [{"id": 1, "m": {"x": 1, "y": 2}}, {"id": 2, "m": {}}]
    assert run(read("t").select("id", explode("m")), rows) == [
        {"id": 1, "key": "x", "value": 1},
        {"id": 1, "key": "y", "value": 2},
    ]
    s = read("t").select(posexplode("m").alias("p", "k", "v"))
    assert run(s, rows) == [{"p": 0, "k": "x", "v": 1}, {"p": 1, "k": "y", "v": 2}]
    # one name for a map's two columns, or a value that is no array: the row is dead-lettered
    out = run(read("t").select(explode("m").alias("only")), [*rows, {"id": 3, "m": "text"}])
    assert [list(r) for r in out] == [["dead"], ["dead"]]
    assert "makes 2 column(s)" in out[0]["dead"] and "expects an array or a map" in out[1]["dead"]


def test_explode_in_with_column_keeps_the_other_columns() -> None:
    s = read("t").with_column("tag", explode("tags"))
    assert run(s, ROWS[:3]) == [
        {"id": 1, "tags": ["a", "b"], "tag": "a"},
        {"id": 1, "tags": ["a", "b"], "tag": "b"},
    ]
    s = read("t").withColumn("tags", explode_outer("tags"))  # replacing the array column
    assert run(s, ROWS[1:3]) == [{"id": 2, "tags": None}, {"id": 3, "tags": None}]


def test_generators_where_spark_refuses_them() -> None:
    t = read("t")
    with pytest.raises(ValueError, match="one generator"):
        t.select(explode("a"), explode("b"))
    with pytest.raises(ValueError, match="generators"):
        t.select(upper(explode("a")))
    with pytest.raises(ValueError, match="generators"):
        t.filter(explode("a") == lit(1))
    with pytest.raises(ValueError, match="generators"):
        t.with_columns({"x": explode("a")})
    with pytest.raises(ValueError, match="posexplode makes two columns"):
        t.with_column("x", posexplode("a"))
    with pytest.raises(ValueError, match="selected twice"):
        t.select("col", explode("a"))


def test_stream_attribute_and_item_access_are_columns() -> None:
    lines = read("lines")
    assert isinstance(lines.value, Column) and lines.value.name == "value"
    assert lines["count"].name == "count" and lines["value"].references() == {"value"}
    assert callable(lines.select) and lines.node is not None  # Stream's own attributes first
    with pytest.raises(AttributeError):
        _ = lines._private
    assert not hasattr(lines, "__deepcopy_me__")
    ts = lines.select(lines.value, current_timestamp().alias("now"))
    assert ts.node.timestamp_columns == frozenset({"now"})


def split_words(row: dict) -> list[dict]:
    """explode(split(value, " ")) as a Python function."""
    return [{"word": w} for w in row["value"].split(" ")]


def test_course_word_count_matches_the_flat_map_version() -> None:
    """Section 1.2 as the course writes it, against the same count written with a lambda
    (the flat_map version weir.agents.word_count had before expressions)."""
    lines = read("lines")
    words = lines.select(explode(split(lines.value, " ")).alias("word"))
    word_counts = words.groupBy("word").count()
    rng = random.Random(7)
    rows = [{"value": word_count.line(rng, rng.randint(1, 9))} for _ in range(60)]
    for mode in ("complete", "update"):
        course = run(word_counts.query(mode), rows, batch_size=7)
        flat = run(
            read("lines").flat_map(split_words).group_by("word").count().query(mode),
            rows,
            batch_size=7,
        )
        assert course == flat and len(course) > 20
    assert run(
        lines.select(explode(split(lines.value, " ")).alias("word")), [{"value": "a  b"}]
    ) == [
        {"word": "a"},
        {"word": ""},  # Spark's split keeps the empty word between two spaces
        {"word": "b"},
    ]
