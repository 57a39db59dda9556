"""Replay mode (no broker): events/s of `weir.service.replay.replay` over in-memory JSON lines."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

from weir.service.replay import replay
from weir.tables.query import Query

REPLAY_BATCH = 10_000
"""Input lines per replay micro-batch (`weir replay --batch-size`; its default is 1000)."""


class _Discard(io.RawIOBase):
    """An output file that drops what is written (the rows are still encoded)."""

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:  # type: ignore[override]
        return len(b)  # type: ignore[arg-type]


def replay_seconds(build: Callable[[], Query], lines: list[bytes]) -> tuple[float, int]:
    """Seconds to replay `lines` through a fresh query from `build` (memory store), and the
    number of rows it emitted."""
    src = io.BytesIO(b"".join(lines))
    started = time.perf_counter()
    stats = replay(build(), src, _Discard(), batch_size=REPLAY_BATCH)  # type: ignore[arg-type]
    return time.perf_counter() - started, stats.output_rows
