"""Found, tried as a new user would: a worker on fresh topics logged aiokafka's retry warnings
(NotEnoughReplicasError on first writes, a group coordinator still being elected) as warnings
and errors. Topics it creates are waited for until their leader is in sync, and aiokafka's
routine retries are debug lines: a clean start logs no warning and no error."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import KafkaHelper
from tests.workers import run_counting_to_end

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]


async def test_a_worker_on_fresh_topics_logs_no_broker_retry_warning(
    kafka: KafkaHelper, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    src, dst = f"fresh-in-{tag}", f"fresh-out-{tag}"  # the worker creates both
    env = {
        "WEIR_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "WEIR_TEST_APP": f"fresh-{tag}",
        "WEIR_TEST_INPUT": src,
        "WEIR_TEST_OUTPUT": dst,
        "WEIR_TEST_TRIGGER": "available_now",
        "WEIR_STATE_DIR": str(tmp_path / "state"),
    }
    log = tmp_path / "worker.log"
    started = time.monotonic()
    await run_counting_to_end(env, log)  # creates the topics, finds them empty, stops
    await kafka.produce(src, [{"k": f"k{i % 3}", "v": i} for i in range(30)])
    await run_counting_to_end(env, tmp_path / "again.log")
    out = await kafka.read_json(dst, idle_s=1)
    assert {r["k"]: r["n"] for r in out} == {"k0": 10, "k1": 10, "k2": 10}
    for path in (log, tmp_path / "again.log"):
        text = path.read_text()
        assert "NotEnoughReplicas" not in text, text[-3000:]
        assert " WARNING " not in text and " ERROR " not in text, text[-3000:]
    assert time.monotonic() - started < 120
