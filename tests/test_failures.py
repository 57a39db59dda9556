"""How the worker classes a failed checkpoint (weir.service.runtime.failures): a fenced
producer is a member that lost its partition before it saw the rebalance, retried without
limit, never a batch failure that stops the worker (the chaos join under at_least_once had
a worker stop with "a batch failed 6 times, last with ProducerFenced" while two members
fenced each other until the group settled)."""

from __future__ import annotations

from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaConnectionError,
    KafkaError,
    ProducerFenced,
    UnknownTopicOrPartitionError,
)

from weir.service.runtime.failures import Failure, transient


def test_a_fenced_producer_is_retried_and_never_counts_as_an_attempt() -> None:
    failure = Failure({})
    for _ in range(10):
        failure.record(ProducerFenced())
        failure.record(InvalidProducerEpoch())
    assert (failure.attempts, failure.transient) == (0, 20)
    assert failure.backoff_s() == 10.0  # the backoff still grows to its bound


def test_other_failures_still_count() -> None:
    assert transient(ProducerFenced()) and not transient(ValueError("bad row"))
    failure = Failure({})
    failure.record(ValueError("bad row"))
    assert (failure.attempts, failure.transient) == (1, 0)
    assert transient(UnknownTopicOrPartitionError()) is UnknownTopicOrPartitionError.retriable


def _delivery_failure(cause: BaseException) -> KafkaError:
    """What aiokafka's producer raises when its sender routine dies: the cause chained twice
    (`KafkaError("Unexpected error during batch delivery")` from `KafkaError(repr(cause))`)."""
    try:
        try:
            try:
                raise cause
            except KafkaError as err:
                raise KafkaError(repr(err)) from err
        except KafkaError as exc:
            raise KafkaError("Unexpected error during batch delivery") from exc
    except KafkaError as delivery:
        return delivery


def test_a_sender_killed_by_a_lost_connection_is_the_broker_away_not_a_bad_batch() -> None:
    """Found when the broker went away during a checkpoint's coordinator lookup: the batch
    failed with "Unexpected error during batch delivery", counted against max_batch_retries
    like a bad record, so outages in a row could stop the worker."""
    failure = Failure({})
    for _ in range(10):
        failure.record(_delivery_failure(KafkaConnectionError("Connection closed")))
    assert (failure.attempts, failure.transient) == (0, 10)
    assert not transient(_delivery_failure(KafkaError("broker refused the record")))
    assert not transient(KafkaError("Unexpected error during batch delivery"))


def test_a_sink_failure_is_judged_by_itself_not_by_the_error_under_it() -> None:
    """A user's foreach_batch raising ConnectionRefusedError fails as a non-transient
    SinkFailure chained to it: retried max_batch_retries times, then the policy applies."""
    from weir.service.sinks.base import SinkFailure

    try:
        try:
            raise ConnectionRefusedError("the sink said no")
        except ConnectionRefusedError as exc:
            raise SinkFailure("foreach_batch: the sink said no") from exc
    except SinkFailure as failed:
        assert not transient(failed)
    assert transient(SinkFailure("server away", transient=True))
