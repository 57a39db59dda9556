"""Spark column expressions (`col("amount") * 2 > 10`) compiled once into row closures.

A `Column` is an immutable expression; `Column.compile()` builds nested closures once, and the
closure is then called per row (no tree walk per row). Semantics follow Spark SQL (non-ANSI):

- null (None) in arithmetic or a comparison gives None; `&`, `|`, `~` use three-valued logic
  (`False & None` is False, `True | None` is True, `~None` is None); `Stream.filter` keeps a
  row only when the predicate is True (None and False drop it), as Spark does.
- `/` is true division and `%` takes the sign of the dividend (Java's remainder); both give
  None on a zero divisor, as Spark does with `spark.sql.ansi.enabled=false`.
- Rows are dicts: a column naming a missing field reads None; when the stream's columns are
  known at definition (an input schema), `Stream` refuses an expression whose `references()`
  are not among them, as Spark's analyzer does (weir.tables.columns).
- An expression that raises at run time (`upper` of an int) dead-letters the row through the
  operator's error path, like a user function that raises.

Functions building columns from names (`upper`, `concat`, ...) are in `expr_functions`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from weir.tables.expressions.expr_codegen import Gen, row_function
from weir.tables.operator import Row

Compiled = Callable[[Row], Any]
CodeFn = Callable[[Gen], str]
"""A Column's code template (expressions.expr_codegen): the Python expression over row `r`."""

_SCOPE: ContextVar[Mapping[str, str] | None] = ContextVar("weir_expr_scope", default=None)


