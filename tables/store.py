"""Key-value state stores: one store per task (input partition), a memory and a RocksDB one.

A store holds the state of every stateful operator of one task, each under its own key
prefix, plus metadata (the changelog/input offsets the state reflects) written atomically
with the data it describes.
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
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


class MemoryStore(Store):
    """A store in a dict with a lazily merged sorted key index; lost when the process ends.

    Writes cost a dict update; the sorted index is brought up to date (one C-level merge of
    sorted runs) only when `items` is called.
    """

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        self._added: list[bytes] = []
        self._removed = False

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def write(self, changes: Changes) -> None:
        data = self._data
        added = self._added
        for key, value in changes.items():
            if value is None:
                if data.pop(key, None) is not None:
                    self._removed = True
            else:
                if key not in data:
                    added.append(key)
                data[key] = value

    def _index(self) -> list[bytes]:
        if self._removed or self._added:
            data = self._data
            keys = [k for k in self._keys if k in data] if self._removed else self._keys
            if self._added:
                self._added.sort()
                keys = sorted(keys + [k for k in self._added if k in data])
            self._keys = keys
            self._added = []
            self._removed = False
        return self._keys

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        keys = self._index()  # a snapshot: later writes rebuild a new list
        data = self._data
        i = bisect.bisect_left(keys, prefix)
        n = len(keys)
        while i < n:
            key = keys[i]
            if not key.startswith(prefix):
                return
            value = data.get(key)
            if value is not None:
                yield key, value
            i += 1

    def clear(self) -> None:
        self._data.clear()
        self._keys = []
        self._added = []
        self._removed = False

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
        self._opts = opts
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

    def flush(self) -> None:
        """Make every completed write durable on disk."""
        self._db.flush(wait=True)

    def close(self) -> None:
        self._db.close()


class StateTxn:
    """The state changes of one micro-batch of one task, applied only on `commit`.

    Values are Python objects (JSON-able) encoded with orjson once at commit; reads see this
    transaction's own writes. Operators use a `view` under their own prefix. On failure the
    transaction is simply dropped: the store is unchanged.
    """

    __slots__ = ("_pending", "_sorted", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: dict[bytes, Any] = {}
        self._sorted: list[bytes] | None = None

    def get(self, key: bytes) -> Any:
        """Return the value under `key` as of this transaction, or None."""
        if key in self._pending:
            return self._pending[key]
        raw = self.store.get(key)
        return None if raw is None else orjson.loads(raw)

    def put(self, key: bytes, value: Any) -> None:
        """Set `key` to a JSON-able `value` (None is not allowed: use `delete`)."""
        if key not in self._pending:
            self._sorted = None
        self._pending[key] = value

    def delete(self, key: bytes) -> None:
        """Remove `key`."""
        if key not in self._pending:
            self._sorted = None
        self._pending[key] = None

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, Any]]:
        """Yield (key, value) under `prefix` as of this transaction, ascending by key.

        Lazy: a caller that stops early (for example at an encoded time bound) reads no further.
        Writes made while iterating are not guaranteed to be seen by the same iteration.
        """
        if self._sorted is None:
            self._sorted = sorted(self._pending)
        all_keys = self._sorted
        lo = bisect.bisect_left(all_keys, prefix)
        hi = lo
        while hi < len(all_keys) and all_keys[hi].startswith(prefix):
            hi += 1
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
        self._sorted = None
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
