"""Sessionization with arbitrary state (Spark's flatMapGroupsWithState, event-time timeout).

`events` {user_id, event_ts, ...} with a 10-minute watermark on event_ts. A session of a user
is a run of events with gaps under 30 minutes of event time; it closes when the watermark
passes its last event + 30 minutes. Each closed session is emitted once:
{user_id, session_start, session_end, events, duration_ms}, session_end being the time of
its last event.

State per user: the open sessions as [start, end, count], kept sorted and disjoint (an
out-of-order event can fall before an open session, or bridge two); the timeout is the
earliest end + gap. Events at or before the previous watermark are late and dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from weir import GroupState, Query, Row, flat_map_groups_with_state, read
from weir.agents.activity import activity
from weir.service.traffic import Event, Traffic

GAP_MS = 30 * 60_000


def _merge(sessions: list[list[int]], ts: int) -> list[list[int]]:
    """Add an event at `ts` to sorted, disjoint sessions, merging what it bridges."""
    merged = [ts, ts, 1]
    rest: list[list[int]] = []
    for s in sessions:
        if s[0] - GAP_MS < merged[1] and merged[0] < s[1] + GAP_MS:
            merged = [min(s[0], merged[0]), max(s[1], merged[1]), s[2] + merged[2]]
        else:
            rest.append(s)
    rest.append(merged)
    rest.sort()
    return rest


def sessions(key: tuple[Any, ...], values: list[Row], state: GroupState) -> list[Row]:
    """Update the user's open sessions; emit those the watermark has closed."""
    open_sessions: list[list[int]] = state.get() if state.exists else []
    for row in values:
        open_sessions = _merge(open_sessions, row["event_ts"])
    out: list[Row] = []
    watermark = state.get_current_watermark_ms()
    # Close what the watermark has passed, on a timeout call or when a batch's data arrives
    # after the watermark already moved past a session's end + gap.
    if watermark is not None:
        still_open = []
        for start, end, count in open_sessions:
            if end + GAP_MS < watermark:
                out.append(
                    {
                        "user_id": key[0],
                        "session_start": start,
                        "session_end": end,
                        "events": count,
                        "duration_ms": end - start,
                    }
                )
            else:
                still_open.append([start, end, count])
        open_sessions = still_open
    if open_sessions:
        state.update(open_sessions)
        state.set_timeout_timestamp(min(s[1] for s in open_sessions) + GAP_MS)
    else:
        state.remove()
    return out


events = read("events").with_watermark("event_ts", "10 minutes")

query: Query = flat_map_groups_with_state(
    events,
    ["user_id"],
    sessions,
    timeout="event",
    timestamp_columns=("session_start", "session_end"),
).query("append")

max_event_time_skew = "1 day"
"""The event-time guard for this course pipeline: rows stamped more than a day ahead of the
clock are dead-lettered instead of moving the watermark (replay and the app use it)."""


def generate(traffic: Traffic, n: int) -> Iterator[Event]:
    """`weir produce`'s input: `events` {user_id, action, event_ts} of 50 users (a user's
    sessions close when `traffic` leaves gaps of more than 30 minutes between their events:
    at a rate of 0.1 events per second, a few percent of the gaps)."""
    return activity(traffic, n, topic="events", time_field="event_ts", fields=("user_id", "action"))
