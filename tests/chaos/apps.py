"""The worker apps of the chaos suite: the shipped pipelines' own queries, on their own input
topic names (on the chaos broker), with the output topic and the app name from the environment.

WEIR_CHAOS_PIPELINE: "tumbling" (weir.agents.tumbling_window.query over `events`), "dedup"
(weir.agents.dedup.dedup over `raw_events`) or "join" (weir.agents.order_matching.match over
`orders` and `payments`, with the shipped schemas); WEIR_CHAOS_APP: the app's name;
WEIR_CHAOS_OUTPUT: its output topic. WEIR_* settings apply (guarantee, state folder, ...).
"""

from __future__ import annotations

import os

from weir.agents import dedup, order_matching, tumbling_window
from weir.service.app import App
from weir.tables.query import Query
from weir.tables.stream import Stream

INPUTS = {
    "tumbling": ("events",),
    "dedup": ("raw_events",),
    "join": ("orders", "payments"),
}
"""Per pipeline, its input topics: the shipped pipelines' own names."""
SINK_KEYS = {"tumbling": "action", "dedup": "event_id", "join": "order_id"}
"""Per pipeline, the column that keys its output records."""


def _tumbling(_events: Stream) -> Query:
    return tumbling_window.query


def build(pipeline: str, name: str, output: str) -> App:
    """An app with one agent running `pipeline`'s shipped query into the topic `output`, with
    the pipeline's own event-time guard (max_event_time_skew)."""
    app = App(name, max_event_time_skew_ms=tumbling_window.max_event_time_skew)
    inputs = [app.topic(t) for t in INPUTS[pipeline]]
    sink = app.topic(output)
    key = SINK_KEYS[pipeline]
    if pipeline == "tumbling":
        app.agent(*inputs, sink=sink, key=key, name="tumbling")(_tumbling)
    elif pipeline == "dedup":
        app.agent(*inputs, sink=sink, key=key, name="dedup")(dedup.dedup)
    elif pipeline == "join":
        schemas = {"orders": order_matching.SCHEMAS["orders"]}
        schemas["payments"] = order_matching.SCHEMAS["payments"]
        app.agent(*inputs, sink=sink, key=key, schema=schemas, name="matched")(order_matching.match)
    else:
        raise ValueError(f"unknown chaos pipeline {pipeline!r}")
    return app


app = build(
    os.environ.get("WEIR_CHAOS_PIPELINE", "tumbling"),
    os.environ.get("WEIR_CHAOS_APP", "chaos"),
    os.environ.get("WEIR_CHAOS_OUTPUT", "chaos-out"),
)
