"""SQL expression text (`expr("amount > 0")`, `selectExpr("upper(action) AS a")`) as Columns.

The text is parsed by sqlglot (dialect "spark", every function call kept as a plain call so
that its name and arguments are the ones written) and the tree is translated into the Column
builders of `expressions.expr` and `expressions.expr_functions`; the result behaves exactly as
the Column built by hand (same values, nulls, three-valued logic, Spark's derived `name`).

Contract:

- `expr(text)` returns a Column (a `SqlColumn`, which keeps the parsed tree for join
  conditions); anything Weir cannot run raises ValueError when `expr` is called, with one
  line naming the unsupported part: `expr: unsupported window function 'rank() OVER (...)'
  in "..."`. A syntax error is one line too.
- `interval 24 hours` / `INTERVAL '10' MINUTE` is an int of milliseconds with dtype
  "interval"; adding it to (or subtracting it from) a time is epoch-ms arithmetic, typed
  "timestamp" when the other side is a timestamp (its own dtype, or the column types given
  to `to_column`). `TIMESTAMP '2024-01-01 10:00:00'` is epoch ms (UTC), `DATE '2024-01-01'`
  "YYYY-MM-DD" text.
- A Stream method given an `expr(...)` Column translates it again in the stream's scope
  (`SqlColumn.in_scope`): its column types and its qualifiers (`orders.amount` on the stream
  aliased or read as "orders" is `amount`); elsewhere `a.b` is field b of struct a.
- Function calls resolve by lower-case name through `expressions.sql_functions.functions()`:
  one mapping name -> Python function collected from the `SQL_FUNCTIONS` dict of each module
  in its `FUNCTION_MODULES` (registering a module is one line there). A registered function is
  called with its first argument as a Column and later arguments as Columns, except SQL
  literals after the first, which are passed as Python values (`substring(s, 1, 3)`,
  `date_format(t, 'yyyy')`), PySpark's convention; wrap a function with `all_columns` to
  receive every argument as a Column (`concat`, `coalesce`). A function returning something
  other than a Column (an aggregate) is refused outside an aggregation, as is a known
  aggregate name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from sqlglot import exp

from weir.tables.expressions import expr_functions as F
from weir.tables.expressions.expr import Column, col, lit
from weir.tables.expressions.expr_predicates import eq_null_safe, int_divide, like, rlike
from weir.tables.expressions.sql_functions import AGGREGATES, functions
from weir.tables.expressions.sql_parse import SqlError, literal, parse, quote, snippet
from weir.tables.timeutil import iso_utc, parse_duration, to_millis


class SqlColumn(Column):
    """A Column built from SQL text; `tree` is its sqlglot expression: a join analyses it,
    and a Stream method translates it again in the stream's scope (`in_scope`)."""

    __slots__ = ("text", "tree")

    def __init__(self, base: Column, tree: exp.Expression, text: str) -> None:
        super().__init__(base._build, base.name, base._refs, base.dtype, base._code)
        self.field = base.field
        self.tree = tree
        self.text = text

    def alias(self, name: str) -> SqlColumn:
        """The same expression, output as column `name` (still SQL)."""
        bare = self.tree.this if isinstance(self.tree, exp.Alias) else self.tree
        return SqlColumn(
            super().alias(name), cast(exp.Expression, exp.alias_(bare, name)), self.text
        )

    def in_scope(self, types: Mapping[str, str], qualifiers: frozenset[str]) -> SqlColumn:
        """This expression where the input's column types and qualifiers are known: the same
        values, and a dtype known from them (`t + interval 1 hour` of a timestamp `t`)."""
        return SqlColumn(translate(self.tree, self.text, types, qualifiers), self.tree, self.text)


def expr(text: str) -> Column:
    """Spark's `expr(text)`: the Column the SQL expression `text` denotes (see the module
    docstring); raises ValueError (one line) for a syntax error or what Weir cannot run."""
    return to_column(text)


