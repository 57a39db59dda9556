"""Exercise 2: stateful deduplication with a watermark.

`raw_events` carries {event_id, user_id, amount, event_ts}; producer retries repeat an event
with the same event_id *and the same event_ts* (the retry resends the same payload). We keep
the first copy of each (event_id, event_ts) and emit it once, in append mode (the runner
writes the output to `clean_events` and, through its sink, to `clean_events_log`).

Why must `event_ts` be part of the dedup key, next to `event_id`?
    State can only be dropped for a key once no future row can be a duplicate of it. With
    event_ts in the key, a key's event time is known, and once the watermark passes it
    (W = max event_ts seen - 15 minutes) any further copy of that event would be *late* and
    is dropped by the watermark filter anyway, so the key can be forgotten: the engine
    evicts keys with event_ts <= W after each micro-batch, by a range scan over a time-ordered
    key index. Keyed on event_id alone, nothing tells the engine when a given id can no
    longer reappear, so it must remember every id ever seen.

What happens to state size without the watermark (or without event_ts in the key)?
    It grows without bound: one entry per distinct event forever (Weir warns at definition).
    With it, the state holds only about the last 15 minutes of event time (plus the spread
    of out-of-order arrival). The price: a retry arriving more than ~15 minutes (of event
    time) after the newest event seen is dropped as late rather than deduplicated, so the
    delay must exceed the producers' retry window.
"""

from __future__ import annotations

from collections.abc import Iterator

from weir import App, Query, Stream, postgres_upsert, read
from weir.agents.activity import activity
from weir.service.traffic import Event, Traffic

max_event_time_skew = "1 day"
"""The event-time guard for this course pipeline: rows stamped more than a day ahead of the
clock are dead-lettered instead of moving the watermark (replay and the app use it)."""


def dedup(raw_events: Stream) -> Query:
    """The exercise's query: 15-minute watermark on event_ts, dropDuplicates on both columns."""
    return (
        raw_events.with_watermark("event_ts", "15 minutes")
        .drop_duplicates(["event_id", "event_ts"])
        .query("append")
    )


def build_app(
    name: str = "dedup",
    raw_topic: str = "raw_events",
    clean_topic: str = "clean_events",
    log_table: str = "clean_events_log",
    **settings: object,
) -> App:
    """The Kafka pipeline: `raw_topic` -> dedup -> `clean_topic` and, through foreach-batch, an
    idempotent upsert of every clean event into the PostgreSQL table `log_table`."""
    settings.setdefault("max_event_time_skew_ms", max_event_time_skew)
    app = App(name, **settings)

    app.agent(
        app.topic(raw_topic),
        sink=app.topic(clean_topic),
        key="event_id",
        foreach_batch=postgres_upsert(
            log_table,
            ["event_id", "event_ts", "user_id", "amount"],
            key=["event_id", "event_ts"],
            column_types={"event_ts": "timestamptz", "amount": "double precision"},
        ),
        name="dedup",
    )(dedup)
    return app


app = build_app()
query: Query = dedup(read("raw_events"))
"""The same query for replay mode (`weir replay dedup`)."""


def generate(traffic: Traffic, n: int) -> Iterator[Event]:
    """`weir produce`'s input: `raw_events` {event_id, user_id, amount, event_ts}, each
    event_id once; `traffic`'s duplicates are the producer retries (same event_id and
    event_ts)."""
    return activity(
        traffic,
        n,
        topic="raw_events",
        time_field="event_ts",
        fields=("event_id", "user_id", "amount"),
    )
