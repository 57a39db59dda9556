"""Faust-style declaration: an App, its topics, and agents that turn input streams into queries.

    app = App("wordcount")
    lines = app.topic("lines")
    counts = app.topic("word-counts")

    @app.agent(lines, sink=counts, key="word")
    def word_count(lines: Stream) -> Query:
        return lines.flat_map(split_words).group_by("word").count().query("update")

`weir worker module:app` runs every agent of the app; each agent is one consumer group
(`<app>-<agent>`) with its own state, changelog and checkpoints, like a Spark query with its
own checkpoint location.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from weir.service.listener import ProgressFunction, StreamingQueryListener
from weir.service.record_columns import TYPES as RECORD_TYPES
from weir.service.record_columns import RecordColumns, parse_record_columns
from weir.service.settings import Settings
from weir.service.sinks.base import Sink
from weir.service.sinks.foreach_batch import BatchFn
from weir.service.sources.base import Source
from weir.service.trigger import Trigger
from weir.service.write_stream import WriterParts, writer_parts
from weir.tables.ddl import SchemaLike
from weir.tables.query import Query
from weir.tables.schema import Schema, as_schema
from weir.tables.stream import Stream, read
from weir.tables.types import StructType
from weir.tables.writer import StreamWriter


def load_attribute(spec: str, default_attr: str, package: str | None = None) -> tuple[str, Any]:
    """Import `module:attribute` and return (module name, the attribute or None).

    `module:attribute` names the module as written (a user's module on PYTHONPATH); a bare
    name without a dot is first looked up in `package` when given (the shipped pipelines),
    and each form falls back to the other. Raises ValueError with one readable line when no
    module can be imported.
    """
    module_name, colon, attr = spec.partition(":")
    tries = [module_name]
    if package and "." not in module_name:
        packaged = f"{package}.{module_name}"
        tries = [module_name, packaged] if colon else [packaged, module_name]
    first: ImportError | None = None
    for name in tries:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            missing = exc.name
            if missing is not None and missing != name and not name.startswith(missing + "."):
                # the module exists but an import inside it failed: that is the error to show
                raise ValueError(f"cannot import {name!r} for {spec!r}: {exc}") from None
            first = first or exc
            continue
        return name, getattr(module, attr or default_attr, None)
    raise ValueError(f"cannot import {tries[0]!r} for {spec!r}: {first}") from None


def load_agent_spec(
    spec: str, default_attr: str, package: str | None = None
) -> tuple[str, str, Any, str]:
    """Import what `module[:attribute[.agent]]` names (see `load_attribute`): (module name,
    attribute as written, the attribute or None, the agent named after the dot or ""). The
    function an agent was declared with stands for its App, with that agent named. Raises
    ValueError as `load_attribute` does."""
    module, colon, attr = spec.partition(":")
    attr, _, agent = attr.partition(".")
    module_name, found = load_attribute(
        f"{module}:{attr}" if colon else module, default_attr, package
    )
    if callable(found):
        by_name = getattr(found, "__name__", None)
        for app in (v for v in vars(sys.modules[module_name]).values() if isinstance(v, App)):
            if by_name in app.agents:
                return module_name, attr, app, str(by_name)
    return module_name, attr, found, agent


@dataclass(frozen=True)
class Topic:
    """A Kafka topic the app reads or writes."""

    name: str
    """Topic name."""
    partitions: int | None = None
    """Partition count when Weir creates the topic (None: the input's count, or 1)."""
    config: dict[str, str] = field(default_factory=dict)
    """Topic configs used when Weir creates it (e.g. retention.ms)."""


@dataclass(frozen=True)
class SourceInput(Topic):
    """An input read by a source other than Kafka (files, rate, socket): `app.files`,
    `app.rate`, `app.socket`. The worker runs an agent reading one as a single task (see
    weir.service.runtime.external)."""

    make: Callable[[Path], Source] | None = None
    """Makes the source, given a folder of its own inside the agent's state folder."""
    schema: Schema | None = None
    """The schema of its rows (the agent's, unless the agent declares one)."""


StartingOffsets = Literal["earliest", "latest"] | dict[str, dict[int, int]]


@dataclass
class Agent:
    """One declared pipeline: inputs, query, sink and options."""

    app: App
    name: str
    inputs: tuple[Topic, ...]
    query: Query
    sink: Topic | None = None
    """The Kafka topic the output rows go to, inside the checkpoint's transaction."""
    sinks: tuple[Sink, ...] = ()
    """Other sinks (console, memory, ...), written before the checkpoint commits."""
    schemas: Mapping[str, Schema] = field(default_factory=dict)
    """Per input topic, the schema its values must fit (weir.tables.schema)."""
    record_columns: Mapping[str, str] = field(default_factory=dict)
    """Record field -> column added to every input row (weir.service.record_columns)."""
    key: tuple[str, ...] = ()
    """Columns whose values form the output record key (JSON of one value, or a list)."""
    headers: str | None = None
    """The column whose value becomes the output records' headers (weir.service.sinks.kafka)."""
    kafka_columns: bool = False
    """Spark's Kafka sink layout: the `value` and `key` columns are the records' value and
    key (`writeStream.format("kafka")`), instead of each row as JSON."""
    foreach_batch: BatchFn | Sink | None = None
    """Called with each batch's output rows and batch id before the checkpoint commits (or a
    sink, such as `postgres_upsert(...)`, written at that point)."""
    late_topic: Topic | None = None
    """Where rows dropped as late go (they are always counted in a metric)."""
    trigger: Trigger = field(default_factory=Trigger)
    repartition: bool | None = None
    """Repartition before keyed state: None decides by the input's partition count (more than
    one: repartition), False trusts that the input is already partitioned by the key."""
    starting_offsets: StartingOffsets | None = None
    """Where to start on the first start only (no committed offsets): "earliest", "latest",
    or per topic and partition {"topic": {0: 42}} with -2 for earliest and -1 for latest, as
    Spark's startingOffsets JSON; None uses the `starting_offsets` setting. Committed offsets
    always win afterwards."""

    @property
    def external(self) -> SourceInput | None:
        """Its input when that is not Kafka (files, rate, socket): then it is its only one."""
        first = self.inputs[0]
        return first if isinstance(first, SourceInput) else None

    @property
    def group_id(self) -> str:
        """The consumer group and the prefix of this agent's internal topics."""
        return f"{self.app.name}-{self.name}"

    @property
    def changelog_topic(self) -> str:
        """Compacted changelog of the agent's state, co-partitioned with its inputs."""
        return f"{self.group_id}-changelog"

    @property
    def dead_letter_topic(self) -> str:
        """Where records that cannot be decoded or processed go, with the reason in headers."""
        return f"{self.group_id}-dead-letters"


class App:
    """A Weir application: a name, settings, topics and agents."""

    def __init__(self, name: str, **settings: Any) -> None:
        if not name or any(c in name for c in " /\\"):
            raise ValueError(f"app name must be a non-empty word, got {name!r}")
        self.name = name
        self.settings = Settings(**settings)
        self.topics: dict[str, Topic] = {}
        self.sources: dict[str, SourceInput] = {}
        self.agents: dict[str, Agent] = {}
        self.listeners: list[StreamingQueryListener] = []

    def topic(
        self, name: str, *, partitions: int | None = None, config: dict[str, str] | None = None
    ) -> Topic:
        """Declare (or return the already declared) topic `name`; `config` is used only when
        Weir creates the topic (e.g. {"cleanup.policy": "compact"})."""
        if name in self.topics:
            return self.topics[name]
        t = Topic(name, partitions, dict(config or {}))
        self.topics[name] = t
        return t

    def add_listener(self, listener: StreamingQueryListener) -> StreamingQueryListener:
        """Tell `listener` (Spark's `StreamingQueryListener`) when each of the app's queries
        starts, makes progress and ends; see `weir.service.listener`."""
        self.listeners.append(listener)
        return listener

    def on_progress(self, fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        """Call `fn(progress)` after each committed round of micro-batches of any query
        (Spark's `StreamingQueryListener.onQueryProgress`), with the query's progress record
        (its `name` is the agent). A listener that raises is logged and ignored: it never
        stops the query. Usable as a decorator."""
        self.listeners.append(ProgressFunction(fn))
        return fn

    def _source(self, name: str, make: Callable[[Path], Source], schema: Schema) -> SourceInput:
        if name in self.sources or name in self.topics:
            raise ValueError(f"input {name!r} declared twice")
        src = SourceInput(name, 1, {}, make, schema)
        self.sources[name] = src
        return src

    def files(
        self,
        name: str,
        path: str | Path,
        *,
        schema: Schema | SchemaLike,
        format: Literal["json", "csv", "parquet"] = "json",
        max_files_per_trigger: int | None = None,
        order: Literal["name", "modified"] = "name",
        settle: str | int | timedelta = "2 seconds",
    ) -> SourceInput:
        """Spark's file source: JSON lines, CSV (with a header) or Parquet files of a folder
        that keeps receiving them, rows checked against `schema` (required, as in Spark).

        Each file is read once, in `order`: which files the query took and how far is part
        of its checkpoint, so a restart neither reads a file twice nor skips one. Only
        complete files are read: names starting with "." or "_" are ignored (write
        ".name.tmp", then rename), and a file is taken once it has not changed for `settle`.
        """
        from weir.service.sources.directory import DirectorySource

        checked = as_schema(schema)

        def make(log_dir: Path) -> Source:
            return DirectorySource(
                path,
                format,
                name,
                checked,
                log_dir=log_dir,
                max_files_per_trigger=max_files_per_trigger,
                order=order,
                settle=settle,
            )

        return self._source(name, make, checked)

    def rate(
        self, name: str = "rate", *, rows_per_second: int, ramp_up: str | int | timedelta = 0
    ) -> SourceInput:
        """Spark's rate source: rows {timestamp, value} with value 0, 1, 2, ... at
        `rows_per_second` (reached after `ramp_up`); replayable (weir.service.sources.rate)."""
        from weir.service.sources.rate import RateSource

        def make(log_dir: Path) -> Source:
            return RateSource(rows_per_second, name, log_dir=log_dir, ramp_up=ramp_up)

        return self._source(name, make, Schema({"timestamp": "timestamp", "value": "long"}))

    def socket(
        self, name: str = "socket", *, host: str, port: int, include_timestamp: bool = False
    ) -> SourceInput:
        """Spark's socket source: text lines from host:port as rows {value} (and
        `timestamp`, the receive time, with `include_timestamp`). For demos only: lines
        exist only in memory until processed, so a restart does not see them again."""
        from weir.service.sources.socket import SocketSource

        def make(log_dir: Path) -> Source:
            return SocketSource(host, port, name, include_timestamp=include_timestamp)

        fields = {"value": "string", **({"timestamp": "timestamp"} if include_timestamp else {})}
        return self._source(name, make, Schema(fields))

    def _writer_topic(self, parts: WriterParts | None) -> Topic | None:
        return self.topic(parts.topic) if parts and parts.topic else None

    def agent(
        self,
        *inputs: Topic,
        sink: Topic | Sink | Sequence[Topic | Sink] | None = None,
        key: str | Sequence[str] = (),
        foreach_batch: BatchFn | Sink | None = None,
        late_topic: Topic | None = None,
        trigger: Trigger | None = None,
        name: str | None = None,
        repartition: bool | None = None,
        starting_offsets: StartingOffsets | None = None,
        schema: Schema | SchemaLike | Mapping[str, Schema | StructType] | None = None,
        record_columns: RecordColumns | None = None,
        headers: str | None = None,
    ) -> Callable[[Callable[..., Query]], Callable[..., Query]]:
        """Declare an agent: the decorated function receives one `Stream` per input topic and
        returns the `Query` to run. Raises ValueError at declaration for a bad query.

        `sink`: a Kafka topic, a `Sink` (`console()`, `memory(name)`, ...), or a list of them
        (at most one topic). `schema`: the fields every input's values must fit (a
        StructType, DDL text, the dict form or a `Schema`; weir.tables.schema), or {topic:
        Schema or StructType} per input; a value that does not fit goes to the dead letters
        with the field and the reason. The schema's fields (and the record columns) are the
        input stream's known columns: an expression naming another column is refused when
        the query is defined (weir.tables.columns). `record_columns`:
        the Kafka record's `key`, `topic`, `partition`, `offset`, `timestamp` as columns
        (True, a list, or {field: column}; weir.service.record_columns). `headers`: the column
        that holds each output record's Kafka headers (Spark's `headers` column). `repartition`: see
        `Agent.repartition`. The function may return `stream.writeStream...` instead of a
        Query: its output mode, format, options and trigger apply where the agent's own
        arguments do not say otherwise (weir.service.write_stream)."""
        if not inputs:
            raise ValueError("an agent needs at least one input topic")
        external = [t for t in inputs if isinstance(t, SourceInput)]
        if external and len(inputs) > 1:
            raise ValueError(
                f"an agent reading {external[0].name!r} reads nothing else (one input: a file, "
                "rate or socket source, or Kafka topics)"
            )
        schemas = _schemas(schema, [t.name for t in inputs])
        for t in external:
            if t.name not in schemas and t.schema is not None:
                schemas[t.name] = t.schema
        columns = parse_record_columns(record_columns)
        ts_column = columns.get("timestamp")
        given = [] if sink is None else list(sink) if isinstance(sink, list | tuple) else [sink]
        topics = [t for t in given if isinstance(t, Topic)]
        others = tuple(t for t in given if isinstance(t, Sink))
        if len(topics) > 1 or len(topics) + len(others) != len(given):
            raise ValueError("sink= takes at most one Kafka topic, and Sink objects")

        def decorate(fn: Callable[..., Query]) -> Callable[..., Query]:
            streams: list[Stream] = []
            record_types = {column: RECORD_TYPES[f] for f, column in columns.items()}
            for t in inputs:
                sch = schemas.get(t.name)
                ts = sch.timestamp_columns() if sch is not None else set()
                ts = (ts - set(record_types)) | ({ts_column} if ts_column else set())
                known = None if sch is None else {**sch.column_types(), **record_types}
                streams.append(read(t.name, ts, known))
            query = fn(*streams)
            parts = None
            if isinstance(query, StreamWriter):
                parts = writer_parts(query, self.settings.bootstrap_servers)
                query = parts.query
            if not isinstance(query, Query):
                raise TypeError(
                    f"agent {fn.__name__} must return a Query (.query(mode)) or a writeStream"
                )
            agent_name = name or (parts.name if parts else None) or fn.__name__
            if agent_name in self.agents:
                raise ValueError(f"agent {agent_name!r} declared twice")
            self.agents[agent_name] = Agent(
                app=self,
                name=agent_name,
                inputs=tuple(inputs),
                query=query,
                sink=topics[0] if topics else self._writer_topic(parts),
                sinks=others + (parts.sinks if parts else ()),
                schemas=schemas,
                record_columns=columns,
                headers=headers,
                kafka_columns=bool(parts and parts.topic),
                key=(key,) if isinstance(key, str) else tuple(key),
                foreach_batch=foreach_batch or (parts.foreach_batch if parts else None),
                late_topic=late_topic,
                trigger=trigger or (parts.trigger if parts else None) or Trigger(),
                repartition=repartition,
                starting_offsets=starting_offsets,
            )
            return fn

        return decorate


def _schemas(schema: Any, inputs: list[str]) -> dict[str, Schema]:
    """Per input topic, its schema: one for all inputs (any form), or {topic: Schema} (or
    {topic: StructType} when every key is an input)."""
    if schema is None:
        return {}
    if isinstance(schema, Schema):
        return dict.fromkeys(inputs, schema)
    per_input = isinstance(schema, Mapping) and bool(schema)
    if per_input and not all(isinstance(v, Schema) for v in schema.values()):
        # {topic: StructType}, unless it is the dict form with a struct field
        per_input = set(schema) <= set(inputs) and all(
            isinstance(v, StructType) for v in schema.values()
        )
    if per_input:
        unknown = sorted(set(schema) - set(inputs))
        if unknown:
            raise ValueError(f"schema for {unknown}, which are not inputs of the agent {inputs}")
        return {name: as_schema(s) for name, s in schema.items()}
    one = Schema(schema)
    return dict.fromkeys(inputs, one)
