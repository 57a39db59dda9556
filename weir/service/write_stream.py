"""An agent that returns `stream.writeStream...` (weir.tables.writer): its query, sinks, trigger
and name, as Spark's DataStreamWriter would give them.

Formats: "console" (options numRows, truncate), "memory" (the table is the queryName),
"kafka" (option topic: the agent's output topic, written in the checkpoint's transaction),
"parquet" and "delta" (option path or `start(path)`, `partitionBy`; the file schema is the
query's output columns, which must be known: give the agent a schema, or use
`parquet(path, schema)` as a sink), and `foreachBatch(fn)`. `checkpointLocation` is accepted
and not used: Weir's checkpoint is the agent's changelog and state folder, one per query as
Spark requires; `kafka.bootstrap.servers` must be the App's. Anything else is refused, in one
line, when the agent is declared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from weir.service.sinks.base import Sink
from weir.service.sinks.console import console
from weir.service.sinks.delta import delta
from weir.service.sinks.memory import memory
from weir.service.sinks.parquet import parquet
from weir.service.trigger import Trigger
from weir.tables import columns as cols
from weir.tables.query import Query
from weir.tables.schema import Schema
from weir.tables.writer import StreamWriter

_IGNORED = {"checkpointlocation"}
_OPTIONS = {
    "console": {"numrows", "truncate"},
    "memory": set(),
    "kafka": {"topic", "kafka.bootstrap.servers"},
    "parquet": {"path"},
    "delta": {"path"},
    None: set(),
}


@dataclass
class WriterParts:
    """What the agent runs, from its writer."""

    query: Query
    topic: str | None
    """The Kafka topic of format "kafka"."""
    sinks: tuple[Sink, ...]
    foreach_batch: Any
    trigger: Trigger | None
    name: str | None


def writer_parts(w: StreamWriter, bootstrap_servers: str | None) -> WriterParts:
    """The agent's parts from writer `w` in an App on `bootstrap_servers`; ValueError (one
    line) for what Weir cannot run."""
    fmt = w.sink_format
    if fmt not in _OPTIONS:
        raise ValueError(
            f"writeStream: format {fmt!r} is not one of console, memory, kafka, parquet, delta "
            "(or use foreachBatch)"
        )
    opts = {k.lower(): v for k, v in w.sink_options.items()}
    unknown = sorted(set(opts) - _OPTIONS[fmt] - _IGNORED)
    if unknown:
        raise ValueError(f"writeStream: option {unknown[0]!r} is not known for format {fmt!r}")
    servers = opts.get("kafka.bootstrap.servers")
    if servers is not None and bootstrap_servers is not None and servers != bootstrap_servers:
        raise ValueError(
            f"writeStream: kafka.bootstrap.servers {servers!r} is not the App's "
            f"({bootstrap_servers!r}): Weir writes to the App's cluster"
        )
    if fmt == "kafka":
        _check_kafka_columns(w, opts)
    trigger = None
    if w.trigger_kind == "processing_time":
        trigger = Trigger("processing_time", w.trigger_ms)
    elif w.trigger_kind == "available_now":
        trigger = Trigger.available_now()
    return WriterParts(
        w.query(), opts.get("topic"), _sinks(w, fmt, opts), w.batch_function, trigger, w.name
    )


def _check_kafka_columns(w: StreamWriter, opts: dict[str, Any]) -> None:
    """Spark's checks of a Kafka sink's query: a topic, and a text or binary `value` column
    (and `key`) where the columns are known."""
    if "topic" not in opts:
        raise ValueError('writeStream: format "kafka" needs option("topic", name)')
    known = cols.known(w.node)
    if known is None:
        return
    if "value" not in known:
        raise ValueError(
            "writeStream: format \"kafka\" needs a 'value' column (text or binary), "
            f"and the query's columns are {', '.join(known)}"
        )
    for c in ("key", "value"):
        t = known.get(c)
        if t is not None and t not in ("string", "binary"):
            raise ValueError(f"writeStream: kafka's {c} column must be text or binary, not {t}")


def _sinks(w: StreamWriter, fmt: str | None, opts: dict[str, Any]) -> tuple[Sink, ...]:
    if fmt == "console":
        truncate = opts.get("truncate", "true")
        rows = int(opts.get("numrows", 20))
        return (
            console(rows, truncate != "false" if truncate in ("true", "false") else int(truncate)),
        )
    if fmt == "memory":
        if not w.name:
            raise ValueError('writeStream: format "memory" needs queryName(name): the table name')
        return (memory(w.name, complete=w.mode == "complete"),)
    if fmt in ("parquet", "delta"):
        path = w.path or opts.get("path")
        if not path:
            raise ValueError(
                f'writeStream: format "{fmt}" needs option("path", ...) or start(path)'
            )
        schema = _output_schema(w, fmt)
        if fmt == "parquet":
            return (parquet(path, schema, w.partition_columns),)
        return (delta(path, schema, partition_by=w.partition_columns),)
    return ()


def _output_schema(w: StreamWriter, fmt: str) -> Schema:
    known = cols.known(w.node)
    untyped = [] if known is None else [c for c, t in known.items() if t is None]
    if known is None or untyped:
        what = "they are not known" if known is None else f"{untyped[0]!r} has no known type"
        raise ValueError(
            f'writeStream: format "{fmt}" writes the query\'s columns with their types, and '
            f"{what}: give the agent a schema, or use sink={fmt}(path, schema)"
        )
    ddl = ", ".join(f"`{c}` {t}" for c, t in known.items())
    return Schema(ddl)
