"""`percentile_approx` (weir.tables.ops.percentile, Spark's GK summary): exact answers for
small groups, Spark's rank-error bound and a bounded JSON state on large ones, in any batch
split and through a session-window merge."""

from __future__ import annotations

import bisect
import math
import random

import orjson
import pytest

from weir.tables.expressions.expr import col
from weir.tables.ops.agg_base import AggregateFunction
from weir.tables.ops.percentile import percentile_approx
from weir.tables.state.memory import MemoryStore
from weir.tables.stream import read

QS = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]


def fold(agg: AggregateFunction, values: list[float], batch: int) -> list[object]:
    """The state after folding `values` in batches, through JSON as the state store keeps it."""
    state = agg.init()
    for i in range(0, len(values), batch):
        state = orjson.loads(orjson.dumps(agg.update(state, values[i : i + batch])))
    return state  # type: ignore[no-any-return]


def rank_error(ordered: list[float], value: float, q: float) -> float:
    """How far (as a fraction of n) `value`'s ranks are from the exact rank ceil(q * n)."""
    n = len(ordered)
    target = max(1, math.ceil(q * n))
    lo, hi = bisect.bisect_left(ordered, value) + 1, bisect.bisect_right(ordered, value)
    return 0.0 if lo <= target <= hi else min(abs(target - lo), abs(target - hi)) / n


def test_small_groups_are_exact_with_spark_ranks_and_types() -> None:
    agg = percentile_approx("v", [0.0, 0.1, 0.25, 0.5, 0.75, 1.0])
    state = fold(agg, [7, None, 3, 10, 1, 5, "x", 2, 9, 4, 8, 6], batch=5)
    # rank ceil(q * 10) of 1..10 (0 is the minimum); null and non-numbers ignored; ints stay ints
    assert agg.result(state) == [1, 1, 3, 5, 8, 10]
    single = percentile_approx("v", 0.5)
    assert single.result(fold(single, [2.5, 0.5, 1.5], batch=1)) == 1.5
    assert single.result(single.init()) is None
    assert single.result(single.update(single.init(), [None, None])) is None


def test_spark_output_names_and_argument_checks() -> None:
    assert percentile_approx("v", 0.5).name == "percentile_approx(v, 0.5, 10000)"
    assert (
        percentile_approx(col("v") * 2, [0.25, 0.75], 100).name
        == "percentile_approx((v * 2), array(0.25, 0.75), 100)"
    )
    for bad in (1.5, -0.1, [0.5, 2], [], "0.5"):
        with pytest.raises(ValueError, match="percentage"):
            percentile_approx("v", bad)  # type: ignore[arg-type]
    for accuracy in (0, -5, 1.5):
        with pytest.raises(ValueError, match="accuracy"):
            percentile_approx("v", 0.5, accuracy)  # type: ignore[arg-type]


@pytest.mark.parametrize("accuracy", [100, 1000, 10000])
def test_large_groups_stay_within_the_rank_error_with_a_bounded_state(accuracy: int) -> None:
    rng = random.Random(accuracy)
    values = [rng.gauss(0, 1) for _ in range(60_000)] + [rng.expovariate(1) for _ in range(20_000)]
    ordered = sorted(values)
    agg = percentile_approx("v", QS, accuracy)
    state = fold(agg, values, batch=997)
    errors = [rank_error(ordered, v, q) for v, q in zip(agg.result(state), QS, strict=True)]
    assert max(errors) <= 1 / accuracy + 1 / len(values)
    # the GK bound: O(accuracy * log(n / accuracy)) tuples, far fewer than the rows
    assert len(state[1]) <= 2 * accuracy * max(1, math.log2(len(values) / accuracy))
    assert len(state[1]) < len(values) / 5


def test_merged_halves_stay_within_the_error() -> None:
    rng = random.Random(3)
    values = [rng.uniform(0, 1000) for _ in range(40_000)]
    agg = percentile_approx("v", QS, 1000)
    merged = agg.merge(fold(agg, values[:15_000], 500), fold(agg, values[15_000:], 2000))
    assert merged[0] == len(values)
    ordered = sorted(values)
    for v, q in zip(agg.result(merged), QS, strict=True):
        assert rank_error(ordered, v, q) <= 2 / 1000


def test_the_same_rows_give_the_same_state_and_answer_in_a_query() -> None:
    rows = [{"k": i % 3, "v": (i * 7919) % 1000} for i in range(3000)]
    query = (
        read("events")
        .group_by("k")
        .agg(percentile_approx("v", [0.5, 0.9], 1000).alias("p"))
        .query("complete")
    )

    def run() -> list[dict[str, object]]:
        task = query.task(MemoryStore())
        out: list[dict[str, object]] = []
        for i in range(0, len(rows), 250):
            result = task.run_batch({"events": [dict(r) for r in rows[i : i + 250]]}, 0)
            task.commit(result)
            out = result.rows
        return out

    first = run()
    assert first == run()
    for r in first:
        ordered = sorted(x["v"] for x in rows if x["k"] == r["k"])
        p50, p90 = r["p"]  # type: ignore[misc]
        assert rank_error(ordered, p50, 0.5) <= 1 / 1000 + 1 / len(ordered)
        assert rank_error(ordered, p90, 0.9) <= 1 / 1000 + 1 / len(ordered)
