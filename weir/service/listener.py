"""Spark's `StreamingQueryListener`: callbacks on a query's start, progress and end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class StreamingQueryListener:
    """Override what you need; register with `app.add_listener(listener)`.

    Contract: every method is called on the worker's event loop, after the fact it reports
    (a progress record after its round committed); a method that raises is logged and ignored,
    never stopping a query. Keep them quick: the query waits for them.
    """

    def on_query_started(self, event: dict[str, Any]) -> None:
        """The query joined its consumer group: `{"id", "runId", "name", "timestamp"}`."""

    def on_query_progress(self, progress: dict[str, Any]) -> None:
        """A round of micro-batches committed: its `StreamingQueryProgress` record."""

    def on_query_terminated(self, event: dict[str, Any]) -> None:
        """The query stopped: `{"id", "runId", "name", "exception"}` (None when stopped on
        request or at the end of available-now input, else the error line)."""


class ProgressFunction(StreamingQueryListener):
    """A listener made of one progress function (`app.on_progress(fn)`)."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any]) -> None:
        self.fn = fn

    def on_query_progress(self, progress: dict[str, Any]) -> None:
        self.fn(progress)

    def __repr__(self) -> str:
        return repr(self.fn)
