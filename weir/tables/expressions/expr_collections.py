"""Spark's array and map functions as Columns (`size`, `array_contains`, `element_at`) and the
generators `explode`, `explode_outer`, `posexplode`, `posexplode_outer`.

An array is a list, a map a dict. A generator makes rows: it is allowed only as a column of
`Stream.select(...)` (one per select, as Spark allows) or as `Stream.with_column(name, ...)`;
anywhere else (nested in an expression, in `filter`) it is refused when the query is defined.
Output columns: "col" for an array element, "key" and "value" for a map entry, "pos" (from 0)
first for posexplode; `alias("word")` (or `alias("k", "v")`) names them. Whether the value is an
array or a map is known per row only: one of the other kind, or the wrong number of alias names
for it, raises (dead-letters the row; Spark refuses the query at analysis).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from weir.tables.expressions.expr import Column, Compiled, as_column, name_or_column
from weir.tables.expressions.expr_functions import _function, column_of
from weir.tables.operator import Row


def _collection(fn: str, v: Any) -> list[Any] | dict[Any, Any]:
    if isinstance(v, list | dict):
        return v
    raise TypeError(f"{fn} expects an array or a map, got {type(v).__name__} {v!r}")


def size(col: str | Column) -> Column:
    """The number of elements of an array or entries of a map; -1 for None (Spark with
    spark.sql.legacy.sizeOfNull, the default when ANSI mode is off)."""
    c = name_or_column(col)

    def build() -> Compiled:
        f = c.compile()
        return lambda r: -1 if (v := f(r)) is None else len(_collection("size", v))

    return _function("size", [c], build)


def array_contains(col: str | Column, value: Any) -> Column:
    """True if the array holds `value` (a literal or a Column); None if the array or the value
    is None, or if it is not found and the array holds a None; else False."""

    def make() -> Callable[[Any, Any], Any]:
        def run(arr: Any, v: Any) -> Any:
            if not isinstance(arr, list):
                raise TypeError(f"array_contains expects an array, got {arr!r}")
            if v in arr:
                return True
            return None if None in arr else False

        return run

    return column_of("array_contains", [name_or_column(col), as_column(value)], make, "boolean")


def element_at(col: str | Column, extraction: Any) -> Column:
    """An array's element at 1-based `extraction` (negative counts from the end; 0 raises, as
    in Spark; beyond the end, None), or a map's value for key `extraction` (None if absent)."""

    def make() -> Callable[[Any, Any], Any]:
        def run(v: Any, k: Any) -> Any:
            if isinstance(_collection("element_at", v), dict):
                return v.get(k)
            if isinstance(k, bool) or not isinstance(k, int):
                raise TypeError(f"element_at: an array index is a whole number, not {k!r}")
            if k == 0:
                raise ValueError("element_at: SQL array indices start at 1")
            i = k - 1 if k > 0 else len(v) + k
            return v[i] if 0 <= i < len(v) else None

        return run

    return column_of("element_at", [name_or_column(col), as_column(extraction)], make, None)


# -- generators ------------------------------------------------------------------------------
def _refused() -> Compiled:
    raise ValueError(
        "explode and its kind are generators: use them directly as a column of select(...) or "
        "in with_column(name, ...), not nested in an expression, filter or with_columns"
    )


class GeneratorColumn(Column):
    """`explode(col)` and its kind: a column that makes zero or more rows per row."""

    __slots__ = ("_inner", "_names", "_outer", "_pos")

    def __init__(self, inner: Column, outer: bool, pos: bool, names: tuple[str, ...] = ()) -> None:
        fn = f"{'pos' if pos else ''}explode{'_outer' if outer else ''}"
        super().__init__(_refused, names[0] if names else f"{fn}({inner.name})", inner.references())
        self._inner, self._outer, self._pos, self._names = inner, outer, pos, names

    def alias(self, *names: str) -> GeneratorColumn:
        """Name the output columns: one for an array's element ("word"), two for a map's key
        and value; posexplode takes the position's name first."""
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"alias needs non-empty column names, got {names!r}")
        return GeneratorColumn(self._inner, self._outer, self._pos, tuple(names))

    def output_names(self) -> tuple[str, ...]:
        """The names it outputs for an array (the names it is known by at definition)."""
        return self._names or (("pos", "col") if self._pos else ("col",))

    def generate(self, types: Mapping[str, str]) -> Callable[[Row], list[list[tuple[str, Any]]]]:
        """The row -> generated columns function: per output row, its (name, value) pairs."""
        f = self._inner.compile(types)
        outer, pos, names = self._outer, self._pos, self._names
        fn = self.name

        def run(r: Row) -> list[list[tuple[str, Any]]]:
            v = f(r)
            if v is None or (isinstance(v, list | dict) and not v):
                if not outer:
                    return []
                v = []
            items = _collection(fn, v)
            is_map = isinstance(items, dict)
            default = ("key", "value") if is_map else ("col",)
            cols = names or ((("pos",) if pos else ()) + default)
            width = (2 if is_map else 1) + pos
            if len(cols) != width:
                kind = "a map" if is_map else "an array"
                raise TypeError(f"{fn} of {kind} makes {width} column(s), named {cols!r}")
            if not items:  # explode_outer of None or empty: one row of None
                return [[(n, None) for n in cols]]
            values = list(items.items()) if isinstance(items, dict) else [(e,) for e in items]
            if pos:
                values = [(i, *t) for i, t in enumerate(values)]
            return [list(zip(cols, t, strict=True)) for t in values]

        return run


