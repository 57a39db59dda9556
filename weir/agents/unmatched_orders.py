"""Exercise 3, step 6: orders that found no payment within 4 hours.

The left outer variant of `weir.agents.order_matching`: an order that leaves the join state
without ever matching a payment (once the watermark passes order_ts + 4 hours, after which
any matching payment would be late) is emitted exactly once with null payment columns.
Matched pairs are filtered out, so the output holds only unmatched orders
{order_id, user_id, amount, order_ts}, ready for the `unmatched_orders` PostgreSQL table.

Unlike the course's separate foreachBatch query on the orders stream, the join knows when an
order can no longer match, so no order is reported unmatched too early or twice.
"""

from __future__ import annotations

from weir import Query
from weir.agents.order_matching import generate as generate  # the same input events
from weir.agents.order_matching import orders, payments  # the same watermarked inputs

PAYMENT_COLUMNS = ("payment_id", "order_id", "payment_method", "pay_ts")

joined = orders.join(
    payments,
    on=["order_id"],
    how="left_outer",
    between=("pay_ts", "order_ts", "order_ts + 4 hours"),
    right_columns=PAYMENT_COLUMNS,
)

# pay_ts is the payments' watermarked column: never null in a matched row.
unmatched = joined.filter(lambda r: r["pay_ts"] is None).select(
    "order_id", "user_id", "amount", "order_ts"
)

query: Query = unmatched.query("append")

max_event_time_skew = "1 day"
"""The event-time guard for this course pipeline: rows stamped more than a day ahead of the
clock are dead-lettered instead of moving the watermark (replay and the app use it)."""