def to_column(
    text: str, types: Mapping[str, str] | None = None, qualifiers: frozenset[str] = frozenset()
) -> SqlColumn:
    """`expr(text)` where the input columns' types (`{"t": "timestamp"}`) and the names
    qualifying this stream's columns (`orders.amount` is `amount`) are known."""
    tree = parse(text)
    if is_aggregate_call(tree):  # for agg(...) (weir.tables.ops.sql_aggregates); else refused
        why = f"expr: aggregate function outside an aggregation in {quote(text)}"

        def refused() -> Any:
            raise SqlError(why)

        name = tree.alias if isinstance(tree, exp.Alias) else snippet(tree)
        return SqlColumn(Column(refused, name), tree, text)
    return SqlColumn(translate(tree, text, types or {}, qualifiers), tree, text)


def is_aggregate_call(tree: exp.Expression) -> bool:
    """Whether SQL `tree` is an aggregate call (or an aliased one) at the top."""
    node = tree.this if isinstance(tree, exp.Alias) else tree
    return isinstance(node, exp.Anonymous) and node.name.lower() in AGGREGATES


Resolver = Callable[[list[str]], Column | None]
"""Maps a column reference's parts (`["orders", "amount"]`) to a Column, or None for the
default (a qualifier, then a field or a struct path)."""


def translate(
    tree: exp.Expression,
    text: str,
    types: Mapping[str, str],
    qualifiers: frozenset[str] = frozenset(),
    resolve: Resolver | None = None,
) -> Column:
    """The Column of a parsed tree (or sub-tree) of `text`; see `to_column`."""
    return _Translator(text, types, qualifiers, resolve).column(tree, top=True)


def interval(ms: int, name: str) -> Column:
    """An interval literal: `ms` milliseconds, dtype "interval"."""
    c = lit(ms).alias(name)
    c.dtype = "interval"
    return c


_INTERVAL_UNITS = {
    "WEEK": "WEEK",
    "DAY": "DAY",
    "HOUR": "HOUR",
    "MINUTE": "MINUTE",
    "SECOND": "SECOND",
    "MILLISECOND": "MILLISECOND",
}

_TIME_TYPES = ("timestamp", "date")

_COMPARE: dict[type[exp.Expression], Callable[[Column, Column], Column]] = {
    exp.EQ: lambda a, b: a == b,
    exp.NEQ: lambda a, b: a != b,
    exp.LT: lambda a, b: a < b,
    exp.LTE: lambda a, b: a <= b,
    exp.GT: lambda a, b: a > b,
    exp.GTE: lambda a, b: a >= b,
    exp.NullSafeEQ: eq_null_safe,
    exp.Mul: lambda a, b: a * b,
    exp.Div: lambda a, b: a / b,
    exp.Mod: lambda a, b: a % b,
    exp.IntDiv: int_divide,
    exp.And: lambda a, b: a & b,
    exp.Or: lambda a, b: a | b,
    exp.DPipe: lambda a, b: F.concat(a, b),
}


