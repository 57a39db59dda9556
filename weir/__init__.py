"""Weir: Spark Structured Streaming semantics as asyncio agents on Apache Kafka.

Everything a pipeline needs comes from here::

    from weir import App, Query, Stream, Trigger, count, window

Names load on first use, so importing a submodule (`weir.tables.timeutil`) does not load the
runtime. The packages below are layered one way: `weir.agents` (the course's pipelines) uses
`weir.service` (runtime, connectors, operations), which uses `weir.tables` (state and event
time, pure logic).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from weir.service.app import App, Topic, Trigger
    from weir.service.sinks.base import BatchId, Sink, SinkBatch
    from weir.service.sinks.console import console
    from weir.service.sinks.delta import delta
    from weir.service.sinks.errors import log_and_continue
    from weir.service.sinks.foreach_batch import foreach_batch, write_batch
    from weir.service.sinks.memory import memory, memory_table
    from weir.service.sinks.parquet import parquet, read_parquet, read_parquet_latest
    from weir.service.sinks.parquet_compact import compact_parquet
    from weir.service.sinks.postgres import postgres_insert, postgres_upsert
    from weir.service.sources.static import static_table
    from weir.tables.expr import Column, col, lit
    from weir.tables.expr_collections import (
        array_contains,
        element_at,
        explode,
        explode_outer,
        posexplode,
        posexplode_outer,
        size,
    )
    from weir.tables.expr_dates import (
        add_months,
        date_add,
        date_sub,
        date_trunc,
        datediff,
        make_dt_interval,
        make_interval,
        trunc,
    )
    from weir.tables.expr_functions import (
        coalesce,
        concat,
        length,
        lower,
        split,
        substring,
        upper,
        when,
    )
    from weir.tables.expr_json import from_json, to_json
    from weir.tables.expr_sql import expr
    from weir.tables.expr_strings import (
        concat_ws,
        lpad,
        ltrim,
        regexp_extract,
        regexp_extract_all,
        regexp_like,
        regexp_replace,
        rlike,
        rpad,
        rtrim,
        trim,
    )
    from weir.tables.expr_time import (
        current_date,
        current_timestamp,
        date_format,
        dayofmonth,
        dayofweek,
        dayofyear,
        from_unixtime,
        hour,
        minute,
        month,
        quarter,
        second,
        timestamp_millis,
        timestamp_seconds,
        to_date,
        to_timestamp,
        unix_millis,
        unix_seconds,
        unix_timestamp,
        weekofyear,
        year,
    )
    from weir.tables.operator import Row
    from weir.tables.ops.arbitrary import GroupState
    from weir.tables.ops.functions import (
        Aggregator,
        approx_count_distinct,
        avg,
        collect_list,
        count,
        count_distinct,
        first,
        last,
        max,
        min,
        sum,
        udaf,
    )
    from weir.tables.ops.mode import mode
    from weir.tables.query import Query
    from weir.tables.schema import Schema, SchemaError
    from weir.tables.stream import Stream, flat_map_groups_with_state, map_groups_with_state, read
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
        StructField,
        StructType,
        TimestampType,
    )
    from weir.tables.window import session_window, window

_HOMES = {
    "weir.service.app": ["App", "Topic", "Trigger"],
    "weir.service.sinks.base": ["BatchId", "Sink", "SinkBatch"],
    "weir.service.sinks.console": ["console"],
    "weir.service.sinks.delta": ["delta"],
    "weir.service.sinks.errors": ["log_and_continue"],
    "weir.service.sinks.foreach_batch": ["foreach_batch", "write_batch"],
    "weir.service.sinks.memory": ["memory", "memory_table"],
    "weir.service.sinks.parquet": ["parquet", "read_parquet", "read_parquet_latest"],
    "weir.service.sinks.parquet_compact": ["compact_parquet"],
    "weir.service.sinks.postgres": ["postgres_insert", "postgres_upsert"],
    "weir.service.sources.static": ["static_table"],
    "weir.tables.expr": ["Column", "col", "lit"],
    "weir.tables.expr_json": ["from_json", "to_json"],
    "weir.tables.expr_sql": ["expr"],
    "weir.tables.expr_functions": [
        "coalesce",
        "concat",
        "length",
        "lower",
        "split",
        "substring",
        "upper",
        "when",
    ],
    "weir.tables.expr_collections": [
        "array_contains",
        "element_at",
        "explode",
        "explode_outer",
        "posexplode",
        "posexplode_outer",
        "size",
    ],
    "weir.tables.expr_dates": [
        "add_months",
        "date_add",
        "date_sub",
        "date_trunc",
        "datediff",
        "make_dt_interval",
        "make_interval",
        "trunc",
    ],
    "weir.tables.expr_strings": [
        "concat_ws",
        "lpad",
        "ltrim",
        "regexp_extract",
        "regexp_extract_all",
        "regexp_like",
        "regexp_replace",
        "rlike",
        "rpad",
        "rtrim",
        "trim",
    ],
    "weir.tables.expr_time": [
        "current_date",
        "current_timestamp",
        "date_format",
        "dayofmonth",
        "dayofweek",
        "dayofyear",
        "from_unixtime",
        "hour",
        "minute",
        "month",
        "quarter",
        "second",
        "timestamp_millis",
        "timestamp_seconds",
        "to_date",
        "to_timestamp",
        "unix_millis",
        "unix_seconds",
        "unix_timestamp",
        "weekofyear",
        "year",
    ],
    "weir.tables.operator": ["Row"],
    "weir.tables.ops.arbitrary": ["GroupState"],
    "weir.tables.ops.functions": [
        "Aggregator",
        "approx_count_distinct",
        "avg",
        "collect_list",
        "count",
        "count_distinct",
        "first",
        "last",
        "max",
        "min",
        "sum",
        "udaf",
    ],
    "weir.tables.ops.mode": ["mode"],
    "weir.tables.query": ["Query"],
    "weir.tables.schema": ["Schema", "SchemaError"],
    "weir.tables.stream": ["Stream", "flat_map_groups_with_state", "map_groups_with_state", "read"],
    "weir.tables.types": [
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
    ],
    "weir.tables.window": ["session_window", "window"],
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = [
    "Aggregator",
    "App",
    "ArrayType",
    "BatchId",
    "BooleanType",
    "Column",
    "DataType",
    "DateType",
    "DecimalType",
    "DoubleType",
    "FloatType",
    "GroupState",
    "IntegerType",
    "LongType",
    "Query",
    "Row",
    "Schema",
    "SchemaError",
    "Sink",
    "SinkBatch",
    "Stream",
    "StringType",
    "StructField",
    "StructType",
    "TimestampType",
    "Topic",
    "Trigger",
    "add_months",
    "approx_count_distinct",
    "array_contains",
    "avg",
    "coalesce",
    "col",
    "collect_list",
    "compact_parquet",
    "concat",
    "concat_ws",
    "console",
    "count",
    "count_distinct",
    "current_date",
    "current_timestamp",
    "date_add",
    "date_format",
    "date_sub",
    "date_trunc",
    "datediff",
    "dayofmonth",
    "dayofweek",
    "dayofyear",
    "delta",
    "element_at",
    "explode",
    "explode_outer",
    "expr",
    "first",
    "flat_map_groups_with_state",
    "foreach_batch",
    "from_json",
    "from_unixtime",
    "hour",
    "last",
    "length",
    "lit",
    "log_and_continue",
    "lower",
    "lpad",
    "ltrim",
    "make_dt_interval",
    "make_interval",
    "map_groups_with_state",
    "max",
    "memory",
    "memory_table",
    "min",
    "minute",
    "mode",
    "month",
    "parquet",
    "posexplode",
    "posexplode_outer",
    "postgres_insert",
    "postgres_upsert",
    "quarter",
    "read",
    "read_parquet",
    "read_parquet_latest",
    "regexp_extract",
    "regexp_extract_all",
    "regexp_like",
    "regexp_replace",
    "rlike",
    "rpad",
    "rtrim",
    "second",
    "session_window",
    "size",
    "split",
    "static_table",
    "substring",
    "sum",
    "timestamp_millis",
    "timestamp_seconds",
    "to_date",
    "to_json",
    "to_timestamp",
    "trim",
    "trunc",
    "udaf",
    "unix_millis",
    "unix_seconds",
    "unix_timestamp",
    "upper",
    "weekofyear",
    "when",
    "window",
    "write_batch",
    "year",
]


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'weir' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
