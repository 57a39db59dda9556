"""The state store interface, and the transaction and views operators work through.

The stores themselves are `memory.MemoryStore` and `rocksdb.RocksDBStore`.

A store holds the state of every stateful operator of one task, each under its own key
prefix, plus metadata (the changelog/input offsets the state reflects) written atomically
with the data it describes.
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

Changes = Mapping[bytes, bytes | None]
"""A set of writes: a value, or None for a delete."""

META_PREFIX = b"\x00meta/"
"""Keys under this prefix are store metadata (offsets, watermarks), never operator state."""
OPERATOR_PREFIX = b"s"
"""Every operator's state keys start with this byte (weir.tables.state_names.prefix_for)."""
LOCAL_PREFIX = b"l"
"""Derived state (an operator's eviction index): kept in the store, never in the changelog,
rebuilt by the operator from its state after a restore (`Operator.rebuild_local`). An
operator's local keys are its prefix with this byte in place of OPERATOR_PREFIX."""
LOCAL_STALE = "local_stale"
"""Store metadata: true when changelog records were applied since local state was built."""


class Store(ABC):
    """A sorted byte key-value store for one task.

    Contract: `write` applies all its changes atomically (all or none survive a crash);
    `items` yields keys in ascending byte order and sees every completed `write`.
    """

    @abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under `key`, or None."""

    @abstractmethod
    def write(self, changes: Changes, existed: Mapping[bytes, bool] | None = None) -> None:
        """Apply `changes` atomically; a None value deletes the key. `existed` may say for
        some changed keys whether they were held before (what the writer already read), so
        the row count need not look them up."""

    @abstractmethod
    def items(self, prefix: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Yield (key, value) for keys starting with `prefix` (and below `end`, if given),
        ascending."""

    @abstractmethod
    def clear(self) -> None:
        """Delete everything, metadata included (used before a restore from the changelog)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the store must not be used afterwards."""

    @abstractmethod
    def rows(self) -> int:
        """Return exactly how many operator state keys the store holds (groups, rows, index
        entries: every key under OPERATOR_PREFIX) as of the last write; metadata not
        counted. Cheap: kept up to date by `write` and `clear`."""

    @abstractmethod
    def size_bytes(self) -> int:
        """About how many bytes the store holds (keys and values; RocksDB's estimate of its
        live data plus its memtables). Cheap; for metrics, never exact."""

    def get_meta(self, name: str) -> Any:
        """Return the metadata value `name` (JSON-decoded), or None."""
        raw = self.get(META_PREFIX + name.encode())
        return None if raw is None else orjson.loads(raw)

    @staticmethod
    def meta_change(name: str, value: Any) -> tuple[bytes, bytes]:
        """Return the (key, value) pair that stores metadata `name`, for use in `write`."""
        return META_PREFIX + name.encode(), orjson.dumps(value)


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key that starts with `prefix` (None: no such key)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


_ABSENT = object()


