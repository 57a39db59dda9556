"""A copy of the input to an output topic under a 30-second processing-time trigger, for the
shutdown test. WEIR_TEST_INPUT and WEIR_TEST_OUTPUT name the topics, WEIR_TEST_APP the app;
WEIR_* settings apply."""

from __future__ import annotations

import os

from weir.service.app import App, Trigger
from weir.tables.query import Query
from weir.tables.stream import Stream

app = App(os.environ.get("WEIR_TEST_APP", "long-trigger"))


@app.agent(
    app.topic(os.environ.get("WEIR_TEST_INPUT", "long-trigger-in")),
    sink=app.topic(os.environ.get("WEIR_TEST_OUTPUT", "long-trigger-out")),
    name="copy",
    trigger=Trigger.processing_time("30 seconds"),
)
def copy(events: Stream) -> Query:
    """Each row as it is."""
    return events.query("append")
