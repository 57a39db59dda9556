"""Exercise 3: stream-stream join for order matching.

`orders` {order_id, user_id, amount, order_ts} (1-hour watermark on order_ts) and `payments`
{payment_id, order_id, payment_method, pay_ts} (2-hour watermark on pay_ts), inner-joined on
order_id where order_ts <= pay_ts <= order_ts + 4 hours; matched pairs are appended (the
runner writes them to `matched_orders` as JSON). Output columns: order_id, user_id, amount,
order_ts, payment_id, payment_method, pay_ts.

Why do both streams need watermarks?
    Each side keeps its rows in state so that rows of the *other* side arriving later can
    still match them. A row may be dropped only when no future row of the other side can
    match it, and only the other side's watermark says how old future rows can be. An order
    at order_ts can match payments up to order_ts + 4h; once the watermark passes
    order_ts + 4h every such payment would be late, so the order is evicted. A payment at
    pay_ts matches orders from pay_ts - 4h to pay_ts; once the watermark passes pay_ts,
    every such order would be late, so the payment is evicted. Without a watermark on one
    side, the other side's rows can never be evicted.

What determines the state retention period?
    The time-range condition plus the watermark, which here is global: the minimum of
    (max order_ts - 1h) and (max pay_ts - 2h). Orders are kept until that watermark passes
    order_ts + 4 hours, i.e. about 4h + 2h (the larger delay) of event time after
    order_ts while both streams flow; payments until it passes pay_ts (about 2 hours). A wider
    range or larger delays mean longer retention and more state.
"""

from __future__ import annotations

from weir import Query, read

orders = read("orders").with_watermark("order_ts", "1 hour")
payments = read("payments").with_watermark("pay_ts", "2 hours")

matched = orders.join(
    payments,
    on=["order_id"],
    how="inner",
    between=("pay_ts", "order_ts", "order_ts + 4 hours"),
)

query: Query = matched.query("append")

max_event_time_skew = "1 day"
"""The event-time guard for this course pipeline: rows stamped more than a day ahead of the
clock are dead-lettered instead of moving the watermark (replay and the app use it)."""
