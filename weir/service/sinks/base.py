"""The Sink contract: how a micro-batch's output rows leave the query, and what the
checkpoint can promise about them.

A sink declares its delivery:

* "transactional": it adds records to the checkpoint's Kafka transaction, so its output
  commits with the input offsets and the state, exactly once;
* "idempotent": it writes before the transaction commits, keyed by what it writes (an upsert
  on the row's key) or by the batch identity, so a batch written again after a crash leaves
  the same result;
* "at_least_once": it writes before the transaction commits; a batch retried after a crash is
  written again (a foreach-batch function that does not dedupe on the batch id).

A batch retried after a failure has the same identity and the same input records. A sink
that raises fails the checkpoint (`SinkFailure`): nothing commits, the batch is retried, and
after `max_batch_retries` `on_batch_failure` decides.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from weir.service.dead_letters import SourcePosition
from weir.service.sources.base import SourceRecord
from weir.tables.operator import ErrorStage, Row

Delivery = Literal["transactional", "idempotent", "at_least_once"]


class SinkFailure(RuntimeError):
    """A sink (or a foreach-batch function) raised: the batch is retried, then the policy.
    A `transient` failure (the sink's server unreachable) is retried without limit, as Kafka
    being away is: the batch is written once the server is back, nothing lost or doubled."""

    stage: ErrorStage = "sink"

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class BatchIdentity:
    """Which micro-batch this is: the same for a batch retried after a crash."""

    query: str
    """The query (the agent's consumer group id, or the replayed pipeline)."""
    task: int
    """The task: its input partition."""
    batch_id: int
    """The task's batch number, from 0, resumed from its state after a restart."""
    inputs: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Per input topic, the positions the batch covers: (first, after last)."""


class BatchId(int):
    """The batch id a foreach-batch function receives: an int, the task's batch number as
    Spark's `batch_id` is a number, that also names its query and task.

    A query runs as one task per input partition, each numbering its batches from 0, so the
    number alone repeats across partitions. The idempotence key is `key` ("<query>/<task>/
    <n>"), which `str()` and f-strings give too, so a file named f"part-{batch_id}" or a
    "written?" lookup by `str(batch_id)` is unique for the query; a table keyed by the number
    must add `batch_id.task`. A batch run again after a crash has the same id and the same
    input records (weir.service.runtime.plans).
    """

    query: str
    task: int

    def __new__(cls, identity: BatchIdentity) -> BatchId:
        obj = super().__new__(cls, identity.batch_id)
        obj.query = identity.query
        obj.task = identity.task
        return obj

    @property
    def key(self) -> str:
        """Unique for the query: "<query>/<task>/<batch number>"."""
        return f"{self.query}/{self.task}/{int(self)}"

    def __str__(self) -> str:
        return self.key

    def __format__(self, spec: str) -> str:
        return format(self.key, spec) if not spec else format(int(self), spec)

    def __repr__(self) -> str:
        return f"BatchId({self.key!r})"


class KafkaRecords(Protocol):
    """The records of the checkpoint's Kafka transaction (`runtime.checkpoint.Outgoing`)."""

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Add a record (partitioned by key hash unless `partition` is given)."""
        ...

    def add_all(
        self,
        topic: str,
        pairs: Iterable[tuple[bytes | None, bytes | None]],
        partition: int | None = None,
    ) -> None:
        """`add` each (key, value) of `pairs`, without headers, in their order."""
        ...

    def dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        error: str,
        stage: ErrorStage,
        source: SourcePosition | None,
    ) -> None:
        """Add a dead letter for a row the sink cannot write (weir.service.dead_letters)."""
        ...


@dataclass
class SinkBatch:
    """What a sink is given for one micro-batch."""

    identity: BatchIdentity
    rows: list[Row]
    """The output rows, as the engine holds them (times as epoch ms)."""
    timestamp_columns: frozenset[str]
    """The columns of `rows` that hold times (rendered as ISO-8601 UTC for users)."""
    origins: Callable[[], list[SourceRecord | None]]
    """Per row, the input record it comes from (only rows of a stateless query have one);
    computed on demand."""
    transaction: KafkaRecords | None = None
    """The checkpoint's Kafka records (None where there is no Kafka, as in replay)."""


class Sink(ABC):
    """A destination for a query's output rows; see the module docstring for the contract."""

    delivery: Delivery = "at_least_once"

    @property
    @abstractmethod
    def description(self) -> str:
        """One line naming the sink, for progress reports."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare to write (called before the first batch; may connect)."""

    @abstractmethod
    async def write(self, batch: SinkBatch) -> None:
        """Write one batch's rows (none: not called). Raise to fail the checkpoint."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what `open` or `write` took."""