class StateTxn:
    """The state changes of one micro-batch of one task, applied only on `commit`.

    Values are Python objects (JSON-able) encoded with orjson once at commit; reads see this
    transaction's own writes. Operators use a `view` under their own prefix. On failure the
    transaction is simply dropped: the store is unchanged.
    """

    __slots__ = ("_fresh", "_held", "_local", "_pending", "_sorted", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: dict[bytes, Any] = {}
        self._sorted: list[bytes] = []  # the pending keys, ascending, except those in _fresh
        self._fresh: list[bytes] = []  # pending keys first written since `_sorted` was made
        self._held: dict[bytes, bool] = {}  # whether the store held a key read from it
        self._local: set[bytes] = set()  # pending keys of local state (not for the changelog)

    def get(self, key: bytes) -> Any:
        """Return the value under `key` as of this transaction, or None."""
        value = self._pending.get(key, _ABSENT)
        if value is not _ABSENT:
            return value
        raw = self.store.get(key)
        if raw is None:
            self._held[key] = False
            return None
        self._held[key] = True
        return orjson.loads(raw)

    def put(self, key: bytes, value: Any) -> None:
        """Set `key` to a JSON-able `value` (None is not allowed: use `delete`)."""
        if key not in self._pending:
            self._fresh.append(key)
        self._pending[key] = value

    def put_all(self, items: Mapping[bytes, Any]) -> None:
        """`put` of each (key, value) of `items`."""
        pending = self._pending
        self._fresh += [key for key in items if key not in pending]
        pending.update(items)

    def delete(self, key: bytes) -> None:
        """Remove `key`."""
        if key not in self._pending:
            self._fresh.append(key)
        self._pending[key] = None

    def delete_all(self, keys: Iterable[bytes]) -> None:
        """Remove each of `keys`."""
        pending, fresh = self._pending, self._fresh
        for key in keys:
            if key not in pending:
                fresh.append(key)
            pending[key] = None

    def items(self, prefix: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, Any]]:
        """Yield (key, value) under `prefix` (and below `end`, if given) as of this
        transaction, ascending by key.

        Lazy: a caller that stops early (for example at an encoded time bound) reads no further.
        Writes made while iterating are not guaranteed to be seen by the same iteration.
        """
        return self._scan(prefix, end, True)

    def keys(self, prefix: bytes = b"", end: bytes | None = None) -> list[bytes]:
        """The keys `items` would yield (below `end`, if given), without their values."""
        return [key for key, _v in self._scan(prefix, end, False)]

    def _scan(self, prefix: bytes, end: bytes | None, decode: bool) -> Iterator[tuple[bytes, Any]]:
        """`items` (keys below `end` only, if given); with `decode` False the values read
        from the store are None."""
        if self._fresh:
            # Sort only the new keys, then one linear merge of two sorted runs (timsort).
            self._fresh.sort()
            self._sorted += self._fresh
            self._sorted.sort()
            self._fresh = []
        all_keys = self._sorted
        lo = bisect.bisect_left(all_keys, prefix)
        stop = prefix_end(prefix) if end is None else end
        hi = len(all_keys) if stop is None else bisect.bisect_left(all_keys, stop, lo)
        pending = all_keys[lo:hi]
        values = self._pending
        held = self._held
        loads = orjson.loads
        i, n = 0, len(pending)
        for key, raw in self.store.items(prefix, end):
            held[key] = True  # a later write or delete of it needs no lookup to count rows
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
            yield key, (loads(raw) if decode else None)
        while i < n:
            pk = pending[i]
            i += 1
            if values[pk] is not None:
                yield pk, values[pk]

    def view(self, prefix: bytes) -> StateView:
        """Return a view whose keys are relative to `prefix`."""
        return StateView(self, prefix)

    def local_view(self, prefix: bytes) -> StateView:
        """A view like `view(prefix)` whose writes are local state (`LOCAL_PREFIX`): committed
        to the store, left out of `changes()`."""
        return LocalView(self, prefix)

    def changes(self) -> dict[bytes, bytes | None]:
        """Return the encoded changes of this transaction for the changelog (local state
        excluded)."""
        dumps, local = orjson.dumps, self._local
        if not local:
            return {k: (None if v is None else dumps(v)) for k, v in self._pending.items()}
        return {
            k: (None if v is None else dumps(v)) for k, v in self._pending.items() if k not in local
        }

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
        pending = self._pending
        for key in self._local:
            value = pending[key]
            to_write[key] = None if value is None else orjson.dumps(value)
        for name, value in (meta or {}).items():
            key, raw = Store.meta_change(name, value)
            to_write[key] = raw
        self.store.write(to_write, self._held)
        self._held.clear()
        self._pending.clear()
        self._local = set()
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

    def items(self, prefix: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, Any]]:
        """Yield (relative key, value) under `prefix` (below `end`, if given), ascending."""
        n, own = self._n, self._prefix
        for key, value in self._txn.items(own + prefix, None if end is None else own + end):
            yield key[n:], value

    def keys(self, prefix: bytes = b"", end: bytes | None = None) -> list[bytes]:
        """The relative keys under `prefix` (below `end`, if given), ascending (values are
        not decoded)."""
        n, own = self._n, self._prefix
        found = self._txn.keys(own + prefix, None if end is None else own + end)
        return [key[n:] for key in found]

    def delete_all(self, keys: Iterable[bytes]) -> None:
        """Remove each of `keys`."""
        own = self._prefix
        self._txn.delete_all([own + key for key in keys])

    def put_all(self, items: Mapping[bytes, Any]) -> None:
        """Set each key of `items` to its JSON-able value."""
        own = self._prefix
        self._txn.put_all({own + key: value for key, value in items.items()})

    def local(self) -> StateView:
        """The view of this operator's local state (see `LOCAL_PREFIX`): same key space,
        committed with the batch, never in the changelog."""
        own = self._prefix
        if not own.startswith(OPERATOR_PREFIX):
            raise ValueError(f"no local state beside {own!r} (not an operator prefix)")
        return self._txn.local_view(LOCAL_PREFIX + own[len(OPERATOR_PREFIX) :])


class LocalView(StateView):
    """A `StateView` of local state: its writes stay out of the transaction's changes."""

    __slots__ = ()

    def put(self, key: bytes, value: Any) -> None:
        full = self._prefix + key
        self._txn._local.add(full)
        self._txn.put(full, value)

    def delete(self, key: bytes) -> None:
        full = self._prefix + key
        self._txn._local.add(full)
        self._txn.delete(full)

    def delete_all(self, keys: Iterable[bytes]) -> None:
        own = self._prefix
        full = [own + key for key in keys]
        self._txn._local.update(full)
        self._txn.delete_all(full)

    def put_all(self, items: Mapping[bytes, Any]) -> None:
        own = self._prefix
        full = {own + key: value for key, value in items.items()}
        self._txn._local.update(full)
        self._txn.put_all(full)

    def local(self) -> StateView:
        return self
