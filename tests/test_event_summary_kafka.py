"""Course exercise 1 end to end on the real broker: `user_events` -> the 10-minute summary per
action -> Parquet in update mode. The latest row per (action, window) read back from the table
equals the summary recomputed from the input; a batch never takes more than 5,000 records;
`inputRowsPerSecond` is printed after each micro-batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import KafkaHelper
from weir.agents import event_summary
from weir.service.app import Trigger
from weir.service.runtime.worker import Worker
from weir.service.sinks.parquet import read_parquet_latest

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]


async def test_exercise_1_to_parquet(
    kafka: KafkaHelper, state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = await kafka.topic("user-events")
    actions = ["click", "view", "purchase"]
    rows = [
        {
            "event_id": f"e{i}",
            "user_id": f"u{i % 7}",
            "action": actions[i % 3],
            "amount": float(i % 10),
            "event_time": f"2024-05-01T10:{(i // 500) % 60:02d}:{i % 60:02d}Z",
        }
        for i in range(12_000)
    ]
    rows.append({"event_id": "bad", "user_id": "u1", "action": "click", "amount": "12.5"})
    await kafka.produce(topic, rows)
    path = tmp_path / "event_summary"
    app = event_summary.build_app(
        f"ex1-{topic[-6:]}",
        topic,
        path,
        state_dir=state_dir,
        bootstrap_servers=kafka.bootstrap,
    )
    app.agents["summary"].trigger = Trigger.available_now()
    await Worker(app).run()

    want: dict[tuple[str, str], tuple[int, float, set[str]]] = {}
    for r in rows[:-1]:
        minute = int(r["event_time"][14:16])
        start = f"2024-05-01 10:{minute // 10 * 10:02d}:00+00:00"
        n, total, users = want.get((r["action"], start), (0, 0.0, set()))
        users.add(r["user_id"])
        want[(r["action"], start)] = (n + 1, total + r["amount"], users)
    table = read_parquet_latest(path, event_summary.KEY)
    got = {
        (r["action"], str(r["window_start"])): (
            r["event_count"],
            r["total_amount"],
            r["distinct_users"],
        )
        for r in table.to_pylist()
    }
    assert got == {k: (n, t, len(u)) for k, (n, t, u) in want.items()}
    printed = [
        line for line in capsys.readouterr().out.splitlines() if "inputRowsPerSecond" in line
    ]
    counts = [int(line.split(": ")[1].split(" rows")[0]) for line in printed]
    assert sum(counts) == len(rows) and max(counts) <= 5000 and len(counts) >= 3
    dead = await kafka.read(app.agents["summary"].dead_letter_topic, expect=1)
    assert "amount: expected double" in dict(dead[0].headers)["error"].decode()
