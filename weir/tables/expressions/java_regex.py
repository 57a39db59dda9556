"""Java regular expressions (what Spark's `regexp_*`, `rlike` and `split` take) on Python's `re`.

The pattern is translated, once, where the two differ:
- `\\d`, `\\w`, `\\s`, `\\b` and case-insensitive matching are ASCII-only in Java: compiled
  with `re.ASCII`;
- `.` does not match any line terminator (\\n, \\r, \\u0085, \\u2028, \\u2029) unless `(?s)`;
- named groups `(?<name>...)` and `\\k<name>`, quoting `\\Q...\\E`, `\\z`, `\\Z`, `\\h` and the
  POSIX classes `\\p{Lower}`, `\\p{Alpha}`, `\\p{Digit}`... are rewritten.
Refused with ValueError (when the expression is defined): Unicode categories (`\\p{L}`),
class intersection or nesting (`[a-z&&[^e]]`), and what `re` itself refuses (an inline flag
such as `(?i)` after the start of the pattern). Possessive quantifiers and atomic groups work
as in Java (Python 3.11+).

A replacement follows Java's `Matcher.replaceAll`: `$1` or `${name}` is a group, `\\$` a
dollar sign, `\\\\` a backslash (Python would read `\\1`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

_POSIX = {
    "Lower": "a-z", "Upper": "A-Z", "ASCII": "\\x00-\\x7f", "Alpha": "a-zA-Z", "Digit": "0-9",
    "Alnum": "a-zA-Z0-9", "Punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "Blank": " \\t", "Cntrl": "\\x00-\\x1f\\x7f", "XDigit": "0-9a-fA-F",
    "Space": " \\t\\n\\x0b\\f\\r",
}  # fmt: skip
_POSIX["Graph"] = _POSIX["Alnum"] + _POSIX["Punct"]
_POSIX["Print"] = _POSIX["Graph"] + " "
_DOT = "[^\\n\\r\\u0085\\u2028\\u2029]"
_HSPACE = "[ \\t\\xa0\\u1680\\u180e\\u2000-\\u200a\\u202f\\u205f\\u3000]"


def _property(p: str, i: int, in_class: bool) -> tuple[str, int]:
    """`\\p{Name}` / `\\P{Name}` at p[i]: its class text and the index after it."""
    negate = p[i + 1] == "P"
    if p[i + 2 : i + 3] == "{":
        end = p.find("}", i + 3)
        if end < 0:
            raise ValueError(f"regex {p!r}: unclosed \\p{{")
        name, after = p[i + 3 : end], end + 1
    else:
        name, after = p[i + 2 : i + 3], i + 3
    body = _POSIX.get(name.removeprefix("Is"))
    if body is None:
        raise ValueError(f"regex {p!r}: \\p{{{name}}} (a Unicode property) is not supported")
    if in_class:
        if negate:
            raise ValueError(f"regex {p!r}: \\P{{...}} inside [...] is not supported")
        return body, after
    return f"[{'^' if negate else ''}{body}]", after


def translate(p: str) -> str:
    """The Python `re` text of Java regex `p` (see the module docstring)."""
    out: list[str] = []
    i, n, in_class = 0, len(p), False
    dotall = "(?s" in p or (p.startswith("(?") and "s" in p[2 : p.find(")")])
    while i < n:
        ch = p[i]
        nxt = p[i + 1 : i + 2]
        if ch == "\\" and nxt == "Q":
            end = p.find("\\E", i + 2)
            text = p[i + 2 : end if end >= 0 else n]
            out.append("".join("\\" + c if not c.isalnum() else c for c in text))
            i = end + 2 if end >= 0 else n
        elif ch == "\\" and nxt in ("p", "P"):
            text, i = _property(p, i, in_class)
            out.append(text)
        elif ch == "\\" and nxt == "k" and p[i + 2 : i + 3] == "<":
            end = p.find(">", i + 3)
            out.append(f"(?P={p[i + 3 : end]})")
            i = end + 1
        elif ch == "\\":
            out.append(
                {"z": "\\Z", "Z": "(?=\\n?\\Z)", "h": _HSPACE, "e": "\\x1b"}.get(nxt, ch + nxt)
            )
            i += 2
        elif in_class:
            if ch == "[" or (ch == "&" and nxt == "&"):
                raise ValueError(
                    f"regex {p!r}: nested classes and && inside [...] are not supported"
                )
            in_class = ch != "]"
            out.append(ch)
            i += 1
        elif ch == "[":
            in_class = True
            start = i + 1 + (nxt == "^")
            out.append(p[i:start])
            if p[start : start + 1] == "]":  # a leading ] is a literal, as in Java
                out.append("\\]")
                start += 1
            i = start
        elif ch == "(" and p.startswith("(?<", i) and p[i + 3 : i + 4] not in ("=", "!"):
            out.append("(?P<")
            i += 3
        else:
            out.append(_DOT if ch == "." and not dotall else ch)
            i += 1
    return "".join(out)


@lru_cache(maxsize=512)
def java_regex(pattern: str) -> re.Pattern[str]:
    """Compile Java regex `pattern`; ValueError (with the reason) when it cannot be used."""
    if not isinstance(pattern, str):
        raise TypeError(f"a regex is text, not {pattern!r}")
    try:
        return re.compile(translate(pattern), re.ASCII)
    except re.error as exc:
        raise ValueError(f"regex {pattern!r}: {exc}") from None


def java_replacement(repl: str, regex: re.Pattern[str]) -> Callable[[re.Match[str]], str]:
    """Java's replacement text `repl` for matches of `regex`: `$n` (as many digits as make a
    group of `regex`), `${name}`, `\\x` is x. Raises ValueError for a group `regex` lacks."""
    parts: list[str | int] = []
    text: list[str] = []
    i, n = 0, len(repl)
    while i < n:
        ch = repl[i]
        if ch == "\\" and i + 1 < n:
            text.append(repl[i + 1])
            i += 2
        elif ch == "$":
            if repl[i + 1 : i + 2] == "{":
                end = repl.find("}", i + 2)
                name = repl[i + 2 : end] if end > 0 else ""
                if name not in regex.groupindex:
                    raise ValueError(f"replacement {repl!r}: no group named {name!r}")
                ref: int = regex.groupindex[name]
                i = end + 1
            else:
                j = i + 1
                if not repl[j : j + 1].isdigit():
                    raise ValueError(f"replacement {repl!r}: '$' must be followed by a group")
                ref, j = int(repl[j]), j + 1
                while j < n and repl[j].isdigit() and ref * 10 + int(repl[j]) <= regex.groups:
                    ref, j = ref * 10 + int(repl[j]), j + 1
                if ref > regex.groups:
                    raise ValueError(f"replacement {repl!r}: no group {ref}")
                i = j
            parts.extend(["".join(text), ref])
            text = []
        else:
            text.append(ch)
            i += 1
    parts.append("".join(text))

    def render(m: re.Match[str]) -> str:
        return "".join(p if isinstance(p, str) else (m.group(p) or "") for p in parts)

    return render


__all__ = ["java_regex", "java_replacement", "translate"]
