"""`mode(col)`: the most frequent value of a group (Spark 3.4's `mode`), as an aggregate
column of `group_by(...).agg(...)`.

Nulls are ignored, as in Spark; a group with no non-null value gives null. Spark 3.4 returns
any of the values that tie for the highest count; Weir always returns the smallest of them in
`sort_key` order (numbers by value, strings by code point, as Spark 4's `mode(col, true)`), so
the same rows give the same answer in every batch split, task and restart.

State: the group's distinct values with their counts, `[[value, count], ...]` sorted by value
(JSON, so it goes through the state store and the changelog like any aggregate state, and the
same rows give the same bytes). It grows with the number of distinct values of a group, as
`count_distinct`'s does; the counts of two row sets add up, so `merge` (session windows) is
exact.
"""

from __future__ import annotations

from typing import Any

import orjson

from weir.tables.ops.agg_base import AggInput, AggregateFunction, UnaryAggregate, sort_key

Counts = list[list[Any]]
"""[[value, count], ...], sorted by `sort_key` of the value."""


def _identity(value: Any) -> Any:
    """What tells values apart: the value with its type (1, 1.0 and True are three values),
    or the canonical JSON text of a list or dict."""
    if isinstance(value, list | dict):
        return ("json", orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
    return (type(value).__name__, value)


class Mode(UnaryAggregate):
    """The aggregate behind `mode(column)`; see the module docstring."""

    fname = "mode"

    def init(self) -> Counts:
        return []

    def update(self, state: Counts, values: list[Any]) -> Counts:
        present = [v for v in values if v is not None]
        if not present:
            return state
        return self._add(state, [[v, 1] for v in present])

    def merge(self, a: Counts, b: Counts) -> Counts:
        return self._add(a, b)

    def result(self, state: Counts) -> Any:
        if not state:
            return None
        # the highest count; among equal counts the first in value order (the state's order)
        best = state[0]
        for entry in state:
            if entry[1] > best[1]:
                best = entry
        return best[0]

    @staticmethod
    def _add(state: Counts, more: Counts) -> Counts:
        """`state` with the counts of `more` added (a new list; `state` is not changed)."""
        counts: dict[Any, list[Any]] = {_identity(v): [v, n] for v, n in state}
        for value, n in more:
            key = _identity(value)
            entry = counts.get(key)
            if entry is None:
                counts[key] = [value, n]
            else:
                entry[1] += n
        return sorted(counts.values(), key=lambda e: sort_key(e[0]))


def mode(column: AggInput) -> AggregateFunction:
    """The most frequent non-null value of `column` (a name or Column) in the group
    ("mode(col)"); ties go to
    the smallest value; null when the group has no non-null value."""
    return Mode(column)
