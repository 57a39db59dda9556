"""HyperLogLog: accuracy, merging, JSON state, sparse/dense representations."""

from __future__ import annotations

import orjson
import pytest

from weir.tables.ops.hll import HyperLogLog, hash64, precision_for


def _relative_error(estimate: int, exact: int) -> float:
    return abs(estimate - exact) / exact


def test_default_precision_bounds_the_error_at_five_percent() -> None:
    assert precision_for(0.05) == 12  # standard error 1.04 / 64 = 1.6%: 5% is ~3 sigma
    assert precision_for(0.01) > precision_for(0.05) > precision_for(0.2)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="rsd"):
            precision_for(bad)


def test_error_within_five_percent_on_100k_distinct_values() -> None:
    hll = HyperLogLog.with_rsd(0.05)
    hll.update(f"user-{i}" for i in range(100_000))
    assert _relative_error(hll.cardinality(), 100_000) <= 0.05


def test_duplicates_and_nulls_do_not_count() -> None:
    hll = HyperLogLog.with_rsd()
    for _ in range(3):
        hll.update([*range(500), None])
    hll.add(None)
    assert _relative_error(hll.cardinality(), 500) <= 0.05


def test_small_cardinalities_are_near_exact() -> None:
    for n in (0, 1, 2, 10, 100, 300):
        hll = HyperLogLog.with_rsd()
        hll.update(range(n))
        assert abs(hll.cardinality() - n) <= max(0, n // 50)


def test_types_are_distinguished() -> None:
    hll = HyperLogLog.with_rsd()
    hll.update([1, "1", 1.5, True, [1]])
    assert hll.cardinality() == 5
    assert hash64("a") == hash64("a") != hash64("b")


def test_merge_is_the_sketch_of_the_union() -> None:
    a, b, union = HyperLogLog(12), HyperLogLog(12), HyperLogLog(12)
    a.update(range(0, 60_000))
    b.update(range(40_000, 100_000))
    union.update(range(100_000))
    a.merge(b)
    assert a.to_state() == union.to_state()
    assert _relative_error(a.cardinality(), 100_000) <= 0.05


def test_merge_across_sparse_and_dense() -> None:
    dense, sparse = HyperLogLog(10), HyperLogLog(10)
    dense.update(range(5_000))
    sparse.update(range(5_000, 5_010))
    assert "d" in dense.to_state() and "s" in sparse.to_state()
    expected = HyperLogLog(10)
    expected.update(range(5_010))
    left = HyperLogLog.from_state(dense.to_state())
    left.merge(sparse)
    right = HyperLogLog.from_state(sparse.to_state())
    right.merge(dense)
    assert left.to_state() == right.to_state() == expected.to_state()


def test_merge_refuses_other_precisions() -> None:
    with pytest.raises(ValueError, match="precision"):
        HyperLogLog(10).merge(HyperLogLog(11))


def test_state_round_trips_through_json_and_is_order_independent() -> None:
    one, other = HyperLogLog.with_rsd(), HyperLogLog.with_rsd()
    values = [f"v{i}" for i in range(3_000)]
    for chunk in range(0, 3_000, 700):  # batched, like micro-batches
        one = HyperLogLog.from_state(orjson.loads(orjson.dumps(one.to_state())))
        one.update(values[chunk : chunk + 700])
    other.update(reversed(values))
    assert one.to_state() == other.to_state()
    assert one.cardinality() == other.cardinality()


def test_sparse_state_is_small() -> None:
    hll = HyperLogLog.with_rsd()
    hll.update(["a", "b", "c"])
    assert len(orjson.dumps(hll.to_state())) < 60


def test_corrupt_state_is_refused() -> None:
    with pytest.raises(ValueError, match="registers"):
        HyperLogLog.from_state({"p": 12, "d": "0" * 10})
