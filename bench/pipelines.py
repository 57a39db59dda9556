"""The benchmarked pipelines, built from input streams so the worker (any topic names) and
replay mode run the very same queries. Shapes follow `agents/`."""

from __future__ import annotations

from typing import Any

from bench.data import FILTER_MIN_AMOUNT
from weir.tables.expressions.expr import col
from weir.tables.ops.functions import count
from weir.tables.ops.functions import sum as spark_sum
from weir.tables.query import Query
from weir.tables.stream import Stream
from weir.tables.window import window


def _project(r: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": r["event_id"], "action": r["action"], "amount2": r["amount"] * 2}


def stateless(events: Stream) -> Query:
    """filter(amount >= 10) then map to three columns, append."""
    return events.filter(lambda r: r["amount"] >= FILTER_MIN_AMOUNT).map(_project).query("append")


def stateless_expr(events: Stream) -> Query:
    """`stateless` written with column expressions, as the course writes it."""
    return (
        events.filter(col("amount") >= FILTER_MIN_AMOUNT)
        .select("event_id", "action", (col("amount") * 2).alias("amount2"))
        .query("append")
    )


def _windowed(events: Stream, key: str, *every: str) -> Query:
    """10-minute windows (sliding `every`, else tumbling) by `key`, count and sum of amount,
    5-minute watermark, update."""
    return (
        events.with_watermark("event_time", "5 minutes")
        .group_by(window("event_time", "10 minutes", *every), key)
        .agg(count("*").alias("event_count"), spark_sum("amount").alias("total_amount"))
        .query("update")
    )


def tumbling(events: Stream) -> Query:
    """10-minute tumbling windows by action, count and sum, 5-minute watermark, update."""
    return _windowed(events, "action")


def tumbling_expr(events: Stream) -> Query:
    """`tumbling` as the course writes it: window(col(...)), col(...) and sum(col(...))."""
    return (
        events.withWatermark("event_time", "5 minutes")
        .groupBy(window(col("event_time"), "10 minutes"), col("action"))
        .agg(count("*").alias("event_count"), spark_sum(col("amount")).alias("total_amount"))
        .query("update")
    )


def tumbling_wide(events: Stream) -> Query:
    """`tumbling` by user_id over the wide events (about 100,000 distinct keys)."""
    return _windowed(events, "user_id")


def sliding(events: Stream) -> Query:
    """10-minute windows sliding every 5 minutes by user, count and sum, update."""
    return _windowed(events, "user_id", "5 minutes")


def dedup(raw: Stream) -> Query:
    """drop_duplicates(event_id, event_ts) with a 15-minute watermark, append."""
    return (
        raw.with_watermark("event_ts", "15 minutes")
        .drop_duplicates(["event_id", "event_ts"])
        .query("append")
    )


def join(orders: Stream, payments: Stream) -> Query:
    """orders ⋈ payments on order_id, pay_ts within 4 hours of order_ts (order_matching)."""
    o = orders.with_watermark("order_ts", "1 hour")
    p = payments.with_watermark("pay_ts", "2 hours")
    return o.join(
        p, on=["order_id"], how="inner", between=("pay_ts", "order_ts", "order_ts + 4 hours")
    ).query("append")


def latency(events: Stream) -> Query:
    """Stateless pass-through keeping the producer timestamp `pts` (latency figure)."""
    return (
        events.filter(lambda r: r["amount"] >= 0)
        .map(lambda r: {"event_id": r["event_id"], "pts": r["pts"]})
        .query("append")
    )


def key_count(rows: Stream) -> Query:
    """Running count per key `k`, update (fills N keys of state for the restore figure)."""
    return rows.group_by("k").count().query("update")
