"""The chaos suite's own broker, shared by its modules: each test SIGKILLs and restarts it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.harness import ChaosBroker
from weir.service.local import LocalStartError


@pytest.fixture(scope="package")
def chaos_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosBroker]:
    """A real local broker in a temporary folder, for the chaos tests only (never the
    session's broker, which other tests rely on staying up)."""
    broker = ChaosBroker(tmp_path_factory.mktemp("chaos-kafka"))
    try:
        broker.up()
    except LocalStartError as exc:
        broker.down()
        pytest.fail(f"the chaos broker did not start: {exc}", pytrace=False)
    yield broker
    broker.down()
