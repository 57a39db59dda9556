"""A stream-stream join (weir.agents.order_matching.match: orders inner-joined with payments
within 4 hours, 1- and 2-hour watermarks, append mode) under chaos: every matching
(order, payment) pair exactly once, with both rows' columns.
See tests/chaos/__init__.py for the scenario and WEIR_CHAOS_LONG."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import scenario
from tests.chaos.harness import ChaosBroker

pytestmark = [pytest.mark.broker, pytest.mark.asyncio, pytest.mark.timeout(scenario.TIMEOUT_S)]


async def test_join_under_chaos(
    chaos_broker: ChaosBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario.report(await scenario.run("join", chaos_broker, tmp_path), capsys)
