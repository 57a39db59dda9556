"""Generated user activity, the input of most course pipelines (`events`, `raw_events`,
`clickstream`): each pipeline's `generate(traffic, n)` asks for the fields its docstring
names. Every value comes from `traffic.rng` (weir.service.traffic), so a seed gives the same
rows, and the event times from `traffic`, late ones included."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from weir.service.traffic import Event, Row, Traffic

USERS = 50
"""Users "u0" .. "u49"."""
PAGES = ("/home", "/search", "/product", "/cart", "/checkout")
ACTIONS = ("view", "click", "add_to_cart", "purchase")
WEIGHTS = (50, 25, 15, 10)
"""How often each action comes, rotated per page (so each page has its own favourite)."""
FIELDS = ("event_id", "user_id", "action", "amount")
"""The course's `events` fields, without the event time."""


def activity(
    traffic: Traffic,
    n: int,
    *,
    topic: str,
    time_field: str,
    fields: Sequence[str] = FIELDS,
    nonpositive: float = 0.0,
) -> Iterator[Event]:
    """`n` activity events on `topic` (plus `traffic`'s duplicates), each row the `fields`
    asked for, in that order, then the event time (ISO-8601) under `time_field`:

    * `event_id`: "e<i>", unique per event (a duplicate repeats it with the same time);
    * `user_id`: one of USERS users; `page`: one of PAGES;
    * `action`: one of ACTIONS, weighted by WEIGHTS rotated by the page's place (unrotated
      without a page);
    * `amount`: a price of 1 to 500 with two decimals; with probability `nonpositive`, 0.0 or
      a refund (a negative amount) instead.

    Raises ValueError for a field it does not know."""
    unknown = sorted(set(fields) - {"event_id", "user_id", "page", "action", "amount"})
    if unknown:
        raise ValueError(f"activity fields {unknown} are not generated")
    rng = traffic.rng

    def make(i: int, at: str) -> Event:
        row: Row = {}
        turn = 0
        for name in fields:
            if name == "event_id":
                row[name] = f"e{i}"
            elif name == "user_id":
                row[name] = user_id(traffic)
            elif name == "page":
                turn = rng.randrange(len(PAGES))
                row[name] = PAGES[turn]
            elif name == "action":
                weights = WEIGHTS[-turn:] + WEIGHTS[:-turn] if turn else WEIGHTS
                row[name] = rng.choices(ACTIONS, weights)[0]
            else:
                row[name] = amount(traffic, nonpositive)
        row[time_field] = at
        return topic, row

    return traffic.events(n, make)


def user_id(traffic: Traffic) -> str:
    """One of USERS users, "u0" .. "u49"."""
    return f"u{traffic.rng.randrange(USERS)}"


def amount(traffic: Traffic, nonpositive: float = 0.0) -> float:
    """A price of 1 to 500 with two decimals; with probability `nonpositive`, 0.0 or a
    refund of -1 to -100 instead."""
    rng = traffic.rng
    if nonpositive and rng.random() < nonpositive:
        return rng.choice((0.0, -round(rng.uniform(1, 100), 2)))
    return round(rng.uniform(1, 500), 2)


def events(traffic: Traffic, n: int) -> Iterator[Event]:
    """The course's `events` topic: {event_id, user_id, action, amount, event_time} (the
    `generate` of the windowed pipelines of section 4 and exercise 1)."""
    return activity(traffic, n, topic="events", time_field="event_time")
