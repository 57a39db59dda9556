"""Practice problem 2: ad impressions matched with clicks, click-through rate per ad and hour.

`impressions` {ad_id, user_id, impression_time} (10-minute watermark) and `clicks` {ad_id,
user_id, click_time} (15-minute watermark) are joined on (ad_id, user_id) where the click comes
within 30 minutes of the impression, left outer so that impressions without a click count
too. The joined rows are counted per ad in 1-hour windows of impression_time, in append mode:
`impressions` (distinct impressions), `clicks` (distinct clicks) and `ctr` = clicks /
impressions. `alerts` keeps the windows whose ctr is above 5% (the course's alert topic).

Two stateful operators in a row, each with its own watermark (Spark 3.4+): the join's input
watermark W is the minimum over the two inputs of (latest event time - delay); the join
passes on W - 30 minutes - 1 ms, because an impression up to 30 minutes older than W may still
meet its click; the hourly window closes only when that watermark passes its end. With the
global W instead, windows would close about 30 minutes early and their late-matched rows
would be dropped. Until both producers have sent a row there is no watermark at all, so
impressions that arrive while the clicks' producer is still starting are not dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from weir import Query, Stream, col, count_distinct, read, window
from weir.agents.activity import user_id
from weir.service.traffic import Event, Traffic


def click_through(impressions: Stream, clicks: Stream) -> Stream:
    """The pipeline over any two streams with the course's columns (the worker's topics, or
    replay's inputs): per ad and hour of impression_time, impressions, clicks and ctr."""
    imps = impressions.with_watermark("impression_time", "10 minutes").map(
        lambda r: {**r, "impression_key": f"{r.get('user_id')}@{r['impression_time']}"}
    )
    taps = clicks.with_watermark("click_time", "15 minutes").map(
        lambda r: {**r, "click_key": f"{r.get('user_id')}@{r['click_time']}"}
    )
    matched = imps.join(
        taps,
        on=["ad_id", "user_id"],
        how="left_outer",
        between=("click_time", "impression_time", "impression_time + 30 minutes"),
        right_columns=["click_time", "click_key"],
    )
    return (
        matched.group_by(window("impression_time", "1 hour"), "ad_id")
        .agg(
            count_distinct("impression_key").alias("impressions"),
            count_distinct("click_key").alias("clicks"),
        )
        .map(_rate)
    )


def _rate(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "ctr": round(row["clicks"] / row["impressions"], 6)}


per_hour = click_through(read("impressions"), read("clicks"))

query: Query = per_hour.query("append")

alerts: Query = per_hour.filter(col("ctr") > 0.05).query("append")

max_event_time_skew = "1 day"
"""The event-time guard: rows stamped more than a day ahead of the clock are dead-lettered."""

ADS = 10
"""Generated ads: "ad0" .. "ad9"."""
CLICKS = 0.1
"""The share of generated events that are clicks."""


def generate(traffic: Traffic, n: int) -> Iterator[Event]:
    """`weir produce`'s input: `impressions` {ad_id, user_id, impression_time} of ADS ads and
    `clicks` {ad_id, user_id, click_time}. A CLICKS share of the events are clicks, each on
    one of the last 50 impressions (its ad and user, stamped when it happens: within 30
    minutes of the impression at rates above 0.03 events a second), so click-through rates
    come out around 10%, most (ad, hour) windows above the 5% alert line and some below; a
    click stamped late by `traffic` misses its impression."""
    rng = traffic.rng
    recent: deque[tuple[str, str]] = deque(maxlen=50)

    def make(i: int, at: str) -> Event:
        if recent and rng.random() < CLICKS:
            ad, user = rng.choice(recent)
            return "clicks", {"ad_id": ad, "user_id": user, "click_time": at}
        ad, user = f"ad{rng.randrange(ADS)}", user_id(traffic)
        recent.append((ad, user))
        return "impressions", {"ad_id": ad, "user_id": user, "impression_time": at}

    return traffic.events(n, make)