class Column:
    """A column expression; build with `col`, `lit`, operators and the functions.

    `name` is the output column name Spark would give it (`col("a")` is "a", `col("a") * 2`
    is "(a * 2)", `alias` sets it). `compile()` returns the per-row function. `dtype` is the
    Spark type the expression is known to produce ("timestamp", "date", "long", ...), or None
    when unknown; a "timestamp" column holds epoch ms and is written as ISO-8601 UTC at the
    edges, a "date" column holds "YYYY-MM-DD" text, a struct's is its full Spark type name
    ("struct<a:int,b:string>", see weir.tables.types).
    """

    __slots__ = ("_build", "_code", "_refs", "dtype", "field", "name")
    __hash__ = None  # type: ignore[assignment]  # == builds a Column, as in PySpark

    def __init__(
        self,
        build: Callable[[], Compiled],
        name: str,
        refs: Iterable[str] = (),
        dtype: str | None = None,
        code: CodeFn | None = None,
    ):
        self._build = build
        self._code = code
        self.name = name
        self._refs = frozenset(refs)
        self.dtype = dtype
        self.field: str | None = None  # set by col(name): the row field this column is

    def compile(self, types: Mapping[str, str] | None = None) -> Compiled:
        """The row -> value function; closures are built now, once, not per row.

        `types` gives the Spark type of input columns known when the query is defined
        ({"event_time": "timestamp"}); functions whose meaning depends on an argument's type
        (`to_timestamp` of a timestamp column is that column) read it through `type_of`
        while building. Without `types`, the scope of an enclosing compile applies."""
        if types is None:
            return row_function(self)
        with scope(types):
            return row_function(self)

    def references(self) -> set[str]:
        """The top-level row fields this expression reads."""
        return set(self._refs)

    def __repr__(self) -> str:
        return f"Column<'{self.name}'>"

    def __bool__(self) -> bool:
        raise TypeError(
            f"Cannot convert column {self.name!r} into bool: please use '&' for 'and', '|' for "
            "'or', '~' for 'not' when building boolean expressions, with parentheses around "
            "each comparison: (col('a') > 1) & (col('b') < 2)"
        )

    # -- naming ----------------------------------------------------------------------------
    def alias(self, name: str) -> Column:
        """The same expression, output as column `name`."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"alias needs a non-empty column name, got {name!r}")
        c = Column(self._build, name, self._refs, self.dtype, self._code)
        c.field = self.field
        return c

    # -- operators -------------------------------------------------------------------------
    def __add__(self, other: Any) -> Column:
        return _binary(self, other, "+", operator.add, "+")

    def __radd__(self, other: Any) -> Column:
        return _binary(other, self, "+", operator.add, "+")

    def __sub__(self, other: Any) -> Column:
        return _binary(self, other, "-", operator.sub, "-")

    def __rsub__(self, other: Any) -> Column:
        return _binary(other, self, "-", operator.sub, "-")

    def __mul__(self, other: Any) -> Column:
        return _binary(self, other, "*", operator.mul, "*")

    def __rmul__(self, other: Any) -> Column:
        return _binary(other, self, "*", operator.mul, "*")

    def __truediv__(self, other: Any) -> Column:
        return _binary(self, other, "/", _divide)

    def __rtruediv__(self, other: Any) -> Column:
        return _binary(other, self, "/", _divide)

    def __mod__(self, other: Any) -> Column:
        return _binary(self, other, "%", _remainder)

    def __rmod__(self, other: Any) -> Column:
        return _binary(other, self, "%", _remainder)

    def __neg__(self) -> Column:
        f = self._build

        def build() -> Compiled:
            a = f()
            return lambda r: None if (v := a(r)) is None else -v

        return Column(build, f"(- {self.name})", self._refs, code=_prefix(self, "-"))

    def __eq__(self, other: Any) -> Column:  # type: ignore[override]
        return _binary(self, other, "=", operator.eq, "==")

    def __ne__(self, other: Any) -> Column:  # type: ignore[override]
        c = _binary(self, other, "=", operator.ne, "!=")
        return Column(c._build, f"(NOT {c.name})", c._refs, code=c._code)

    def __lt__(self, other: Any) -> Column:
        return _binary(self, other, "<", operator.lt, "<")

    def __le__(self, other: Any) -> Column:
        return _binary(self, other, "<=", operator.le, "<=")

    def __gt__(self, other: Any) -> Column:
        return _binary(self, other, ">", operator.gt, ">")

    def __ge__(self, other: Any) -> Column:
        return _binary(self, other, ">=", operator.ge, ">=")

    def __and__(self, other: Any) -> Column:
        return _logic(self, other, "AND", _and3)

    def __rand__(self, other: Any) -> Column:
        return _logic(other, self, "AND", _and3)

    def __or__(self, other: Any) -> Column:
        return _logic(self, other, "OR", _or3)

    def __ror__(self, other: Any) -> Column:
        return _logic(other, self, "OR", _or3)

    def __invert__(self) -> Column:
        f = self._build

        def build() -> Compiled:
            a = f()
            return lambda r: None if (v := a(r)) is None else not v

        return Column(build, f"(NOT {self.name})", self._refs, code=_prefix(self, "not "))

    # -- predicates ------------------------------------------------------------------------
    def isNull(self) -> Column:
        """True where the value is None (never None itself)."""
        c = _unary(self, f"({self.name} IS NULL)", lambda a: lambda r: a(r) is None)
        c._code = lambda g: f"(({g.code(self)}) is None)"
        return c

    def isNotNull(self) -> Column:
        """True where the value is not None (never None itself)."""
        c = _unary(self, f"({self.name} IS NOT NULL)", lambda a: lambda r: a(r) is not None)
        c._code = lambda g: f"(({g.code(self)}) is not None)"
        return c

    def isin(self, *values: Any) -> Column:
        """Spark's `IN`: True if equal to one of `values`; None if the value is None, or if
        it matches none and a value is None; else False. `isin([1, 2])` works too."""
        if len(values) == 1 and isinstance(values[0], list | tuple | set | frozenset):
            values = tuple(values[0])
        items = [as_column(v) for v in values]
        refs = self._refs.union(*(i._refs for i in items))
        name = f"({self.name} IN ({', '.join(i.name for i in items)}))"
        f = self._build

        def build() -> Compiled:
            a, vs = f(), [i._build() for i in items]

            def run(r: Row) -> Any:
                v = a(r)
                if v is None:
                    return None
                seen_null = False
                for g in vs:
                    w = g(r)
                    if w is None:
                        seen_null = True
                    elif v == w:
                        return True
                return None if seen_null else False

            return run

        return Column(build, name, refs)

    def between(self, lower: Any, upper: Any) -> Column:
        """`lower <= self <= upper` (inclusive), with three-valued logic."""
        return (self >= lower) & (self <= upper)

    def cast(self, to: str) -> Column:
        """Spark's CAST to "int", "long", "double", "string" or "boolean" (also "integer",
        "bigint", "float"): a value that does not convert gives None, as in Spark."""
        from weir.tables.expressions.expr_cast import CASTS, spark_type_name

        key = to.lower().strip() if isinstance(to, str) else to
        conv = CASTS.get(key)
        if conv is None:
            raise ValueError(f"cast: unsupported type {to!r}; supported: {sorted(CASTS)}")
        c = _unary(
            self,
            f"CAST({self.name} AS {spark_type_name(key)})",
            lambda a: lambda r: None if (v := a(r)) is None else conv(v),
        )
        c.dtype = spark_type_name(key).lower()
        c._code = _prefix(self, "{}(", ")", conv)
        return c


def col(name: str) -> Column:
    """The row field `name`; "a.b" reads field b of the dict in field a (a name in backticks,
    "`a.b`", is a field whose name holds a dot). A missing field (or a non-dict on the path)
    reads None."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"col needs a non-empty column name, got {name!r}")
    if name.startswith("`") and name.endswith("`") and len(name) > 1:
        key = name[1:-1]
        c = Column(lambda: lambda r: r.get(key), key, (key,), code=_get(key))
        c.field = key
        return c
    parts = name.split(".")
    if len(parts) == 1:
        c = Column(lambda: lambda r: r.get(name), name, (name,), code=_get(name))
        c.field = name
        return c
    first, rest = parts[0], parts[1:]

    def build() -> Compiled:
        def run(r: Row) -> Any:
            v = r.get(first)
            for p in rest:
                if not isinstance(v, dict):
                    return None
                v = v.get(p)
            return v

        return run

    return Column(build, parts[-1], (first,))


