"""The in-memory store (replay, tests): sorted keys for ordered prefix scans."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from itertools import islice

from weir.tables.state.store import OPERATOR_PREFIX, Changes, Store

_BLOCK = 1000
"""Target keys per `MemoryStore` index block; a block is split when it exceeds twice that."""
_SMALL = 8
"""Values up to this many bytes are held once per distinct value (counts, flags: `b"[1]"`)."""
_SMALL_KINDS = 4096
"""At most this many distinct small values are shared; later ones are held as given."""


def _merge_block(
    block: list[bytes], changed: list[bytes], data: Mapping[bytes, bytes]
) -> list[bytes]:
    """Return a new sorted block: `block` with each key of sorted `changed` present iff it is
    in `data` (`block` itself is left unchanged)."""
    if len(changed) * 16 < len(block):  # a few keys: edit a copy, one bisect each
        out = block.copy()
        for key in changed:
            i = bisect.bisect_left(out, key)
            here = i < len(out) and out[i] == key
            if key in data:
                if not here:
                    out.insert(i, key)
            elif here:
                del out[i]
        return out
    drop = set(changed)
    out = [k for k in block if k not in drop]
    out += [k for k in changed if k in data]
    out.sort()  # two sorted runs: a linear merge
    return out


def _ignore(key: bytes) -> None:
    """No index yet: nothing to note."""


class MemoryStore(Store):
    """A store in a dict with a sorted key index kept in blocks; lost when the process ends.

    Writes cost a dict update and note the keys that appeared or disappeared. `items` first
    brings the index up to date: only the blocks (about `_BLOCK` sorted keys each) that hold a
    noted key are rebuilt, so the cost follows the keys written since, not the keys held.
    Blocks are never changed once published, so a running `items` iterates a snapshot of keys.
    Until the first `items` there is no index and nothing is noted (a restore fills the store
    and the first scan sorts it once).
    """

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._blocks: list[list[bytes]] = []
        self._maxes: list[bytes] = []  # the last key of each block
        self._indexed = False
        self._changed: set[bytes] = set()
        self._small: dict[bytes, bytes] = {}
        self._rows = 0
        self._bytes = 0

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def write(self, changes: Changes, existed: Mapping[bytes, bool] | None = None) -> None:
        data = self._data
        note = self._changed.add if self._indexed else _ignore
        small = self._small
        rows = size = 0
        for key, value in changes.items():
            if value is None:
                old = data.pop(key, None)
                if old is not None:
                    note(key)
                    rows -= key.startswith(OPERATOR_PREFIX)
                    size -= len(key) + len(old)
            else:
                if len(value) <= _SMALL:
                    shared = small.get(value)
                    if shared is not None:
                        value = shared
                    elif len(small) < _SMALL_KINDS:
                        small[value] = value
                old = data.get(key)
                if old is None:
                    note(key)
                    rows += key.startswith(OPERATOR_PREFIX)
                    size += len(key) + len(value)
                else:
                    size += len(value) - len(old)
                data[key] = value
        self._rows += rows
        self._bytes += size

    def _index(self) -> tuple[list[list[bytes]], list[bytes]]:
        if not self._indexed:
            keys = sorted(self._data)
            self._blocks = [keys[i : i + _BLOCK] for i in range(0, len(keys), _BLOCK)]
            self._maxes = [b[-1] for b in self._blocks]
            self._indexed = True
        elif self._changed:
            keys = sorted(self._changed)
            self._changed = set()
            blocks = self._blocks or [[]]
            maxes = self._maxes
            last = len(blocks) - 1
            rebuilt: list[tuple[int, list[bytes]]] = []
            pos, n = 0, len(keys)
            while pos < n:  # the changed keys of one block are a slice of `keys`
                j = bisect.bisect_left(maxes, keys[pos])
                end = n if j >= last else bisect.bisect_right(keys, maxes[j], pos)
                j = min(j, last)
                rebuilt.append((j, _merge_block(blocks[j], keys[pos:end], self._data)))
                pos = end
            out: list[list[bytes]] = []
            prev = 0
            for j, block in rebuilt:
                out += blocks[prev:j]
                if len(block) > 2 * _BLOCK:
                    out += [block[i : i + _BLOCK] for i in range(0, len(block), _BLOCK)]
                elif out and len(out[-1]) + len(block) <= _BLOCK:  # no trail of tiny blocks
                    out[-1] = out[-1] + block
                elif block:
                    out.append(block)
                prev = j + 1
            out += blocks[prev:]
            self._blocks = out
            self._maxes = [b[-1] for b in out]
        return self._blocks, self._maxes

    def items(self, prefix: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        blocks, maxes = self._index()
        data = self._data
        j = bisect.bisect_left(maxes, prefix)
        start = bisect.bisect_left(blocks[j], prefix) if j < len(blocks) else 0
        for block in islice(blocks, j, None):
            for key in islice(block, start, None):
                if not key.startswith(prefix) or (end is not None and key >= end):
                    return
                value = data.get(key)
                if value is not None:
                    yield key, value
            start = 0

    def clear(self) -> None:
        self._data.clear()
        self._blocks = []
        self._maxes = []
        self._indexed = False
        self._changed = set()
        self._rows = 0
        self._bytes = 0

    def rows(self) -> int:
        return self._rows

    def size_bytes(self) -> int:
        return self._bytes
