"""Deterministic input data: events (~100-byte JSON), events with retried duplicates, and
orders/payments, with the facts needed to check each pipeline's output."""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

from weir.tables.timeutil import iso_utc

BASE_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z
STEP_MS = 50
"""Event-time step between consecutive events: 1,000,000 events span ~14 hours (84 windows)."""
JITTER_MS = 60_000
"""Out-of-order spread (±1 minute), well inside the 5-minute watermark delay: nothing is late."""
ACTIONS = ["click", "view", "buy", "share", "like", "scroll", "search", "logout"]
USERS = 1000
WIDE_USERS = 100_000
"""Distinct user_id values of the wide events (`tumbling_wide`)."""
FILTER_MIN_AMOUNT = 10.0
"""The stateless pipeline keeps events with amount >= this."""


@dataclass
class Dataset:
    """Encoded records for one input topic and what a correct pipeline must produce."""

    values: list[bytes]
    keys: list[bytes | None]
    timestamps: list[int]
    expect: dict[str, float]


def events(n: int, seed: int = 1, users: int = USERS, key: str = "action") -> Dataset:
    """`n` events {event_id, user_id, action, amount, event_time} over `users` user ids, keyed
    by the field `key`, the Kafka timestamp set to the event time (the peers window on it)."""
    rng = random.Random(seed)
    values: list[bytes] = []
    keys: list[bytes | None] = []
    stamps: list[int] = []
    kept = 0
    total = 0.0
    dumps = orjson.dumps
    for i in range(n):
        ts = BASE_MS + i * STEP_MS + rng.randint(-JITTER_MS, JITTER_MS)
        action = ACTIONS[rng.randrange(len(ACTIONS))]
        amount = round(rng.uniform(1.0, 100.0), 2)
        row = {
            "event_id": f"e{i:08d}",
            "user_id": f"u{rng.randrange(users)}",
            "action": action,
            "amount": amount,
            "event_time": iso_utc(ts),
        }
        values.append(dumps(row))
        keys.append(str(row[key]).encode())
        stamps.append(ts)
        total += amount
        kept += amount >= FILTER_MIN_AMOUNT
    return Dataset(values, keys, stamps, {"events": n, "kept": kept, "total_amount": total})


def wide_events(n: int) -> Dataset:
    """`events` over WIDE_USERS user ids, keyed by user_id (tumbling by about 100,000 keys)."""
    return events(n, seed=4, users=WIDE_USERS, key="user_id")


def duplicated_events(n: int, dup_fraction: float = 0.1, seed: int = 2) -> Dataset:
    """`n` records {event_id, user_id, amount, event_ts} of which about `dup_fraction` are
    retries of one of the previous 100 events (same payload)."""
    rng = random.Random(seed)
    values: list[bytes] = []
    stamps: list[int] = []
    distinct = 0
    for i in range(n):
        if values and rng.random() < dup_fraction:
            j = max(0, len(values) - 1 - rng.randrange(100))
            values.append(values[j])
            stamps.append(stamps[j])
            continue
        ts = BASE_MS + i * STEP_MS + rng.randint(-JITTER_MS, JITTER_MS)
        row = {
            "event_id": f"e{i:08d}",
            "user_id": f"u{rng.randrange(USERS)}",
            "amount": round(rng.uniform(1.0, 100.0), 2),
            "event_ts": iso_utc(ts),
        }
        values.append(orjson.dumps(row))
        stamps.append(ts)
        distinct += 1
    return Dataset(values, [None] * n, stamps, {"records": n, "distinct": distinct})


def orders_payments(n: int, seed: int = 3) -> tuple[Dataset, Dataset]:
    """n // 2 orders and as many payments, each paid 0-30 minutes after its order: every
    order matches exactly one payment within the 4-hour join range."""
    rng = random.Random(seed)
    half = n // 2
    orders = Dataset([], [], [], {"orders": half})
    payments = Dataset([], [], [], {"payments": half, "matches": half})
    for i in range(half):
        o_ts = BASE_MS + i * STEP_MS * 2
        p_ts = o_ts + rng.randint(0, 30 * 60_000)
        oid = f"o{i:08d}"
        order = {
            "order_id": oid,
            "user_id": f"u{rng.randrange(USERS)}",
            "amount": round(rng.uniform(1.0, 500.0), 2),
            "order_ts": iso_utc(o_ts),
        }
        payment = {
            "payment_id": f"p{i:08d}",
            "order_id": oid,
            "payment_method": rng.choice(["card", "paypal", "bank"]),
            "pay_ts": iso_utc(p_ts),
        }
        orders.values.append(orjson.dumps(order))
        orders.keys.append(oid.encode())
        orders.timestamps.append(o_ts)
        payments.values.append(orjson.dumps(payment))
        payments.keys.append(oid.encode())
        payments.timestamps.append(p_ts)
    return orders, payments


def distinct_keys(n: int) -> Dataset:
    """`n` records {"k": ...} with `n` distinct keys (fills state for the restore figure)."""
    values = [orjson.dumps({"k": f"k{i:09d}"}) for i in range(n)]
    return Dataset(values, [None] * n, [BASE_MS] * n, {"keys": n})


def replay_lines(ds: Dataset, topic: str | None = None) -> list[bytes]:
    """The dataset as JSON lines for replay (with a `"topic"` field for multi-input pipelines)."""
    if topic is None:
        return [v + b"\n" for v in ds.values]
    tag = b'{"topic":"' + topic.encode() + b'",'
    return [tag + v[1:] + b"\n" for v in ds.values]
