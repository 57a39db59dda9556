"""The registry of functions SQL text may call (`expr("upper(action)")`): one mapping from
lower-case name to a Python function, collected from the `SQL_FUNCTIONS` dict of every module
in `FUNCTION_MODULES`. Registering a module's functions is one line: add its name there.

Calling convention (PySpark's): the first argument is a Column; later arguments are Columns,
except SQL literals, which are passed as Python values (`substring(s, 1, 3)` calls
`substring(Column, 1, 3)`). Wrap a function with `all_columns` to receive every argument as a
Column (`concat(a, '-', b)`). A function that returns something other than a Column (an
aggregate) is refused by `expr`, as is any name in `AGGREGATES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from weir.tables.expressions import expr_functions as F
from weir.tables.expressions.expr import as_column

FUNCTION_MODULES: tuple[str, ...] = (
    "weir.tables.expressions.sql_functions",
    "weir.tables.expressions.expr_time",
    "weir.tables.expressions.expr_dates",
    "weir.tables.expressions.expr_strings",
    "weir.tables.expressions.expr_collections",
    "weir.tables.expressions.expr_json",
)
"""Modules whose `SQL_FUNCTIONS` dict (lower-case name -> function) make the registry."""

AGGREGATES = frozenset(
    {
        *("approx_count_distinct", "avg", "collect_list", "collect_set", "count"),
        *("count_distinct", "count_if", "countdistinct", "first", "first_value"),
        *("kurtosis", "last", "last_value", "max", "max_by", "mean", "min", "min_by"),
        *("percentile", "percentile_approx", "skewness", "stddev", "stddev_pop"),
        *("stddev_samp", "sum", "variance", "var_pop", "var_samp"),
    }
)
"""Spark's aggregate function names: refused where no aggregation happens."""


def all_columns(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` called with every SQL argument as a Column (literals as `lit`)."""

    def call(*args: Any) -> Any:
        return fn(*(as_column(a) for a in args))

    call.__name__ = getattr(fn, "__name__", "function")
    call.all_columns = True  # type: ignore[attr-defined]
    return call


SQL_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "upper": F.upper,
    "ucase": F.upper,
    "lower": F.lower,
    "lcase": F.lower,
    "length": F.length,
    "char_length": F.length,
    "character_length": F.length,
    "concat": all_columns(F.concat),
    "coalesce": all_columns(F.coalesce),
    "nvl": all_columns(F.coalesce),
    "ifnull": all_columns(F.coalesce),
    "substring": F.substring,
    "substr": F.substring,
    "split": F.split,
}
"""The functions of `weir.tables.expressions.expr_functions` under their Spark SQL names."""


@cache
def functions() -> Mapping[str, Callable[..., Any]]:
    """The registry: lower-case SQL function name -> function, from `FUNCTION_MODULES`."""
    out: dict[str, Callable[..., Any]] = {}
    for module in FUNCTION_MODULES:
        out.update(getattr(importlib.import_module(module), "SQL_FUNCTIONS", {}))
    return out
