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
    from weir.service.schema import Schema
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
    from weir.tables.operator import Row
    from weir.tables.ops.arbitrary import GroupState
    from weir.tables.ops.functions import (
        Aggregator,
        approx_count_distinct,
        avg,
        collect_list,
        collect_set,
        count,
        count_distinct,
        countDistinct,
        first,
        last,
        max,
        max_by,
        mean,
        min,
        min_by,
        percentile_approx,
        sum,
        sum_distinct,
        udaf,
    )
    from weir.tables.ops.mode import mode
    from weir.tables.query import Query
    from weir.tables.stream import Stream, flat_map_groups_with_state, map_groups_with_state, read
    from weir.tables.window import session_window, window

_HOMES = {
    "weir.service.app": ["App", "Topic", "Trigger"],
    "weir.service.schema": ["Schema"],
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
    "weir.tables.operator": ["Row"],
    "weir.tables.ops.arbitrary": ["GroupState"],
    "weir.tables.ops.functions": [
        "Aggregator",
        "approx_count_distinct",
        "avg",
        "collect_list",
        "collect_set",
        "count",
        "count_distinct",
        "countDistinct",
        "first",
        "last",
        "max",
        "max_by",
        "mean",
        "min",
        "min_by",
        "percentile_approx",
        "sum",
        "sum_distinct",
        "udaf",
    ],
    "weir.tables.ops.mode": ["mode"],
    "weir.tables.query": ["Query"],
    "weir.tables.stream": ["Stream", "flat_map_groups_with_state", "map_groups_with_state", "read"],
    "weir.tables.window": ["session_window", "window"],
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = [
    "Aggregator",
    "App",
    "BatchId",
    "Column",
    "GroupState",
    "Query",
    "Row",
    "Schema",
    "Sink",
    "SinkBatch",
    "Stream",
    "Topic",
    "Trigger",
    "approx_count_distinct",
    "avg",
    "coalesce",
    "col",
    "collect_list",
    "collect_set",
    "compact_parquet",
    "concat",
    "console",
    "count",
    "countDistinct",
    "count_distinct",
    "delta",
    "first",
    "flat_map_groups_with_state",
    "foreach_batch",
    "last",
    "length",
    "lit",
    "log_and_continue",
    "lower",
    "map_groups_with_state",
    "max",
    "max_by",
    "mean",
    "memory",
    "memory_table",
    "min",
    "min_by",
    "mode",
    "parquet",
    "percentile_approx",
    "postgres_insert",
    "postgres_upsert",
    "read",
    "read_parquet",
    "read_parquet_latest",
    "session_window",
    "split",
    "static_table",
    "substring",
    "sum",
    "sum_distinct",
    "udaf",
    "upper",
    "when",
    "window",
    "write_batch",
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
