"""The Source contract: where a query's input records come from and how to find them again.

A source is read in micro-batches. Each record has a position (`offset`) in its partition of
its topic; the position after a batch is what a checkpoint stores, and seeking to a stored
position and reading again gives the same records, so a retried batch is the same batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, overload

TopicRecords = Mapping[str, Sequence["SourceRecord"]]
"""One task's records of a micro-batch: per topic, in position order."""
Records = dict[int, TopicRecords]
"""A micro-batch: per partition, per topic, the records in position order."""
POSITION_HEADERS = ("file", "row")
"""Headers a file source sets on its records to say where in its input each one was (a
dead letter repeats them as `source.file`, `source.row`)."""


class SourceRecord(Protocol):
    """One input record. aiokafka's `ConsumerRecord` is one; file sources make their own."""

    @property
    def topic(self) -> str:
        """The topic (file sources: the input name) it was read from."""
        ...

    @property
    def partition(self) -> int:
        """Its partition of the topic."""
        ...

    @property
    def offset(self) -> int:
        """Its position in the partition (files: the line number)."""
        ...

    @property
    def timestamp(self) -> int:
        """When it was written, epoch ms (-1 when unknown)."""
        ...

    @property
    def key(self) -> bytes | None:
        """Its key bytes, if any."""
        ...

    @property
    def value(self) -> bytes | None:
        """Its value bytes (what the driver decodes)."""
        ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]:
        """Its headers."""
        ...


class Source(ABC):
    """An input a query reads in micro-batches.

    Contract: `next_batch` returns records in position order per partition, each at most once
    between seeks; after `seek(topic, partition, p)` the next records of that partition start
    at position `p`. A bounded source ends (`next_batch` returns nothing and `exhausted` is
    true); an unbounded one may return nothing for a while. Failures to reach the source
    raise; the caller retries or stops.
    """

    bounded: bool = False
    """True when the source ends (a file); False for a stream (Kafka)."""

    @property
    @abstractmethod
    def description(self) -> str:
        """One line naming the source, for progress reports (`kafka[topic]`)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect or open; called once before the first batch."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what `start` took; the source is not read again."""

    @abstractmethod
    def partitions(self) -> set[int] | None:
        """The partitions this reader holds now (None before `start`)."""

    @abstractmethod
    async def next_batch(self, max_records: int, wait_ms: int) -> Records:
        """Up to `max_records` records, waiting at most `wait_ms` for the first ones."""

    @abstractmethod
    async def position(self, topic: str, partition: int) -> int:
        """The position of the next record `next_batch` returns for `partition` of `topic`
        (what a checkpoint stores once the records before it are processed)."""

    @abstractmethod
    def seek(self, topic: str, partition: int, position: int) -> None:
        """Read `partition` of `topic` from `position` on."""

    @property
    def exhausted(self) -> bool:
        """A bounded source that has returned its last record."""
        return False

    def checkpoint_state(self, first: int, end: int) -> dict[bytes, Any]:
        """What must be kept with the checkpoint of a batch covering positions [first, end) of
        partition 0, beyond the end position, for `seek` to mean the same records on another
        machine (a file source: the files it took there). Keys are the source's own; values
        are JSON-able. Most sources need nothing."""
        return {}

    def restore_state(self, state: Mapping[bytes, Any]) -> None:  # noqa: B027 - optional hook
        """Take back what `checkpoint_state` gave, as the checkpoint has it (all committed
        batches' entries), before the first `seek` after a restart."""


class LazyRecords(Sequence[SourceRecord]):
    """A batch's records made on demand from its values, offsets `first`, `first + 1`, ...;
    `values()` gives the values (what the driver decodes) without making a record each, so
    reading costs nothing per record. Subclasses make record `i` in `record`."""

    __slots__ = ("first", "lines", "topic")

    def __init__(self, topic: str, values: list[bytes], first: int) -> None:
        self.topic = topic
        self.lines = values
        self.first = first
        """The offset of `lines[0]`."""

    @abstractmethod
    def record(self, i: int) -> SourceRecord:
        """Record number `i` of the batch (0 <= i < len)."""

    def __len__(self) -> int:
        return len(self.lines)

    @overload
    def __getitem__(self, i: int) -> SourceRecord: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[SourceRecord]: ...

    def __getitem__(self, i: int | slice) -> SourceRecord | Sequence[SourceRecord]:
        if isinstance(i, slice):
            return [self.record(j) for j in range(*i.indices(len(self.lines)))]
        if i < 0:
            i += len(self.lines)
        if not 0 <= i < len(self.lines):
            raise IndexError("batch index out of range")
        return self.record(i)

    def values(self) -> list[bytes]:
        """Every record's value, without making records."""
        return self.lines


def values_of(records: Sequence[SourceRecord]) -> list[bytes | None]:
    """The records' values, in order; a batch type that holds its values as a list (files)
    gives them without making record objects."""
    fast = getattr(records, "values", None)
    if fast is not None:
        values: list[bytes | None] = fast()
        return values
    return [r.value for r in records]