def type_of(c: Column) -> str | None:
    """The Spark type `c` produces: its own `dtype`, or for a bare `col(name)` the type the
    compile scope gives that input column; None when unknown. Call only while building."""
    if c.dtype is not None:
        return c.dtype
    scope = _SCOPE.get()
    return scope.get(c.field) if scope is not None and c.field is not None else None


def lit(value: Any) -> Column:
    """A constant column; a Column is returned unchanged."""
    if isinstance(value, Column):
        return value
    name = (
        "NULL" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )
    return Column(lambda: lambda r: value, name, code=_Literal(value))


def as_column(value: Any) -> Column:
    """A Column unchanged, any other value as `lit(value)` (operands and `when` values)."""
    return value if isinstance(value, Column) else lit(value)


def name_or_column(value: str | Column) -> Column:
    """PySpark's function arguments: a string is a column name, a Column is itself."""
    if isinstance(value, Column):
        return value
    if isinstance(value, str):
        return col(value)
    raise TypeError(f"expected a column name or a Column, got {value!r}")


def _unary(c: Column, name: str, make: Callable[[Compiled], Compiled]) -> Column:
    f = c._build
    return Column(lambda: make(f()), name, c._refs)


def _binary(
    left: Any, right: Any, symbol: str, fn: Callable[[Any, Any], Any], infix: str | None = None
) -> Column:
    """`fn(left, right)`, None when either is None; `infix` is fn as a Python operator.
    Where the operand types are known when compiling, Spark's analysis applies (`operands`)."""
    given_l, given_r = as_column(left), as_column(right)
    name = f"({given_l.name} {symbol} {given_r.name})"

    def build() -> Compiled:
        lc, rc = operands(name, symbol, given_l, given_r)
        a, b = lc._build(), rc._build()

        def run(r: Row) -> Any:
            x = a(r)
            if x is None:
                return None
            y = b(r)
            return None if y is None else fn(x, y)

        return run

    def code(g: Gen) -> str:
        lc, rc = operands(name, symbol, given_l, given_r)
        a, b, t1, t2 = g.code(lc), g.code(rc), g.tmp(), g.tmp()
        op = f"{t1} {infix} {t2}" if infix else f"{g.bind(fn)}({t1}, {t2})"
        if isinstance(rc._code, _Literal) and rc._code.value is not None:
            op = f"{t1} {infix} {b}" if infix else f"{g.bind(fn)}({t1}, {b})"
            return f"(None if ({t1} := {a}) is None else {op})"
        return f"(None if ({t1} := {a}) is None or ({t2} := {b}) is None else {op})"

    return Column(build, name, given_l._refs | given_r._refs, code=code)


