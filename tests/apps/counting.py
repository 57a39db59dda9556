"""A keyed running count, configured from the environment, for worker subprocess tests.

WEIR_TEST_INPUT / WEIR_TEST_OUTPUT name the topics, WEIR_TEST_APP the app; WEIR_TEST_TRIGGER
"available_now" makes the worker stop once the input is processed; WEIR_* settings apply.
"""

from __future__ import annotations

import os

from weir.service.app import App, Trigger
from weir.tables.query import Query
from weir.tables.stream import Stream

app = App(os.environ.get("WEIR_TEST_APP", "counting"))
_in = app.topic(os.environ.get("WEIR_TEST_INPUT", "counting-in"))
_out = app.topic(os.environ.get("WEIR_TEST_OUTPUT", "counting-out"))
_trigger = (
    Trigger.available_now() if os.environ.get("WEIR_TEST_TRIGGER") == "available_now" else None
)


@app.agent(_in, sink=_out, key="k", trigger=_trigger)
def running_count(events: Stream) -> Query:
    """Count and sum per key, emitted in update mode."""
    from weir.tables.ops.functions import count, sum

    return events.group_by("k").agg(count().alias("n"), sum("v").alias("total")).query("update")
