"""A tumbling-window count (weir.agents.tumbling_window: 10-minute windows per action, count,
sum and average, 5-minute watermark, update mode) under chaos: per window and action the
counts only grow, and the last row holds the recomputed count, sum and average.
See tests/chaos/__init__.py for the scenario and WEIR_CHAOS_LONG."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import scenario
from tests.chaos.harness import ChaosBroker

pytestmark = [pytest.mark.broker, pytest.mark.asyncio, pytest.mark.timeout(scenario.TIMEOUT_S)]


async def test_tumbling_under_chaos(
    chaos_broker: ChaosBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario.report(await scenario.run("tumbling", chaos_broker, tmp_path), capsys)
