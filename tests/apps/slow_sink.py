"""A copy of the input into a foreach-batch writer that is slow while a flag file exists, for
the backpressure test: each batch's ids go to one file named by its batch identity.

WEIR_TEST_INPUT names the topic, WEIR_TEST_APP the app, WEIR_TEST_BATCH_DIR the folder,
WEIR_TEST_SLOW_FLAG the flag file (each batch sleeps WEIR_TEST_SLOW_S seconds while it exists);
the worker stops once the input is processed (available-now). With WEIR_TEST_ASYNC=1 the
writer is a coroutine that awaits its pause (the event loop stays free) and touches
WEIR_TEST_BATCH_DIR/writing first. WEIR_* settings apply.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import orjson

from weir.service.app import App, Trigger
from weir.tables.query import Query
from weir.tables.stream import Stream

app = App(os.environ.get("WEIR_TEST_APP", "slow-sink"))
_in = app.topic(os.environ.get("WEIR_TEST_INPUT", "slow-sink-in"))
_dir = Path(os.environ.get("WEIR_TEST_BATCH_DIR", "batches"))
_flag = Path(os.environ.get("WEIR_TEST_SLOW_FLAG", "slow"))
_pause = float(os.environ.get("WEIR_TEST_SLOW_S", "0.5"))


def slow_write(rows: list[dict[str, Any]], batch_id: Any) -> None:
    """Write the batch's ids to its own file; first sleep while the flag file exists."""
    if _flag.exists():
        time.sleep(_pause)
    _dir.mkdir(parents=True, exist_ok=True)
    (_dir / (str(batch_id).replace("/", "_") + ".json")).write_bytes(
        orjson.dumps([r["id"] for r in rows])
    )


async def slow_write_async(rows: list[dict[str, Any]], batch_id: Any) -> None:
    """`slow_write`, awaiting its pause."""
    _dir.mkdir(parents=True, exist_ok=True)
    (_dir / "writing").touch()
    if _flag.exists():
        await asyncio.sleep(_pause)
    (_dir / (str(batch_id).replace("/", "_") + ".json")).write_bytes(
        orjson.dumps([r["id"] for r in rows])
    )


_writer = slow_write_async if os.environ.get("WEIR_TEST_ASYNC") == "1" else slow_write


@app.agent(_in, foreach_batch=_writer, name="copy", trigger=Trigger.available_now())
def copy(events: Stream) -> Query:
    """Every event, unchanged."""
    return events.query("append")
