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

from weir import Query, read
from weir.agents.order_matching import generate as generate  # the same input events
from weir.agents.order_matching import unmatched

query: Query = unmatched(read("orders"), read("payments"))
"""The app of exercise 3 (`weir run order_matching`) writes these rows to PostgreSQL."""

max_event_time_skew = "1 day"
"""The event-time guard for this course pipeline: rows stamped more than a day ahead of the
clock are dead-lettered instead of moving the watermark (replay and the app use it)."""
