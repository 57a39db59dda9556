"""Records go into producer record batches in order, none lost or repeated, whichever way
they are appended (aiokafka's record builder directly, or its public `append`)."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatch

from weir.service.runtime.checkpoint import _batches


class _PublicOnly:
    """A batch seen only through aiokafka's public `append` (the fallback path)."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch

    def append(self, **kw: Any) -> Any:
        return self.batch.append(**kw)


def _records() -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    recs: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    for i in range(3000):
        key = None if i % 7 == 0 else b"k%d" % i
        value = None if i % 11 == 0 else b"v" * (i % 500) + b"%d" % i
        headers = [("weir.error", b"e%d" % i)] if i % 5 == 0 else []
        recs.append((key, value, headers))
    return recs


@pytest.mark.asyncio
@pytest.mark.parametrize("public", [False, True], ids=["builder", "public-append"])
async def test_records_fill_batches_in_order_exactly_once(public: bool) -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", max_batch_size=16_384)
    recs = _records()
    if public:
        create = producer.create_batch
        producer.create_batch = lambda: _PublicOnly(create())  # type: ignore[method-assign]
    got = []
    counts = []
    for batch, n in _batches(producer, recs):
        built = (batch.batch if public else batch)._build()
        assert len(built) <= 16_384 + 1024  # one record may pass the size a little
        decoded = list(DefaultRecordBatch(bytes(built)))
        assert len(decoded) == n
        counts.append(n)
        got += [(r.key, r.value, [(k, bytes(v)) for k, v in r.headers]) for r in decoded]
    assert got == recs
    assert len(counts) > 10 and sum(counts) == len(recs)
