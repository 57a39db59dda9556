"""Folding a group's rows into its aggregate states: the inputs of the aggregate columns
(names read by name, Column expressions compiled once), dead-lettering the rows an input or a
user-defined aggregate fails on, and merging states (session windows). Mixed into
`AggregateOperator`."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import repeat
from typing import Any

import orjson

from weir.tables.expressions.expr import Compiled, col
from weir.tables.operator import BatchContext, Row
from weir.tables.ops.agg_base import AggregateFunction
from weir.tables.ops.functions import UserDefinedAggregate


class Folding:
    """The aggregate columns of a grouping operator (`name`, `aggregates`)."""

    name: str
    aggregates: list[AggregateFunction]

    def _init_folding(
        self, aggregates: list[AggregateFunction], types: Mapping[str, str] | None
    ) -> None:
        """Compile the Column inputs in the scope `types`; a name input is read by name."""
        self._user_defined = any(isinstance(a, UserDefinedAggregate) for a in aggregates)
        self._inputs: list[tuple[str | None, Compiled | None]] = [
            (a.column, _input(a, types or {})) for a in aggregates
        ]
        self._exprs = [f for _c, f in self._inputs if f is not None]
        self._failed: set[int] = set()
        """Ids of the batch's rows dead-lettered by a Column input (once, in any window)."""
        self._states_are_results = all(
            type(a).result is AggregateFunction.result for a in aggregates
        )
        """Every aggregate's output is its state (count, sum, min, max, ...)."""

    def _fold(self, st: list[Any] | None, grows: list[Row], ctx: BatchContext) -> list[Any] | None:
        """Fold a group's batch rows into its aggregate states; None when the group had no
        state and every row failed.

        A row on which a Column input raises is dead-lettered (once per batch, in whichever
        window meets it first) and counts in no aggregate. With a user-defined aggregate, a
        row that makes it raise is dead-lettered and the others are folded (the accumulators
        are copied first, so a half-done `add` leaves no trace); built-in aggregates accept
        any value."""
        if not self._user_defined:
            if not self._exprs:
                return self._fold_rows(st, grows)
            try:  # the inputs are all computed before any state changes
                return self._fold_rows(st, grows)
            except Exception:
                good = self._computable(grows, ctx)
                return self._fold_rows(st, good) if good else st
        dumps, loads = orjson.dumps, orjson.loads
        before = dumps(st)
        try:
            return self._fold_rows(st, grows)
        except Exception:
            st = loads(before)
        for r in self._computable(grows, ctx):
            before = dumps(st)
            try:
                st = self._fold_rows(st, [r])
            except Exception as exc:
                st = loads(before)
                ctx.errors.append(
                    (r, f"{self.name} failed: {type(exc).__name__}: {exc}", "user_function")
                )
        return st

    def _computable(self, grows: list[Row], ctx: BatchContext) -> list[Row]:
        """The rows on which every Column input computes; the others are dead-lettered."""
        good: list[Row] = []
        failed = self._failed
        for r in grows:
            if id(r) in failed:
                continue
            try:
                for f in self._exprs:
                    f(r)
            except Exception as exc:
                failed.add(id(r))
                reason = f"{self.name}: aggregate input failed: {type(exc).__name__}: {exc}"
                ctx.errors.append((r, reason, "user_function"))
                continue
            good.append(r)
        return good

    def _fold_rows(self, st: list[Any] | None, grows: list[Row]) -> list[Any]:
        """Fold rows into the states (one list comprehension per distinct input column, one
        map per Column input, one call per aggregate). With Column inputs, every input's
        values are computed before any state changes, so an input that raises changes none."""
        aggs = self.aggregates
        if st is None:
            st = [a.init() for a in aggs]
        cache: dict[str, list[Any]] = {}
        if not self._exprs:  # the name path, as fast as before Column inputs
            new: list[Any] = []
            for a, s in zip(aggs, st, strict=True):
                c = a.column
                if c is None:
                    vals: list[Any] = grows
                else:
                    cached = cache.get(c)
                    if cached is None:
                        cached = cache[c] = list(map(dict.get, grows, repeat(c)))
                    vals = cached
                new.append(a.update(s, vals))
            return new
        values: list[list[Any]] = []
        for c, f in self._inputs:
            if f is not None:
                values.append(list(map(f, grows)))
            elif c is None:
                values.append(grows)
            else:
                cached = cache.get(c)
                if cached is None:
                    cached = cache[c] = list(map(dict.get, grows, repeat(c)))
                values.append(cached)
        return [a.update(s, v) for a, s, v in zip(aggs, st, values, strict=True)]

    def _merge(self, a: list[Any], b: list[Any]) -> list[Any]:
        return [f.merge(x, y) for f, x, y in zip(self.aggregates, a, b, strict=True)]


def _input(a: AggregateFunction, types: Mapping[str, str]) -> Compiled | None:
    """The compiled Column input of `a`, or None to read its column by name. A decimal column
    (exact text, weir.tables.schema) is read as a double by the aggregates that compute with
    numbers (sum, avg, min, max, percentile), as their results are doubles."""
    if a.expr is not None:
        return a.expr.compile(types)
    if a.numeric and a.column is not None and types.get(a.column, "").startswith("decimal"):
        return col(f"`{a.column}`").cast("double").compile(types)
    return None
