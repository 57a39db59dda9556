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

from collections import deque
from collections.abc import Iterator

from weir import Query, read
from weir.agents.activity import amount, user_id
from weir.service.traffic import Event, Traffic

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

PAYMENT_METHODS = ("card", "paypal", "bank_transfer", "voucher")
UNPAID = 0.1
"""The share of generated orders never paid."""


def generate(traffic: Traffic, n: int) -> Iterator[Event]:
    """`weir produce`'s input: `orders` {order_id, user_id, amount, order_ts} and `payments`
    {payment_id, order_id, payment_method, pay_ts} as they happen. While orders wait for a
    payment, an event is a payment with probability 1/2, for the oldest waiting order (so it
    comes a few events after its order: within 4 hours at any rate above a few events an
    hour); otherwise a new order, which waits for one unless it is among the UNPAID tenth
    that `unmatched_orders` reports. Payments stamped late by `traffic` miss their order."""
    rng = traffic.rng
    waiting: deque[str] = deque()

    def make(i: int, at: str) -> Event:
        if waiting and rng.random() < 0.5:
            payment = {
                "payment_id": f"p{i}",
                "order_id": waiting.popleft(),
                "payment_method": rng.choice(PAYMENT_METHODS),
                "pay_ts": at,
            }
            return "payments", payment
        order_id = f"o{i}"
        if rng.random() >= UNPAID:
            waiting.append(order_id)
        order = {
            "order_id": order_id,
            "user_id": user_id(traffic),
            "amount": amount(traffic),
            "order_ts": at,
        }
        return "orders", order

    return traffic.events(n, make)
