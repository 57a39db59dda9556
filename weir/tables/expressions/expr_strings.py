"""Spark's regex and text functions as Columns: `regexp_extract`, `regexp_extract_all`,
`regexp_replace`, `regexp_like`/`rlike`, `trim`/`ltrim`/`rtrim`, `lpad`/`rpad`, `concat_ws`.

Patterns are Java regular expressions, translated once (expressions.java_regex: ASCII `\\d`
`\\w` `\\s`, `$1` in replacements...); a pattern or a group index that cannot be used raises
ValueError when the expression is defined. A None input gives None; numbers and booleans are
cast to text as Spark casts them implicitly; a list or dict raises (dead-letters the row).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from weir.tables.expressions.expr import Column, Compiled, name_or_column
from weir.tables.expressions.expr_functions import _function, _string_fn, _text
from weir.tables.expressions.expr_time import literal
from weir.tables.expressions.java_regex import java_regex, java_replacement
from weir.tables.operator import Row


def _group_index(fn: str, regex: Any, idx: int) -> int:
    if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx <= regex.groups:
        raise ValueError(
            f"{fn}: the regex {regex.pattern!r} has {regex.groups} group(s), group index {idx!r}"
        )
    return idx


def regexp_extract(col: str | Column, pattern: str | Column, idx: int | Column) -> Column:
    """Group `idx` (0: the whole match) of the first match of `pattern`; "" when nothing
    matches or the group did not take part (Spark's result, not None)."""
    pat = literal(pattern, "regexp_extract's pattern")
    regex = java_regex(pat)
    group = _group_index("regexp_extract", regex, literal(idx, "regexp_extract's index"))

    def extract(s: str) -> str:
        m = regex.search(s)
        return "" if m is None else m.group(group) or ""

    return _string_fn("regexp_extract", col, extract, f", {pat}, {group}")


def regexp_extract_all(
    col: str | Column,
    regexp: str | Column,
    idx: int | Column = 1,
) -> Column:
    """Group `idx` of every match of `regexp`, as a list ("" for a group that did not take
    part)."""
    pat = literal(regexp, "regexp_extract_all's pattern")
    regex = java_regex(pat)
    group = _group_index("regexp_extract_all", regex, literal(idx, "regexp_extract_all's index"))
    return _string_fn(
        "regexp_extract_all",
        col,
        lambda s: [m.group(group) or "" for m in regex.finditer(s)],
        f", {pat}, {group}",
    )


def regexp_replace(
    string: str | Column, pattern: str | Column, replacement: str | Column
) -> Column:
    """Every match of `pattern` replaced; `replacement` is Java's (`$1`, `${name}`, `\\$`)."""
    pat = literal(pattern, "regexp_replace's pattern")
    repl = literal(replacement, "regexp_replace's replacement")
    regex = java_regex(pat)
    render = java_replacement(repl, regex)
    return _string_fn(
        "regexp_replace", string, lambda s: regex.sub(render, s), f", {pat}, {repl}, 1"
    )


def regexp_like(col: str | Column, regexp: str | Column) -> Column:
    """True when `regexp` matches somewhere in the text (Spark's RLIKE)."""
    pat = literal(regexp, "regexp_like's pattern")
    regex = java_regex(pat)
    return _string_fn("RLIKE", col, lambda s: regex.search(s) is not None, f", {pat}")


rlike = regexp_like


def _trim(name: str, c: str | Column, chars: str | Column | None, how: str) -> Column:
    """Spark trims spaces (" " only, not tabs or newlines) unless given the characters."""
    strip_chars = " " if chars is None else literal(chars, f"{name}'s characters")
    method: Callable[[str], str] = {
        "both": lambda s: s.strip(strip_chars),
        "leading": lambda s: s.lstrip(strip_chars),
        "trailing": lambda s: s.rstrip(strip_chars),
    }[how]
    return _string_fn(name, c, method, "" if chars is None else f", {strip_chars}")


def trim(col: str | Column, trim: str | Column | None = None) -> Column:
    """The text without leading and trailing spaces (or the characters of `trim`)."""
    return _trim("trim", col, trim, "both")


def ltrim(col: str | Column, trim: str | Column | None = None) -> Column:
    """The text without leading spaces (or the characters of `trim`)."""
    return _trim("ltrim", col, trim, "leading")


def rtrim(col: str | Column, trim: str | Column | None = None) -> Column:
    """The text without trailing spaces (or the characters of `trim`)."""
    return _trim("rtrim", col, trim, "trailing")


def _pad(name: str, c: str | Column, length: Any, pad: Any, left: bool) -> Column:
    n = literal(length, f"{name}'s length")
    fill = literal(pad, f"{name}'s pad")
    if isinstance(n, bool) or not isinstance(n, int) or not isinstance(fill, str):
        raise TypeError(f"{name} takes a whole length and a pad text, not {n!r}, {fill!r}")

    def run(s: str) -> str:
        missing = n - len(s)
        if missing <= 0 or not fill:
            return s[: max(n, 0)]  # Spark cuts the text to the length
        extra = (fill * (missing // len(fill) + 1))[:missing]
        return extra + s if left else s + extra

    return _string_fn(name, c, run, f", {n}, {fill}")


def lpad(col: str | Column, len: int | Column, pad: str | Column = " ") -> Column:
    """The text left-padded with `pad` (repeated) to `len` characters, or cut to `len`."""
    return _pad("lpad", col, len, pad, True)


def rpad(col: str | Column, len: int | Column, pad: str | Column = " ") -> Column:
    """The text right-padded with `pad` (repeated) to `len` characters, or cut to `len`."""
    return _pad("rpad", col, len, pad, False)


def concat_ws(sep: str | Column, *cols: str | Column) -> Column:
    """The texts joined with `sep`, skipping None values; a list contributes its elements
    (its None elements skipped too). Never None (with no values, "")."""
    separator = literal(sep, "concat_ws's separator")
    if not isinstance(separator, str):
        raise TypeError(f"concat_ws: the separator is text, not {separator!r}")
    cs = [name_or_column(c) for c in cols]

    def build() -> Compiled:
        fs = [c.compile() for c in cs]

        def run(r: Row) -> Any:
            parts: list[str] = []
            for f in fs:
                v = f(r)
                if isinstance(v, list):
                    parts.extend(_text("concat_ws", x) for x in v if x is not None)
                elif v is not None:
                    parts.append(_text("concat_ws", v))
            return separator.join(parts)

        return run

    c = _function("concat_ws", cs, build)
    c.name = f"concat_ws({separator}{', ' if cs else ''}{c.name[len('concat_ws(') :]}"
    return c


SQL_FUNCTIONS: dict[str, Callable[..., Column]] = {
    "regexp_extract": regexp_extract, "regexp_extract_all": regexp_extract_all,
    "regexp_replace": regexp_replace, "regexp_like": regexp_like, "rlike": regexp_like,
    "regexp": regexp_like, "trim": trim, "ltrim": ltrim, "rtrim": rtrim, "lpad": lpad,
    "rpad": rpad, "concat_ws": concat_ws,
}  # fmt: skip
"""Spark SQL name -> function, for the SQL-string helper (patterns as constant Columns)."""

__all__ = [
    "SQL_FUNCTIONS",
    "concat_ws",
    "lpad",
    "ltrim",
    "regexp_extract",
    "regexp_extract_all",
    "regexp_like",
    "regexp_replace",
    "rlike",
    "rpad",
    "rtrim",
    "trim",
]
