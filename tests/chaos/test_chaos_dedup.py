"""Dedup (weir.agents.dedup: drop_duplicates on event_id and event_ts, 15-minute watermark,
append mode) under chaos, with producer retries in the same wave and retries of the previous
wave after the watermark passed them: every distinct event exactly once.
See tests/chaos/__init__.py for the scenario and WEIR_CHAOS_LONG."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import scenario
from tests.chaos.harness import ChaosBroker

pytestmark = [pytest.mark.broker, pytest.mark.asyncio, pytest.mark.timeout(scenario.TIMEOUT_S)]


async def test_dedup_under_chaos(
    chaos_broker: ChaosBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario.report(await scenario.run("dedup", chaos_broker, tmp_path), capsys)
