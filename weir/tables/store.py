"""Key-value state stores: one store per task (input partition), a memory and a RocksDB one.

A store holds the state of every stateful operator of one task, each under its own key
prefix, plus metadata (the changelog/input offsets the state reflects) written atomically
with the data it describes.
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

Changes = Mapping[bytes, bytes | None]
"""A set of writes: a value, or None for a delete."""

META_PREFIX = b"\x00meta/"
"""Keys under this prefix are store metadata (offsets, watermarks), never operator state."""


class Store(ABC):
    """A sorted byte key-value store for one task.

    Contract: `write` applies all its changes atomically (all or none survive a crash);
    `items` yields keys in ascending byte order and sees every completed `write`.
    """

    @abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under `key`, or None."""

    @abstractmethod
    def write(self, changes: Changes) -> None:
        """Apply `changes` atomically; a None value deletes the key."""

    @abstractmethod
    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Yield (key, value) for keys starting with `prefix`, ascending."""

    @abstractmethod
    def clear(self) -> None:
        """Delete everything, metadata included (used before a restore from the changelog)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the store must not be used afterwards."""

    @abstractmethod
    def approximate_rows(self) -> int:
        """Return about how many keys the store holds, cheaply (for progress and metrics)."""

    def get_meta(self, name: str) -> Any:
        """Return the metadata value `name` (JSON-decoded), or None."""
        raw = self.get(META_PREFIX + name.encode())
        return None if raw is None else orjson.loads(raw)

    @staticmethod
    def meta_change(name: str, value: Any) -> tuple[bytes, bytes]:
        """Return the (key, value) pair that stores metadata `name`, for use in `write`."""
        return META_PREFIX + name.encode(), orjson.dumps(value)


_BLOCK = 1000
"""Target keys per `MemoryStore` index block; a block is split when it exceeds twice that."""


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


class MemoryStore(Store):
    """A store in a dict with a sorted key index kept in blocks; lost when the process ends.

    Writes cost a dict update and note the keys that appeared or disappeared. `items` first
    brings the index up to date: only the blocks (about `_BLOCK` sorted keys each) that hold a
    noted key are rebuilt, so the cost follows the keys written since, not the keys held.
    Blocks are never changed once published, so a running `items` iterates a snapshot of keys.
    """

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._blocks: list[list[bytes]] = []
        self._maxes: list[bytes] = []  # the last key of each block
        self._changed: set[bytes] = set()

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def write(self, changes: Changes) -> None:
        data = self._data
        changed = self._changed
        for key, value in changes.items():
            if value is None:
                if data.pop(key, None) is not None:
                    changed.add(key)
            else:
                if key not in data:
                    changed.add(key)
                data[key] = value

    def _index(self) -> tuple[list[list[bytes]], list[bytes]]:
        if self._changed:
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

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        blocks, maxes = self._index()
        data = self._data
        j = bisect.bisect_left(maxes, prefix)
        start = bisect.bisect_left(blocks[j], prefix) if j < len(blocks) else 0
        for block in islice(blocks, j, None):
            for key in islice(block, start, None):
                if not key.startswith(prefix):
                    return
                value = data.get(key)
                if value is not None:
                    yield key, value
            start = 0

    def clear(self) -> None:
        self._data.clear()
        self._blocks = []
        self._maxes = []
        self._changed = set()

    def approximate_rows(self) -> int:
        return len(self._data)


class RocksDBStore(Store):
    """A store in a RocksDB directory (rocksdict); writes go through one atomic WriteBatch."""

    def __init__(self, path: Path | str) -> None:
        from rocksdict import AccessType, Options, Rdict, WriteBatch  # noqa: F401

        self._path = Path(path)
        self._path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self._db = Rdict(str(self._path), options=opts)
        self._wb_cls = WriteBatch

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def write(self, changes: Changes) -> None:
        if not changes:
            return
        wb = self._wb_cls(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        self._db.write(wb)

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iter()
        it.seek(prefix)
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                break
            yield key, it.value()
            it.next()

    def clear(self) -> None:
        keys = [k for k, _ in self.items()]
        self.write(dict.fromkeys(keys))

    def approximate_rows(self) -> int:
        return int(self._db.property_int_value("rocksdb.estimate-num-keys") or 0)

    def close(self) -> None:
        self._db.close()


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key that starts with `prefix` (None: no such key)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


class StateTxn:
    """The state changes of one micro-batch of one task, applied only on `commit`.

    Values are Python objects (JSON-able) encoded with orjson once at commit; reads see this
    transaction's own writes. Operators use a `view` under their own prefix. On failure the
    transaction is simply dropped: the store is unchanged.
    """

    __slots__ = ("_fresh", "_pending", "_sorted", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: dict[bytes, Any] = {}
        self._sorted: list[bytes] = []  # the pending keys, ascending, except those in _fresh
        self._fresh: list[bytes] = []  # pending keys first written since `_sorted` was made

    def get(self, key: bytes) -> Any:
        """Return the value under `key` as of this transaction, or None."""
        if key in self._pending:
            return self._pending[key]
        raw = self.store.get(key)
        return None if raw is None else orjson.loads(raw)

    def put(self, key: bytes, value: Any) -> None:
        """Set `key` to a JSON-able `value` (None is not allowed: use `delete`)."""
        if key not in self._pending:
            self._fresh.append(key)
        self._pending[key] = value

    def delete(self, key: bytes) -> None:
        """Remove `key`."""
        if key not in self._pending:
            self._fresh.append(key)
        self._pending[key] = None

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, Any]]:
        """Yield (key, value) under `prefix` as of this transaction, ascending by key.

        Lazy: a caller that stops early (for example at an encoded time bound) reads no further.
        Writes made while iterating are not guaranteed to be seen by the same iteration.
        """
        if self._fresh:
            # Sort only the new keys, then one linear merge of two sorted runs (timsort).
            self._fresh.sort()
            self._sorted += self._fresh
            self._sorted.sort()
            self._fresh = []
        all_keys = self._sorted
        lo = bisect.bisect_left(all_keys, prefix)
        end = _prefix_end(prefix)
        hi = len(all_keys) if end is None else bisect.bisect_left(all_keys, end, lo)
        pending = all_keys[lo:hi]
        values = self._pending
        i, n = 0, len(pending)
        for key, raw in self.store.items(prefix):
            while i < n and pending[i] < key:
                pk = pending[i]
                i += 1
                if values[pk] is not None:
                    yield pk, values[pk]
            if i < n and pending[i] == key:
                i += 1
                if values[key] is not None:
                    yield key, values[key]
                continue
            yield key, orjson.loads(raw)
        while i < n:
            pk = pending[i]
            i += 1
            if values[pk] is not None:
                yield pk, values[pk]

    def view(self, prefix: bytes) -> StateView:
        """Return a view whose keys are relative to `prefix`."""
        return StateView(self, prefix)

    def changes(self) -> dict[bytes, bytes | None]:
        """Return the encoded changes of this transaction (for the changelog)."""
        return {k: (None if v is None else orjson.dumps(v)) for k, v in self._pending.items()}

    def commit(
        self,
        meta: Mapping[str, Any] | None = None,
        changes: dict[bytes, bytes | None] | None = None,
    ) -> dict[bytes, bytes | None]:
        """Write all changes, plus `meta` entries, to the store atomically; return the changes.

        The returned mapping excludes metadata; it is what a changelog must carry. `changes`
        may pass the result of an earlier `changes()` call (no write since) to skip encoding
        the values again.
        """
        if changes is None:
            changes = self.changes()
        to_write: dict[bytes, bytes | None] = dict(changes)
        for name, value in (meta or {}).items():
            key, raw = Store.meta_change(name, value)
            to_write[key] = raw
        self.store.write(to_write)
        self._pending.clear()
        self._sorted = []
        self._fresh = []
        return changes


class StateView:
    """A prefix-scoped window onto a `StateTxn`; keys are relative to the prefix."""

    __slots__ = ("_n", "_prefix", "_txn")

    def __init__(self, txn: StateTxn, prefix: bytes) -> None:
        self._txn = txn
        self._prefix = prefix
        self._n = len(prefix)

    def get(self, key: bytes) -> Any:
        """Return the value under `key`, or None."""
        return self._txn.get(self._prefix + key)

    def put(self, key: bytes, value: Any) -> None:
        """Set `key` to a JSON-able value."""
        self._txn.put(self._prefix + key, value)

    def delete(self, key: bytes) -> None:
        """Remove `key`."""
        self._txn.delete(self._prefix + key)

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, Any]]:
        """Yield (relative key, value) under `prefix`, ascending."""
        n = self._n
        for key, value in self._txn.items(self._prefix + prefix):
            yield key[n:], value