class _Translator:
    def __init__(
        self,
        text: str,
        types: Mapping[str, str],
        qualifiers: frozenset[str],
        resolve: Resolver | None,
    ) -> None:
        self.text = text
        self.types = types
        self.qualifiers = qualifiers
        self.resolve = resolve

    def refuse(self, what: str, node: exp.Expression) -> SqlError:
        return SqlError(f"expr: unsupported {what} '{snippet(node)}' in {quote(self.text)}")

    def column(self, node: exp.Expression, top: bool = False) -> Column:
        if node.args.get("negate"):  # a NOT LIKE b, a NOT IN (...), a NOT BETWEEN ...
            plain = node.copy()
            plain.set("negate", None)
            return ~self.column(plain)
        if isinstance(node, exp.Alias):
            if not top:
                raise self.refuse("alias inside an expression", node)
            return self.column(node.this).alias(node.alias)
        if isinstance(node, exp.Paren):
            return self.column(node.this)
        if isinstance(node, exp.Column):
            return self.reference(node)
        if isinstance(node, exp.Literal | exp.Boolean | exp.Null):
            return lit(literal(node))
        if isinstance(node, exp.Concat) and all(
            isinstance(e, exp.Literal) and e.is_string for e in node.expressions
        ):
            return lit("".join(e.this for e in node.expressions))  # 'a' 'b' is 'ab'
        if isinstance(node, exp.Interval):
            return self.interval(node)
        if isinstance(node, exp.Neg):
            if isinstance(node.this, exp.Literal) and not node.this.is_string:
                return lit(-literal(node.this))  # Spark reads -1 as one literal
            return -self.column(node.this)
        if isinstance(node, exp.Not):
            inner = node.this
            if isinstance(inner, exp.Is) and isinstance(inner.expression, exp.Null):
                return self.column(inner.this).isNotNull()
            return ~self.column(inner)
        if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            return self.column(node.this).isNull()
        if isinstance(node, exp.Add | exp.Sub):
            return self.plus_minus(node)
        op = _COMPARE.get(type(node))
        if op is not None:
            return op(self.column(node.this), self.column(node.expression))
        if isinstance(node, exp.Between):
            return self.column(node.this).between(
                self.column(node.args["low"]), self.column(node.args["high"])
            )
        if isinstance(node, exp.In) and not node.args.get("query"):
            return self.column(node.this).isin(*(self.column(e) for e in node.expressions))
        if isinstance(node, exp.Case):
            return self.case(node)
        if isinstance(node, exp.If):
            return self.if_(node)
        if isinstance(node, exp.Cast):
            return self.cast(node)
        if isinstance(node, exp.Like | exp.RegexpLike) and not node.args.get("escape"):
            fn = like if isinstance(node, exp.Like) else rlike
            return fn(self.column(node.this), self.column(node.expression))
        if isinstance(node, exp.Anonymous):
            return self.call(node.name.lower(), node.expressions, node)
        if isinstance(node, exp.CurrentTimestamp | exp.CurrentDate):
            return self.call(node.key.lower(), [], node)
        raise self.refuse(_kind(node), node)

    def reference(self, node: exp.Column) -> Column:
        parts = [p.name for p in node.parts]
        if isinstance(node.this, exp.Star):
            raise self.refuse("star", node)
        if self.resolve is not None and (resolved := self.resolve(parts)) is not None:
            return resolved
        if len(parts) > 1 and parts[0] in self.qualifiers:
            parts = parts[1:]  # `orders.amount` on the stream known as "orders"
        if len(parts) == 1:
            c = col(f"`{parts[0]}`") if "." in parts[0] else col(parts[0])
            t = self.types.get(parts[0])
            return c if t is None else _typed(c, t)
        if any("." in p for p in parts):
            raise self.refuse("struct path with a dotted field name", node)
        return col(".".join(parts))

    def interval(self, node: exp.Interval) -> Column:
        value = node.this.name if node.this is not None else ""
        unit = node.unit.name.upper() if node.unit is not None else ""
        try:
            ms = parse_duration(f"{value} {unit}".strip().lower())
        except ValueError:
            raise self.refuse("interval", node) from None
        single = unit[:-1] if unit.endswith("S") else unit
        if single not in _INTERVAL_UNITS:
            raise self.refuse("interval unit", node)
        return interval(ms, f"INTERVAL '{value}' {single}")

    def plus_minus(self, node: exp.Add | exp.Sub) -> Column:
        a, b = self.column(node.this), self.column(node.expression)
        sub = isinstance(node, exp.Sub)
        out = a - b if sub else a + b
        kinds = (type_of_static(a, self.types), type_of_static(b, self.types))
        if "date" in kinds and "interval" in kinds:
            raise self.refuse("date and interval arithmetic", node)
        if kinds == ("interval", "interval"):
            out.dtype = "interval"
        elif "interval" in kinds:
            if sub and kinds[0] == "interval":
                raise self.refuse("interval minus a time", node)
            other = kinds[1] if kinds[0] == "interval" else kinds[0]
            out = _time_arith(out, other)
        return out

    def case(self, node: exp.Case) -> Column:
        if node.this is not None:  # CASE x WHEN v THEN ...: x = v
            subject = self.column(node.this)
            branches = [(subject == self.column(i.this), i.args["true"]) for i in node.args["ifs"]]
        else:
            branches = [(self.column(i.this), i.args["true"]) for i in node.args["ifs"]]
        w = F.when(branches[0][0], self.column(branches[0][1]))
        for cond, value in branches[1:]:
            w = w.when(cond, self.column(value))
        default = node.args.get("default")
        return w if default is None else w.otherwise(self.column(default))

    def if_(self, node: exp.If) -> Column:
        cond, yes = self.column(node.this), self.column(node.args["true"])
        false = node.args.get("false")
        no = self.column(false) if false is not None else lit(None)
        w = F.when(cond, yes).otherwise(no)
        return Column(w._build, f"(IF({cond.name}, {yes.name}, {no.name}))", w._refs)

    def cast(self, node: exp.Cast) -> Column:
        to = node.args["to"]
        name = to.sql(dialect="spark").lower()
        if isinstance(node.this, exp.Literal) and node.this.is_string and name in _TIME_TYPES:
            return self.time_literal(node.this.this, name, node)
        source = self.column(node.this)
        try:
            return source.cast(name)
        except ValueError:
            raise self.refuse("cast", node) from None

    def time_literal(self, text: str, to: str, node: exp.Expression) -> Column:
        """TIMESTAMP '2024-01-01 10:00:00' (epoch ms, UTC) or DATE '2024-01-01' (text)."""
        try:
            ms = to_millis(text.strip())
        except ValueError:
            raise self.refuse(f"{to} literal", node) from None
        value = iso_utc(ms)[:10] if to == "date" else ms
        return _typed(lit(value).alias(f"{to.upper()} '{text}'"), to)

    def call(self, name: str, args: list[exp.Expression], node: exp.Expression) -> Column:
        registry = functions()
        fn = registry.get(name)
        if name in AGGREGATES or (fn is None and name.replace("_", "") in AGGREGATES):
            raise self.refuse("aggregate function outside an aggregation", node)
        if fn is None:
            raise self.refuse("function", node)
        if any(isinstance(a, exp.Distinct | exp.Star) for a in args):
            raise self.refuse("function argument", node)
        values: list[Any] = []
        for i, a in enumerate(args):
            if i > 0 and isinstance(a, exp.Literal | exp.Boolean | exp.Null):
                values.append(literal(a))
            else:
                values.append(self.column(a))
        try:
            out = fn(*values)
        except (TypeError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SqlError(
                f"expr: cannot apply {name}(...): {reason} in {quote(self.text)}"
            ) from None
        if not isinstance(out, Column):
            raise self.refuse("aggregate function outside an aggregation", node)
        return out


def _kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Window):
        return "window function"
    if isinstance(node, exp.Subquery | exp.Query | exp.Exists):
        return "subquery"
    return f"construct {type(node).__name__}"


def type_of_static(c: Column, types: Mapping[str, str]) -> str | None:
    """The type of `c` known when translating: its dtype, or its input column's type."""
    if c.dtype is not None:
        return c.dtype
    return types.get(c.field) if c.field is not None else None


def _typed(c: Column, dtype: str) -> Column:
    c.dtype = dtype
    return c


def _time_arith(out: Column, known: str | None) -> Column:
    """`time ± interval`: epoch-ms arithmetic, typed "timestamp" when the time is one."""
    if known == "timestamp":
        out.dtype = "timestamp"
    return out
