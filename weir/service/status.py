"""What a running worker reports about itself: the interface `weir.service.http` serves.

The runtime implements it (`weir.service.runtime.worker.Worker`); the HTTP endpoints only read
it, so serving never changes what the worker does, and the endpoints can be tested against
any implementation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

MAX_PROGRESS_RECORDS = 100
"""How many progress records an agent keeps (the most `progress(n)` returns)."""


class Status(Protocol):
    """A worker's view of itself, read from other tasks of its event loop."""

    def progress(self, n: int) -> dict[str, Any]:
        """`{"queries": {name: {"id", "runId", "name", "status", "last_progress",
        "recent_progress", "partitions"}}}`: per query (a user's agent, its internal stages
        included), its ids, Spark's `status` (message, isDataAvailable, isTriggerActive), the
        last progress record (None before any; see weir.service.runtime.progress), the last
        `n` records (oldest first, at most `MAX_PROGRESS_RECORDS`) and the input partitions
        its main stage holds tasks for."""
        ...

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """(ready, one line of state per agent); see `agent_state`."""
        ...


def agent_state(assigned: Iterable[int] | None, open_tasks: Iterable[int]) -> str:
    """One agent's readiness, from the partitions its consumer is assigned (None before the
    consumer started) and those whose task is open (state restored): "ready" when every
    assigned partition has its task. An agent with no partitions (more replicas than input
    partitions) is not ready: an idle standby, which Kubernetes shows as such."""
    if assigned is None:
        return "not started"
    wanted = set(assigned)
    if not wanted:
        return "no assignment"
    missing = wanted - set(open_tasks)
    if missing:
        return f"restoring partitions {sorted(missing)}"
    return "ready"


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A progress record without its internal keys (those starting with "_", at any depth)."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        if k.startswith("_"):
            continue
        if isinstance(v, list):
            v = [public(x) if isinstance(x, dict) else x for x in v]
        elif isinstance(v, dict):
            v = public(v)
        out[k] = v
    return out
