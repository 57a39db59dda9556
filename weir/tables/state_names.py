"""Stable state names: where each stateful operator keeps its state, and whether the state it
finds was written by a compatible operator.

Every stateful operator's state lives under a prefix derived from its name: one the user
gives (`Stream.name("orders_by_user")`) or one derived from the operator's kind and columns
(`aggregate(window(event_time), action)`), never from its position in the plan, so adding a
`map` upstream or splitting the plan for a repartition keeps the state in place. Two operators
with the same name in one query are told apart by `#2`, `#3` in plan order.

With the state, the query stores each operator's configuration fingerprint (keys, window,
aggregates, join condition...). A restarted query whose operator of the same name has another
configuration is refused with IncompatibleStateError, as Spark refuses an incompatible
checkpoint: its state would be read with the wrong meaning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from weir.tables.operator import Operator
from weir.tables.state.store import OPERATOR_PREFIX


class IncompatibleStateError(ValueError):
    """The state found for an operator was written by an operator configured differently."""


def state_names(ops: Iterable[Operator]) -> list[str]:
    """The state name of each stateful operator of `ops` (in plan order), unique in the query."""
    seen: dict[str, int] = {}
    names = []
    for op in ops:
        base = op.state_name or op.default_state_name()
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


def prefix_for(name: str) -> bytes:
    """The state key prefix of the operator named `name` (fixed length, so prefix-free)."""
    return OPERATOR_PREFIX + hashlib.blake2b(name.encode(), digest_size=8).digest() + b"/"


def check_compatible(stored: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Raise IncompatibleStateError, naming the operator and what changed, when an operator
    of `current` has state written under the same name with another fingerprint."""
    for name, fingerprint in current.items():
        old = stored.get(name)
        if old is None or old == fingerprint:
            continue
        changed = [
            f"{key} {old.get(key)!r} -> {fingerprint.get(key)!r}"
            for key in sorted(set(old) | set(fingerprint))
            if old.get(key) != fingerprint.get(key)
        ]
        raise IncompatibleStateError(
            f"operator {name!r} has state written with another configuration "
            f"({'; '.join(changed)}): give the query a new name (a new checkpoint) to start "
            "over, or restore the previous definition"
        )
