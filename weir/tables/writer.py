"""`stream.writeStream`: Spark's DataStreamWriter, so the course's last lines work as written
inside an agent (`return events.writeStream.outputMode("update").format("console").start()`).

The writer only records what the course's calls say; the App turns it into the agent's query,
sinks and trigger (weir.service.write_stream), where the formats live. Contract:

- `outputMode`, `format`, `option`/`options`, `trigger`, `queryName`, `partitionBy`,
  `foreachBatch` return the writer; `start()` returns it too: in Weir the worker starts
  queries, so an agent returns the writer (or `query(mode)` as before).
- A bad output mode or trigger is refused when called (ValueError, one line); a format or
  option Weir does not know is refused when the agent is declared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from weir.tables.operator import OutputMode
from weir.tables.query import Query
from weir.tables.timeutil import parse_duration

if TYPE_CHECKING:
    from weir.tables.plan import Node

_MODES = ("append", "update", "complete")


class StreamWriter:
    """What `writeStream...` said: see the module docstring."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.mode: OutputMode = "append"
        self.sink_format: str | None = None
        self.sink_options: dict[str, str] = {}
        self.trigger_kind: str | None = None
        self.trigger_ms: int | None = None
        self.name: str | None = None
        self.partition_columns: tuple[str, ...] = ()
        self.batch_function: Callable[..., Any] | None = None
        self.path: str | None = None

    def outputMode(self, mode: str) -> StreamWriter:  # PySpark's name
        """Spark's output mode: "append", "update" or "complete"."""
        m = mode.lower() if isinstance(mode, str) else mode
        if m not in _MODES:
            raise ValueError(f"outputMode: {mode!r} is not one of {', '.join(_MODES)}")
        self.mode = cast(OutputMode, m)
        return self

    def format(self, source: str) -> StreamWriter:
        """The sink: "console", "memory", "kafka", "parquet", "delta"."""
        self.sink_format = source.lower()
        return self

    def option(self, key: str, value: Any) -> StreamWriter:
        """A sink option, as Spark's (`path`, `topic`, `numRows`, `truncate`, ...)."""
        self.sink_options[key] = value if isinstance(value, str) else str(value).lower()
        return self

    def options(self, **options: Any) -> StreamWriter:
        """Several sink options."""
        for k, v in options.items():
            self.option(k, v)
        return self

    def trigger(
        self,
        *,
        processingTime: str | None = None,  # PySpark's names
        once: bool | None = None,
        availableNow: bool | None = None,
    ) -> StreamWriter:
        """Spark's triggers: `processingTime="10 seconds"`, `availableNow=True`, `once=True`
        (run as available-now, as Spark 3.4+ recommends)."""
        given = [k for k, v in (("processingTime", processingTime), ("once", once),
                                ("availableNow", availableNow)) if v]  # fmt: skip
        if len(given) != 1:
            raise ValueError("trigger takes one of processingTime=, once=True, availableNow=True")
        if processingTime:
            self.trigger_kind, self.trigger_ms = "processing_time", parse_duration(processingTime)
        else:
            self.trigger_kind, self.trigger_ms = "available_now", None
        return self

    def queryName(self, name: str) -> StreamWriter:
        """The query's name: the agent's name (and the memory table's)."""
        self.name = name
        return self

    def partitionBy(self, *columns: str) -> StreamWriter:
        """Partition columns of a Parquet or Delta sink."""
        self.partition_columns = tuple(columns)
        return self

    def foreachBatch(self, fn: Callable[..., Any]) -> StreamWriter:
        """Call `fn(rows, batch_id)` with each micro-batch (weir.service.sinks.foreach_batch)."""
        self.batch_function = fn
        return self

    def start(self, path: str | None = None) -> StreamWriter:
        """The writer itself: the worker starts the query (`path` is the sink's path)."""
        if path is not None:
            self.path = path
        return self

    def query(self) -> Query:
        """The query in the output mode given (refused as `Stream.query` refuses it)."""
        return Query(self.node, self.mode)
