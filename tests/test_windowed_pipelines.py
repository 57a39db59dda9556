"""The windowed pipelines in agents/: exact rows for hand-made inputs, and for a generated
out-of-order stream, the output checked against DuckDB SQL over the same input (minus the rows
the watermark semantics drop as late, which the SQL works out by itself).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from tests.events import ev, win
from weir.agents import event_summary, sliding_window, tumbling_window, watermarked_append
from weir.tables.operator import Row
from weir.tables.query import Query
from weir.tables.state.memory import MemoryStore
from weir.tables.state.store import Store

MIN = 60_000


def run(query: Query, store: Store, batches: list[list[Row]]) -> list[list[Row]]:
    task = query.task(store)
    outs = []
    for batch in batches:
        result = task.run_batch({query.inputs[0]: batch} if batch else {}, 0)
        task.commit(result)
        outs.append(result.rows)
    return outs


# -- exact rows ---------------------------------------------------------------------------


def test_tumbling_window_pipeline(store: Store) -> None:
    assert tumbling_window.query.output_mode == "update"
    outs = run(
        tumbling_window.query,
        store,
        [
            [ev("10:02", amount=10.0), ev("10:04", "buy", amount=30.0), ev("10:09", amount=20.0)],
            [ev("10:16", amount=5.0)],  # W = 10:04
            [],  # W = 10:11 closes [10:00, 10:10)
            [ev("10:08", amount=99.0), ev("10:19", "buy", amount=7.0)],  # 10:08 is late
        ],
    )
    agg = ("event_count", "total_amount", "avg_amount")
    assert outs == [
        [
            {
                "action": "buy",
                **win("10:00", "10:10"),
                **dict(zip(agg, (1, 30.0, 30.0), strict=True)),
            },
            {
                "action": "click",
                **win("10:00", "10:10"),
                **dict(zip(agg, (2, 30.0, 15.0), strict=True)),
            },
        ],
        [
            {
                "action": "click",
                **win("10:10", "10:20"),
                **dict(zip(agg, (1, 5.0, 5.0), strict=True)),
            }
        ],
        [],
        [{"action": "buy", **win("10:10", "10:20"), **dict(zip(agg, (1, 7.0, 7.0), strict=True))}],
    ]


def test_sliding_window_pipeline(store: Store) -> None:
    outs = run(
        sliding_window.query,
        store,
        [
            [ev("10:07", user="a", amount=1.0), ev("10:03", user="b", amount=2.0)],
            [ev("10:12", user="a", amount=4.0)],
        ],
    )

    def r(user: str, start: str, end: str, n: int, total: float) -> Row:
        return {"user_id": user, **win(start, end), "event_count": n, "total_amount": total}

    assert outs == [
        [
            r("b", "09:55", "10:05", 1, 2.0),
            r("a", "10:00", "10:10", 1, 1.0),
            r("b", "10:00", "10:10", 1, 2.0),
            r("a", "10:05", "10:15", 1, 1.0),
        ],
        [r("a", "10:05", "10:15", 2, 5.0), r("a", "10:10", "10:20", 1, 4.0)],
    ]


def test_watermarked_append_pipeline(store: Store) -> None:
    assert watermarked_append.query.output_mode == "append"
    outs = run(
        watermarked_append.query,
        store,
        [
            [ev("10:01"), ev("10:03"), ev("10:04", user="u2")],
            [ev("10:16")],  # W = 09:54
            [],  # W = 10:06: closes [10:00, 10:05)
            [ev("10:02"), ev("10:07")],  # 10:02 late (L = 10:06); 10:07 still open
            [ev("10:30")],
            [],  # W = 10:20
        ],
    )
    assert outs == [
        [],
        [],
        [
            {"user_id": "u1", **win("10:00", "10:05"), "count": 2},
            {"user_id": "u2", **win("10:00", "10:05"), "count": 1},
        ],
        [],
        [],
        [
            {"user_id": "u1", **win("10:05", "10:10"), "count": 1},
            {"user_id": "u1", **win("10:15", "10:20"), "count": 1},
        ],
    ]


def test_event_summary_pipeline(store: Store) -> None:
    users = [f"user-{i % 7}" for i in range(40)]
    batch = [ev(f"10:0{i % 10}", user=u, amount=2.5) for i, u in enumerate(users)]
    outs = run(
        event_summary.query, store, [batch, [ev("10:15", user="x")], [], [ev("10:01", user="y")]]
    )
    assert outs[0] == [
        {
            "action": "click",
            **win("10:00", "10:10"),
            "event_count": 40,
            "total_amount": 100.0,
            "distinct_users": 7,
        }
    ]
    assert outs[1] == [
        {
            "action": "click",
            **win("10:10", "10:20"),
            "event_count": 1,
            "total_amount": 1.0,
            "distinct_users": 1,
        }
    ]
    assert outs[2:] == [[], []]  # W = 10:12 closed [10:00, 10:10): 10:01 is then late


# -- against DuckDB ---------------------------------------------------------------------

BASE = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def generate(seed: int, n: int) -> list[list[Row]]:
    """Events over ~2 hours arriving out of order (delays up to ~25 min), in random batches."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        t = BASE + timedelta(seconds=rng.randrange(0, 2 * 3600))
        arrival = t + timedelta(seconds=min(1500, int(rng.expovariate(1 / 240))))
        events.append(
            (
                arrival,
                {
                    "event_id": f"e{i}",
                    "user_id": f"user-{rng.randrange(40)}",
                    "action": rng.choice(["click", "view", "cart", "buy"]),
                    "amount": rng.randrange(0, 100_000) / 100,
                    "event_time": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            )
        )
        if rng.random() < 0.02:  # a producer retry: the same event again, later
            events.append((arrival + timedelta(seconds=rng.randrange(600)), dict(events[-1][1])))
    events.sort(key=lambda e: e[0])
    rows = [e[1] for e in events]
    batches: list[list[Row]] = []
    i = 0
    while i < len(rows):
        size = rng.choice([1, 5, 20, 50, 200])
        batches.append(rows[i : i + size])
        i += size
    return batches


def run_recorded(
    query: Query, batches: list[list[Row]]
) -> tuple[list[list[Row]], list[tuple[int, Row]], int]:
    """Run with a no-data batch whenever the engine asks; return the outputs, every input
    row with the sequence number of the batch it ran in, and the number of late rows."""
    task = query.task(MemoryStore())
    outs: list[list[Row]] = []
    inputs: list[tuple[int, Row]] = []
    late = 0
    todo = [[dict(r) for r in b] for b in batches]
    seq = 0
    while todo or task.wants_no_data_batch():
        batch = todo.pop(0) if todo else []
        inputs.extend((seq, dict(r)) for r in batch)
        result = task.run_batch({query.inputs[0]: batch} if batch else {}, 0)
        task.commit(result)
        outs.append(result.rows)
        late += len(result.late_rows)
        seq += 1
        if todo and task.wants_no_data_batch():
            result = task.run_batch({}, 0)
            task.commit(result)
            outs.append(result.rows)
            seq += 1
    return outs, inputs, late


def duckdb_expected(
    inputs: list[tuple[int, Row]],
    key: str,
    size_min: int,
    slide_min: int,
    delay_min: int,
    aggs: str,
    append: bool,
) -> tuple[dict[tuple[Any, ...], tuple[Any, ...]], int]:
    """The windowed aggregate in SQL; the late filter from the watermark definition:
    a row of batch b is dropped from a window ending at or before
    L(b) = max(event time of batches < b - 1) - delay."""
    con = duckdb.connect()
    table = pa.table(
        {
            "rid": list(range(len(inputs))),
            "batch": [b for b, _r in inputs],
            "ts": [
                int(datetime.fromisoformat(r["event_time"]).timestamp() * 1000) for _b, r in inputs
            ],
            "user_id": [r["user_id"] for _b, r in inputs],
            "action": [r["action"] for _b, r in inputs],
            "amount": pa.array([r["amount"] for _b, r in inputs], pa.float64()),
        }
    )
    con.register("ev", table)
    size, slide, delay = size_min * MIN, slide_min * MIN, delay_min * MIN
    base = f"""
        WITH batch_max AS (
            SELECT batch, max(ts) AS mx FROM ev GROUP BY batch
        ), late_wms AS (
            SELECT b.batch, (SELECT max(mx) FROM batch_max p WHERE p.batch < b.batch - 1)
                            - {delay} AS late_wm
            FROM batch_max b
        ), marked AS (
            SELECT ev.*, late_wm FROM ev JOIN late_wms USING (batch)
        ), windowed AS (
            SELECT m.*, (ts - ts % {slide}) - i * {slide} AS ws
            FROM marked m CROSS JOIN range(0, {-(-size // slide)}) AS t(i)
        ), assigned AS (
            SELECT *, ws + {size} AS we, (late_wm IS NOT NULL AND ws + {size} <= late_wm) AS late
            FROM windowed WHERE ws + {size} > ts
        )"""
    final_w = f"(SELECT max(ts) FROM ev) - {delay}"
    having = f"HAVING ws + {size} <= {final_w}" if append else ""
    rows = con.execute(
        f"""{base}
        SELECT {key}, ws, ws + {size}, {aggs}
        FROM assigned WHERE NOT late
        GROUP BY {key}, ws {having}
        """
    ).fetchall()
    late = con.execute(f"{base} SELECT count(DISTINCT rid) FROM assigned WHERE late").fetchone()
    assert late is not None
    return {tuple(r[:3]): tuple(r[3:]) for r in rows}, int(late[0])


def close(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(
        x == pytest.approx(y, rel=1e-9, abs=1e-9) for x, y in zip(a, b, strict=True)
    )


PIPELINES = [
    # module, stream attribute, key, size, slide, delay, output columns, SQL aggregates
    (
        tumbling_window,
        "tumbling",
        "action",
        10,
        10,
        5,
        ("event_count", "total_amount", "avg_amount"),
        "count(*), sum(amount), avg(amount)",
    ),
    (
        sliding_window,
        "sliding",
        "user_id",
        10,
        5,
        5,
        ("event_count", "total_amount"),
        "count(*), sum(amount)",
    ),
    (
        watermarked_append,
        "windowed_with_watermark",
        "user_id",
        5,
        5,
        10,
        ("count",),
        "count(*)",
    ),
]


@pytest.mark.parametrize("spec", PIPELINES, ids=lambda s: s[0].__name__.split(".")[-1])
@pytest.mark.parametrize("seed", [1, 2])
def test_pipelines_match_duckdb(spec: tuple[Any, ...], seed: int) -> None:
    module, attr, key, size, slide, delay, cols, sql_aggs = spec
    batches = generate(seed, 2500)
    stream = getattr(module, attr)

    # append: every closed window exactly once, with the SQL's value
    outs, inputs, late = run_recorded(stream.query("append"), batches)
    emitted = [r for out in outs for r in out]
    got = {(r[key], r["window_start"], r["window_end"]): tuple(r[c] for c in cols) for r in emitted}
    assert len(got) == len(emitted), "a window was emitted twice"
    expected, sql_late = duckdb_expected(inputs, key, size, slide, delay, sql_aggs, append=True)
    assert late == sql_late > 0  # the generated stream does exercise late rows
    assert got.keys() == expected.keys()
    assert all(close(got[k], expected[k]) for k in expected)

    # the module's own mode: in update mode, the last value emitted per window
    outs, inputs, late = run_recorded(module.query, batches)
    last = {}
    for out in outs:
        for r in out:
            last[(r[key], r["window_start"], r["window_end"])] = tuple(r[c] for c in cols)
    expected, sql_late = duckdb_expected(
        inputs, key, size, slide, delay, sql_aggs, append=module.query.output_mode == "append"
    )
    assert late == sql_late
    assert last.keys() == expected.keys()
    assert all(close(last[k], expected[k]) for k in expected)


def test_event_summary_matches_duckdb_with_approximate_distinct_users() -> None:
    batches = generate(3, 2500)
    outs, inputs, _late = run_recorded(event_summary.summary.query("append"), batches)
    expected, _ = duckdb_expected(
        inputs, "action", 10, 10, 3, "count(*), sum(amount), count(DISTINCT user_id)", True
    )
    got = {(r["action"], r["window_start"], r["window_end"]): r for out in outs for r in out}
    assert got.keys() == expected.keys()
    for k, (n, total, distinct) in expected.items():
        r = got[k]
        assert r["event_count"] == n
        assert r["total_amount"] == pytest.approx(total)
        assert abs(r["distinct_users"] - distinct) <= max(1, 0.05 * distinct)