_ARITHMETIC = frozenset("+-*/%")
_COMPARISON = frozenset({"=", "<", "<=", ">", ">="})
NESTED = ("array", "struct", "map")


def operands(name: str, symbol: str, lc: Column, rc: Column) -> tuple[Column, Column]:
    """The operands of `name` after Spark's analysis, where their types are known in the
    compile scope: an array, struct or map operand is refused (ValueError, one line: Spark's
    "data type mismatch"), and a string operand of arithmetic is cast to double, as Spark
    casts it implicitly ("12.5" + 1 is 13.5, "x" + 1 is null); a decimal operand (exact text)
    of arithmetic or a comparison is read as a double."""
    lt, rt = type_of(lc), type_of(rc)
    for c, t in ((lc, lt), (rc, rt)):
        if t is not None and t.startswith(NESTED):
            raise ValueError(f"data type mismatch in {name}: {c.name} is {t}")
    if symbol in _ARITHMETIC:
        if lt == "string":
            lc = lc.cast("double")
        if rt == "string":
            rc = rc.cast("double")
    if symbol in _ARITHMETIC or symbol in _COMPARISON:  # decimals are exact text: as numbers
        if lt is not None and lt.startswith("decimal"):
            lc = lc.cast("double")
        if rt is not None and rt.startswith("decimal"):
            rc = rc.cast("double")
    return lc, rc


def _logic(
    left: Any, right: Any, word: str, fn: Callable[[Compiled, Compiled, Row], Any]
) -> Column:
    lc, rc = as_column(left), as_column(right)
    lf, rf = lc._build, rc._build

    def build() -> Compiled:
        a, b = lf(), rf()
        return lambda r: fn(a, b, r)

    # the same three-valued logic as _and3/_or3, short-circuiting alike
    stop, other = ("False", "True") if word == "AND" else ("True", "False")
    test = "not " if word == "AND" else ""

    def code(g: Gen) -> str:
        a, b, t1, t2 = g.code(lc), g.code(rc), g.tmp(), g.tmp()
        return (
            f"({stop} if (({t1} := {a}) is not None and {test}{t1}) or "
            f"(({t2} := {b}) is not None and {test}{t2}) "
            f"else (None if {t1} is None or {t2} is None else {other}))"
        )

    return Column(build, f"({lc.name} {word} {rc.name})", lc._refs | rc._refs, code=code)


@contextmanager
def scope(types: Mapping[str, str]) -> Iterator[None]:
    """Compile expressions within this block with `types` as the known input column types."""
    token = _SCOPE.set(types)
    try:
        yield
    finally:
        _SCOPE.reset(token)


class _Literal:
    """The code template of `lit(value)`; `value` is kept so operators can skip null tests."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self, g: Gen) -> str:
        return g.bind(self.value)


def _get(name: str) -> CodeFn:
    return lambda g: f"r[{g.bind(name)}]" if g.strict else f"r.get({g.bind(name)})"


def _prefix(c: Column, before: str, after: str = "", fn: Any = None) -> CodeFn:
    """Code for `before + value + after` with None for None; "{}" in `before` is `fn`."""

    def code(g: Gen) -> str:
        t = g.tmp()
        head = before.format(g.bind(fn)) if fn is not None else before
        return f"(None if ({t} := {g.code(c)}) is None else {head}{t}{after})"

    return code


def _and3(a: Compiled, b: Compiled, r: Row) -> Any:
    x = a(r)
    if x is not None and not x:  # False AND anything is False, even null (short-circuit)
        return False
    y = b(r)
    if y is not None and not y:
        return False
    return None if x is None or y is None else True


def _or3(a: Compiled, b: Compiled, r: Row) -> Any:
    x = a(r)
    if x is not None and x:  # True OR anything is True, even null
        return True
    y = b(r)
    if y is not None and y:
        return True
    return None if x is None or y is None else False


def _divide(x: Any, y: Any) -> Any:
    return None if y == 0 else x / y


def _remainder(x: Any, y: Any) -> Any:
    if y == 0:
        return None
    if isinstance(x, int) and isinstance(y, int):
        m = abs(x) % abs(y)
        return m if x >= 0 else -m
    return math.fmod(x, y)
