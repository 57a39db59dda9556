"""Checks shared by the keyed running-count tests (tests/apps/counting.py)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

KEYS = 40


def rows(start: int, n: int) -> list[dict[str, object]]:
    return [{"k": f"k{i % KEYS}", "v": i} for i in range(start, start + n)]


def check_exact(records: list[Any], produced: list[dict[str, object]]) -> None:
    """Per key, emitted counts strictly increase in offset order (no duplicate, no rollback),
    and the last count and sum equal what was produced (no loss)."""
    by_key: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in records:
        row = orjson.loads(r.value)
        assert r.key.decode() == row["k"]
        by_key[row["k"]].append((row["n"], row["total"]))
    expected_n: dict[str, int] = defaultdict(int)
    expected_total: dict[str, int] = defaultdict(int)
    for row in produced:
        expected_n[str(row["k"])] += 1
        expected_total[str(row["k"])] += int(row["v"])  # type: ignore[call-overload]
    assert set(by_key) == set(expected_n)
    for k, seq in by_key.items():
        counts = [n for n, _ in seq]
        assert counts == sorted(set(counts)), f"{k}: counts repeat or go back: {counts}"
        assert seq[-1] == (expected_n[k], expected_total[k]), k