def explode(col: str | Column) -> GeneratorColumn:
    """One row per element of the array (column "col") or entry of the map ("key", "value");
    a None or empty array or map gives no row."""
    return GeneratorColumn(name_or_column(col), outer=False, pos=False)


def explode_outer(col: str | Column) -> GeneratorColumn:
    """As `explode`, but a None or empty array or map gives one row of None."""
    return GeneratorColumn(name_or_column(col), outer=True, pos=False)


def posexplode(col: str | Column) -> GeneratorColumn:
    """As `explode`, with the position (from 0) first, as column "pos"."""
    return GeneratorColumn(name_or_column(col), outer=False, pos=True)


def posexplode_outer(col: str | Column) -> GeneratorColumn:
    """As `posexplode`, but a None or empty array or map gives one row of None."""
    return GeneratorColumn(name_or_column(col), outer=True, pos=True)


def generator_select(
    columns: Sequence[str | Column], types: Mapping[str, str]
) -> tuple[Callable[[Row], list[Row]], list[str]] | None:
    """For `Stream.select(*columns)` holding a generator: the row -> rows function and the
    output names (for an array); None when there is no generator. Raises ValueError for two
    generators or a name selected twice."""
    gens = [c for c in columns if isinstance(c, GeneratorColumn)]
    if not gens:
        return None
    if len(gens) > 1:
        raise ValueError(f"select allows one generator, found {len(gens)}: {gens!r}")
    gen = gens[0]
    names: list[str] = []
    parts: list[tuple[str, Callable[[Row], Any]] | None] = []  # None: the generator's place
    for c in columns:
        if c is gen:
            parts.append(None)
            names.extend(gen.output_names())
        else:
            column = name_or_column(c)
            parts.append((column.name, column.compile(types)))
            names.append(column.name)
    if len(set(names)) != len(names):
        raise ValueError(f"select: a column name is selected twice in {names}; use alias(...)")
    generate = gen.generate(types)

    def rows(r: Row) -> list[Row]:
        made = generate(r)
        if not made:
            return []
        fixed = [None if p is None else (p[0], p[1](r)) for p in parts]
        out = []
        for pairs in made:
            row: Row = {}
            for p in fixed:
                row.update(pairs if p is None else (p,))
            out.append(row)
        return out

    return rows, names


def generator_column(
    name: str, gen: GeneratorColumn, types: Mapping[str, str]
) -> Callable[[Row], list[Row]]:
    """For `Stream.with_column(name, explode(...))`: the row -> rows function, each row with
    column `name` set to one element. Raises ValueError for posexplode (two columns)."""
    if gen._pos:
        raise ValueError(f"with_column({name!r}, {gen.name}): posexplode makes two columns")
    generate = GeneratorColumn(gen._inner, gen._outer, False, (name,)).generate(types)
    return lambda r: [{**r, **dict(pairs)} for pairs in generate(r)]


SQL_FUNCTIONS: dict[str, Callable[..., Column]] = {
    "size": size, "cardinality": size, "array_contains": array_contains,
    "element_at": element_at, "explode": explode, "explode_outer": explode_outer,
    "posexplode": posexplode, "posexplode_outer": posexplode_outer,
}  # fmt: skip
"""Spark SQL name -> function, for the SQL-string helper."""

__all__ = [
    "SQL_FUNCTIONS",
    "GeneratorColumn",
    "array_contains",
    "element_at",
    "explode",
    "explode_outer",
    "generator_column",
    "generator_select",
    "posexplode",
    "posexplode_outer",
    "size",
]
