"""Generated input for the pipelines (`weir produce`, tests): how events are stamped.

A pipeline module defines `generate(traffic, n)`: its first `n` input events as (topic, row)
pairs in the order they are produced, each stamped by `traffic` (the course pipelines' rows
come from weir.agents.activity and the pipeline modules). Event times follow the
production order (`rate` events per second of event time from `start_ms`); a
`late_fraction` of the events is stamped `late_by` behind (later than the pipeline's
watermark allows, so it counts as late), and a `duplicate_fraction` is produced twice, the
copy a few events later. The same seed gives the same events.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from weir.tables.timeutil import iso_utc

Row = dict[str, Any]
Event = tuple[str, Row]
"""(topic, row)."""


@dataclass
class Traffic:
    """How generated events are stamped, made late and duplicated (see the module docstring)."""

    start_ms: int
    """Event time of the first event, epoch ms."""
    rate: float = 100.0
    """Events per second of event time."""
    late_fraction: float = 0.0
    duplicate_fraction: float = 0.0
    late_by_ms: int = 3_600_000
    """How far behind a late event is stamped (more than any course watermark's delay)."""
    seed: int = 7
    rng: random.Random = field(init=False)
    late: int = field(init=False, default=0)
    """Events stamped late so far."""
    duplicates: int = field(init=False, default=0)
    """Events produced twice so far (each counted once)."""

    def __post_init__(self) -> None:
        for name in ("late_fraction", "duplicate_fraction"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, not {self.rate}")
        self.rng = random.Random(self.seed)

    def time_of(self, i: int) -> int:
        """Event time of event `i` on time (epoch ms)."""
        return self.start_ms + int(i * 1000 / self.rate)

    def events(self, n: int, make: Callable[[int, str], Event]) -> Iterator[Event]:
        """`n` events from `make(i, event_time_iso)`, with late and duplicate ones mixed in
        (duplicates come on top of the `n`)."""
        pending: list[tuple[int, int, Event]] = []  # (due index, index, copy)
        for i in range(n):
            ts = self.time_of(i)
            if self.late_fraction and i > 10 and self.rng.random() < self.late_fraction:
                ts -= self.late_by_ms
                self.late += 1
            event = make(i, iso_utc(ts))
            yield event
            if self.duplicate_fraction and self.rng.random() < self.duplicate_fraction:
                due = i + self.rng.randint(1, 20)
                heapq.heappush(pending, (due, i, (event[0], dict(event[1]))))
                self.duplicates += 1
            while pending and pending[0][0] <= i:
                yield heapq.heappop(pending)[2]
        while pending:
            yield heapq.heappop(pending)[2]
