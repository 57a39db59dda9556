"""The worker's wait over its agents' runs, without a broker: a stop request that arrives as
the runs end, and a run that fails."""

from __future__ import annotations

import asyncio

import pytest

from tests.test_http import make_app
from weir.service.runtime.worker import Worker


def idle_worker() -> Worker:
    return Worker(make_app(), bootstrap="127.0.0.1:1")


@pytest.mark.asyncio
async def test_a_stop_request_that_arrives_as_every_run_ends_is_not_an_error() -> None:
    # The chaos run found it: each run returned on the stop event in the same loop tick as the
    # stop itself, and the wait for the batches in flight was given no runs ("Set of
    # Tasks/Futures is empty").
    worker = idle_worker()
    ended: list[int] = []

    async def run(i: int) -> None:
        await worker.stop_event.wait()
        ended.append(i)

    runs = [asyncio.create_task(run(i)) for i in range(3)]
    supervise = asyncio.create_task(worker._supervise(runs))
    await asyncio.sleep(0)
    worker.stop_event.set()
    await asyncio.wait_for(supervise, 5)
    assert sorted(ended) == [0, 1, 2]


@pytest.mark.asyncio
async def test_a_failed_run_stops_the_others_and_its_error_is_raised() -> None:
    worker = idle_worker()

    async def fails() -> None:
        raise RuntimeError("sink refused")

    async def waits() -> None:
        await worker.stop_event.wait()

    runs = [asyncio.create_task(waits()), asyncio.create_task(fails())]
    with pytest.raises(RuntimeError, match="sink refused"):
        await asyncio.wait_for(worker._supervise(runs), 5)
    assert worker.stop_event.is_set()
    await asyncio.wait_for(runs[0], 5)
