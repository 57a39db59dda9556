"""What goes wrong in a worker, and how it is retried.

A failure Kafka may get over without anything changing (the broker unreachable, a leader
moving, a request timing out), or a sink's server unreachable, is `transient` and retried
without limit; any other failure of
a micro-batch is retried `max_batch_retries` times, the same records each time (`Failure`
remembers the batch's range), then `on_batch_failure` applies.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFenced,
)

from weir.service.sources.base import TopicRecords
from weir.tables.operator import ErrorStage
from weir.tables.state.store import Store

log = logging.getLogger("weir.worker")

MAX_BACKOFF_S = 10.0


class DataLossError(RuntimeError):
    """Committed offsets point before the start of the log (records were deleted by retention)
    and `fail_on_data_loss` is set."""


class StateLimitError(RuntimeError):
    """A task holds more state keys than `max_state_rows`: the worker stops with this
    one-line message rather than grow until it runs out of memory or disk."""


def check_state_limit(name: str, partition: int, store: Store, limit: int | None) -> None:
    """Raise StateLimitError when the task's `store` holds more than `limit` state keys
    (exact; a store is asked only when there is a limit)."""
    if limit is None:
        return
    rows = store.rows()
    if rows > limit:
        raise StateLimitError(
            f"{name}[{partition}]: the state holds {rows:,} keys, over max_state_rows="
            f"{limit:,}; bound it with a watermark (with_watermark) or raise "
            "WEIR_MAX_STATE_ROWS"
        )


class BatchFailedError(RuntimeError):
    """A micro-batch failed more than `max_batch_retries` times and `on_batch_failure` is
    "fail": the worker stops with this one-line message."""


class Failure:
    """A task's batch that failed: its input range (the retry runs exactly it) and attempts."""

    def __init__(self, recs: TopicRecords) -> None:
        self.last_offsets = {topic: rs[-1].offset for topic, rs in recs.items()}
        self.attempts = 0
        """Failures that count against `max_batch_retries`."""
        self.transient = 0
        """Failures Kafka may get over (broker away, leader moving): retried without limit."""
        self.error = ""
        self.stage: ErrorStage = "batch"

    def record(self, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        self.stage = getattr(exc, "stage", "batch")
        if transient(exc):
            self.transient += 1
        else:
            self.attempts += 1

    def backoff_s(self) -> float:
        n = self.attempts + self.transient
        return float(min(MAX_BACKOFF_S, 0.25 * 2**n))

    def same_batch(self, recs: TopicRecords) -> TopicRecords:
        """The records of `recs` within the failed batch's range."""
        out = {}
        for topic, rs in recs.items():
            last = self.last_offsets.get(topic)
            if last is not None:
                taken = [r for r in rs if r.offset <= last]
                if taken:
                    out[topic] = taken
        return out


def transient(exc: BaseException) -> bool:
    """True for failures that retrying may get over without anything changing (the broker
    unreachable, a leader moving, a request timing out), and for a fenced producer: another
    member took the partition while this one had not yet seen the rebalance (after a broker
    outage, say); the group's next rebalance settles it, and the fencing keeps the output
    exact meanwhile, so it never counts against max_batch_retries.

    aiokafka's producer, when a lost connection kills its sender, fails the batch with a
    plain `KafkaError` chained to the connection error: such a wrapper is judged by its
    cause. Any other exception is judged by itself (a sink's `SinkFailure` says whether it
    is transient, whatever the user's error under it)."""
    for _ in range(8):
        if type(exc) is not KafkaError or exc.__cause__ is None:
            break
        exc = exc.__cause__
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
        return True
    if isinstance(exc, ProducerFenced | InvalidProducerEpoch):
        return True
    if getattr(exc, "transient", False) is True:  # a sink's server unreachable (SinkFailure)
        return True
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    return isinstance(exc, TimeoutError | ConnectionError)


async def stop_client(client: AIOKafkaConsumer | AIOKafkaProducer | AIOKafkaAdminClient) -> None:
    """Stop a Kafka client whatever state its connections are in. A CancelledError from
    inside the client (its own tasks torn down by a lost broker) is not ours and is dropped;
    a cancellation of the calling task still propagates."""
    try:
        if isinstance(client, AIOKafkaAdminClient):
            await client.close()
        else:
            await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception as exc:
        log.debug("stopping a Kafka client failed: %r", exc)
