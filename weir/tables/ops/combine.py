"""What joins share: join types, key pairs, and how a joined row's columns are named."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from weir.tables.operator import Row

JoinType = Literal["inner", "left_outer", "right_outer"]

_HOW: dict[str, JoinType] = {
    "inner": "inner",
    "left": "left_outer",
    "leftouter": "left_outer",
    "left_outer": "left_outer",
    "right": "right_outer",
    "rightouter": "right_outer",
    "right_outer": "right_outer",
}


def normalize_how(how: str, allowed: Iterable[str]) -> JoinType:
    """Return the canonical join type for `how`; ValueError if unknown or not in `allowed`."""
    canon = _HOW.get(how.lower().replace(" ", "").replace("-", "_"))
    if canon is None or canon not in allowed:
        raise ValueError(f"unsupported join type {how!r}: use one of {sorted(allowed)}")
    return canon


def normalize_on(on: str | Sequence[str | tuple[str, str]] | None) -> list[tuple[str, str]]:
    """Return the join keys as (left column, right column) pairs."""
    if on is None:
        raise ValueError("a streaming join needs equality keys: pass on=['key', ...]")
    items: Sequence[str | tuple[str, str]] = [on] if isinstance(on, str) else on
    out: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, str):
            out.append((item, item))
        else:
            left_col, right_col = item
            out.append((str(left_col), str(right_col)))
    if not out:
        raise ValueError("a streaming join needs at least one equality key in `on`")
    return out


class RowCombiner:
    """Builds output rows from a left and a right row (either may be missing).

    Contract: shared keys (same name on both sides) appear once, taken from the left row when
    present; any other name present on both sides becomes `left_<name>` / `right_<name>`;
    a missing side contributes its declared columns and its `fallback` columns (key and
    time columns) as None (a shared key takes the present side's value).
    """

    def __init__(
        self,
        keys: list[tuple[str, str]],
        left_columns: Sequence[str] | None,
        right_columns: Sequence[str] | None,
        left_fallback: Sequence[str] = (),
        right_fallback: Sequence[str] = (),
    ) -> None:
        self.shared = frozenset(left for left, right in keys if left == right)
        self.left_columns = list(left_columns) if left_columns is not None else None
        self.right_columns = list(right_columns) if right_columns is not None else None
        self.static_clash: frozenset[str] = frozenset()
        if left_columns is not None and right_columns is not None:
            self.static_clash = frozenset(set(left_columns) & set(right_columns)) - self.shared
        self.left_pad = list(dict.fromkeys([*(left_columns or ()), *left_fallback]))
        self.right_pad = list(dict.fromkeys([*(right_columns or ()), *right_fallback]))

    def pair(self, left: Row, right: Row) -> Row:
        """Combine two matching rows."""
        clash = (left.keys() & right.keys()) - self.shared
        if self.static_clash:
            clash |= self.static_clash
        if not clash:
            out = dict(left)
            for c, v in right.items():
                if c not in self.shared:
                    out[c] = v
            return out
        out = {}
        for c, v in left.items():
            out[f"left_{c}" if c in clash else c] = v
        for c, v in right.items():
            if c in clash:
                out[f"right_{c}"] = v
            elif c not in self.shared:
                out[c] = v
        for c in self.static_clash:
            out.setdefault(f"left_{c}", None)
            out.setdefault(f"right_{c}", None)
        return out

    def left_only(self, left: Row) -> Row:
        """An unmatched left row with nulls for the right side's columns."""
        clash = self.static_clash | ({c for c in self.right_pad if c in left} - self.shared)
        out: Row = {}
        for c, v in left.items():
            out[f"left_{c}" if c in clash else c] = v
        for c in self.right_pad:
            if c in clash:
                out[f"right_{c}"] = None
            elif c not in self.shared:
                out[c] = None
        return out

    def right_only(self, right: Row) -> Row:
        """An unmatched right row with nulls for the left side's columns."""
        clash = self.static_clash | ({c for c in self.left_pad if c in right} - self.shared)
        out: Row = {}
        for c in self.left_pad:
            if c in clash:
                out[f"left_{c}"] = None
            elif c in self.shared:
                out[c] = right.get(c)
            else:
                out[c] = None
        for c, v in right.items():
            if c in clash:
                out[f"right_{c}"] = v
            elif c not in out or c not in self.shared:
                out[c] = v
        return out
