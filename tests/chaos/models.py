"""Inputs of the chaos runs and the brute-force recomputation their outputs are checked with.

The input comes in waves. Within a wave, event times spread less than the pipeline's watermark
delay, so no row of it can be late whatever order the partitions and tasks read it in; the
next wave (produced only once the previous one is fully in the output) is far enough ahead to
close and evict the previous wave's windows, keys and join rows. The expected output is then a
plain function of the input, independent of timing, kills and rebalances.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from weir.tables.timeutil import iso_utc, to_millis

T0 = 1_714_521_600_000
"""2024-05-01T00:00:00Z: an hour boundary, so 10-minute windows start at wave offsets."""
MIN = 60_000
HOUR = 60 * MIN
Row = dict[str, Any]
Inputs = dict[str, list[Row]]
"""Rows per input topic."""


@dataclass
class Outcome:
    """One output compared with its recomputation: `out` records read, `duplicates` (records
    repeating a result, or an aggregate counted past its true value), `lost` (expected results
    missing, or an aggregate short of its true value), `wrong` (results no input explains),
    and the first few `problems` described for an assertion message."""

    out: int = 0
    duplicates: int = 0
    lost: int = 0
    wrong: int = 0
    problems: list[str] = field(default_factory=list)

    def note(self, problem: str) -> None:
        if len(self.problems) < 12:
            self.problems.append(problem)


def wave(pipeline: str, k: int, n: int, rng: random.Random, produced: Inputs) -> Inputs:
    """Input wave `k` of about `n` records for `pipeline` ("tumbling", "dedup" or "join"),
    given what earlier waves `produced`."""
    if pipeline == "tumbling":
        return {"events": _tumbling_wave(k, n, rng)}
    if pipeline == "dedup":
        return {"raw_events": _dedup_wave(k, n, rng, produced.get("raw_events", []))}
    if pipeline == "join":
        return _join_wave(k, n, rng)
    raise ValueError(pipeline)


def check(pipeline: str, records: list[ConsumerRecord], produced: Inputs) -> Outcome:
    """Compare `records` (a topic read in (partition, offset) order) with the recomputation of
    `pipeline` over everything `produced`."""
    rows = [orjson.loads(r.value) for r in records]
    if pipeline == "tumbling":
        return _check_tumbling(rows, produced["events"])
    if pipeline == "dedup":
        return _check_rows(rows, _dedup_expected(produced["raw_events"]), _dedup_key)
    if pipeline == "join":
        expected = _join_expected(produced["orders"], produced["payments"])
        return _check_rows(rows, expected, _join_key)
    raise ValueError(pipeline)


# Tumbling: shipped 10-minute windows per action, 5-minute watermark, update mode.

ACTIONS = tuple(f"act{i}" for i in range(10))


def _tumbling_wave(k: int, n: int, rng: random.Random) -> list[Row]:
    """Event times in [base + 8 min, base + 12 min): two windows a wave, a 4-minute spread
    under the 5-minute delay; waves 20 minutes apart, so the next wave closes both windows.
    Amounts are quarters, so every sum is exact in floating point."""
    base = T0 + k * 20 * MIN + 8 * MIN
    return [
        {
            "event_id": f"e{k}-{i}",
            "user_id": f"u{rng.randrange(50)}",
            "action": rng.choice(ACTIONS),
            "amount": rng.randint(1, 4000) / 4,
            "event_time": iso_utc(base + rng.randrange(4 * MIN // 1000) * 1000),
        }
        for i in range(n)
    ]


def tumbling_expected(events: list[Row]) -> dict[tuple[str, str, str], tuple[int, float]]:
    """Per (action, window_start, window_end): the count and the sum of amounts."""
    agg: dict[tuple[str, str, str], tuple[int, float]] = {}
    for e in events:
        start = to_millis(e["event_time"]) // (10 * MIN) * (10 * MIN)
        key = (e["action"], iso_utc(start), iso_utc(start + 10 * MIN))
        n, total = agg.get(key, (0, 0.0))
        agg[key] = (n + 1, total + e["amount"])
    return agg


def _check_tumbling(rows: list[Row], events: list[Row]) -> Outcome:
    """Update mode: per window and action, counts strictly increase in output order (a repeat
    or a step back is a duplicate); the last row's count and sum are the recomputed ones, its
    average their quotient."""
    expected = tumbling_expected(events)
    seen: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    out = Outcome(out=len(rows))
    for r in rows:
        seen[(r["action"], r["window_start"], r["window_end"])].append(r)
    for key, got in seen.items():
        if key not in expected:
            out.wrong += 1
            out.note(f"{key}: no input falls in this window")
            continue
        top = 0
        for r in got:
            if r["event_count"] <= top:
                out.duplicates += 1
                out.note(f"{key}: count {r['event_count']} after {top}")
            top = max(top, r["event_count"])
            if r["avg_amount"] != r["total_amount"] / r["event_count"]:
                out.wrong += 1
                out.note(f"{key}: avg {r['avg_amount']} of {r}")
        n, total = expected[key]
        last = got[-1]
        if last["event_count"] > n:
            out.duplicates += 1
            out.note(f"{key}: last count {last['event_count']} > {n}")
        elif last["event_count"] < n:
            out.lost += 1
            out.note(f"{key}: last count {last['event_count']} < {n}")
        elif last["total_amount"] != total:
            out.wrong += 1
            out.note(f"{key}: sum {last['total_amount']} != {total} at count {n}")
    for key in expected.keys() - seen.keys():
        out.lost += 1
        out.note(f"{key}: missing, expected {expected[key]}")
    return out


# Dedup: shipped drop_duplicates(["event_id", "event_ts"]), 15-minute watermark, append.


def _dedup_wave(k: int, n: int, rng: random.Random, earlier: list[Row]) -> list[Row]:
    """`n` events, event_ts spread over 10 minutes (under the 15-minute delay), waves an hour
    apart; a fifth of them sent again later in the wave (a producer retry: the same payload),
    and from wave 1 on a few retries of the previous wave's events, which arrive after the
    watermark has passed them (dropped as late, or as duplicates while still in state)."""
    base = T0 + k * HOUR
    events = [
        {
            "event_id": f"ev{k}-{i}",
            "user_id": f"u{rng.randrange(50)}",
            "amount": rng.randint(1, 4000) / 4,
            "event_ts": iso_utc(base + rng.randrange(10 * MIN // 1000) * 1000),
        }
        for i in range(n)
    ]
    retries = rng.sample(events, n // 5)
    rows = events + retries
    rng.shuffle(rows)
    previous = [r for r in earlier if r["event_id"].startswith(f"ev{k - 1}-")]
    if previous:
        old = rng.sample(previous, n // 30)
        rows = old[: len(old) // 2] + rows + old[len(old) // 2 :]
    return rows


def _dedup_key(r: Row) -> tuple[Any, ...]:
    return (r["event_id"], r["event_ts"])


def _dedup_expected(raw: list[Row]) -> dict[tuple[Any, ...], Row]:
    out: dict[tuple[Any, ...], Row] = {}
    for r in raw:
        out.setdefault(_dedup_key(r), r)
    return out


# Join: shipped order_matching.match, orders inner-joined with payments within 4 hours.

METHODS = ("card", "paypal", "bank_transfer", "voucher")


def _join_wave(k: int, n: int, rng: random.Random) -> Inputs:
    """About `n` records: orders with order_ts spread over 40 minutes (under the 1-hour delay),
    most paid once, some twice, some never; pay_ts from 10 minutes before the order (no match:
    before order_ts) to an hour after it (a 110-minute spread, under the 2-hour delay). Waves
    10 hours apart, so the next wave evicts every order and payment of the previous one."""
    base = T0 + k * 10 * HOUR
    orders: list[Row] = []
    payments: list[Row] = []
    i = 0
    while len(orders) + len(payments) < n:
        order_ts = base + rng.randrange(40 * MIN // 1000) * 1000
        order = {
            "order_id": f"o{k}-{i}",
            "user_id": f"u{rng.randrange(50)}",
            "amount": rng.randint(1, 4000) / 4,
            "order_ts": iso_utc(order_ts),
        }
        orders.append(order)
        for j in range(rng.choice((0, 1, 1, 1, 1, 1, 1, 2))):
            pay_ts = order_ts + rng.randrange(-10 * MIN // 1000, HOUR // 1000) * 1000
            payments.append(
                {
                    "payment_id": f"p{k}-{i}-{j}",
                    "order_id": order["order_id"],
                    "payment_method": rng.choice(METHODS),
                    "pay_ts": iso_utc(pay_ts),
                }
            )
        i += 1
    rng.shuffle(orders)
    rng.shuffle(payments)
    return {"orders": orders, "payments": payments}


def _join_key(r: Row) -> tuple[Any, ...]:
    return (r["order_id"], r["payment_id"])


def _join_expected(orders: list[Row], payments: list[Row]) -> dict[tuple[Any, ...], Row]:
    by_id = {o["order_id"]: o for o in orders}
    out: dict[tuple[Any, ...], Row] = {}
    for p in payments:
        o = by_id.get(p["order_id"])
        if o is None:
            continue
        delta = to_millis(p["pay_ts"]) - to_millis(o["order_ts"])
        if 0 <= delta <= 4 * HOUR:
            out[_join_key(p)] = {**o, **p}
    return out


# Append mode: exactly one row per key.


def _check_rows(rows: list[Row], expected: dict[tuple[Any, ...], Row], key: Any) -> Outcome:
    """Each expected row exactly once, with the expected columns; extra copies are
    duplicates, absent ones lost, rows no input explains (or with other values) wrong."""
    out = Outcome(out=len(rows))
    counts = Counter(key(r) for r in rows)
    for r in rows:
        k = key(r)
        want = expected.get(k)
        if want is None or {c: r.get(c) for c in want} != want:
            out.wrong += 1
            out.note(f"{k}: got {r}, expected {want}")
    for k, c in counts.items():
        if c > 1:
            out.duplicates += c - 1
            out.note(f"{k}: {c} times")
    for k in expected.keys() - counts.keys():
        out.lost += 1
        out.note(f"{k}: missing")
    return out
