"""The byte layout of operator state: the one module that knows how times and keys are encoded
in state keys, and `TimeIndex`, the event-time ordered key layout that dedup, the stream-stream
join and arbitrary state use to evict by range scan (what a scan costs is what it evicts)."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import orjson

from weir.tables.state.store import StateView

_BIAS = 1 << 63
_TIMES = struct.Struct(">QQ")
"""A bucket and a time, each as `encode_time` writes it."""


def encode_time(t: int) -> bytes:
    """Encode a signed epoch-ms int as 8 bytes whose byte order is the numeric order."""
    return (t + _BIAS).to_bytes(8, "big")


def decode_time(raw: bytes) -> int:
    """Inverse of `encode_time` over the first 8 bytes of `raw`."""
    return int.from_bytes(raw[:8], "big") - _BIAS


def encode_key(values: Iterable[Any]) -> bytes:
    """Encode key values as compact JSON (a key equals another iff the encodings are equal)."""
    return orjson.dumps(list(values))


def bucket_width_for(span_ms: int) -> int:
    """Pick a `TimeIndex` bucket width for state that lives about `span_ms` past the watermark.

    About 32 buckets over the span, between 1 second and 1 hour. The width is part of the
    state layout: it must depend only on the query definition, never on data.
    """
    return max(1_000, min(3_600_000, span_ms // 32 or 1_000))


class TimeIndex:
    """State keys ordered by a time, for eviction by a range scan, used one batch at a time.

    Layout under `namespace` of a `StateView`:

    * `namespace + b"e" + bucket(8) + time(8) + suffix` -> value: the entries, where
      bucket = time // width and both are `encode_time`-encoded, so the keys of a bucket sort
      by time;
    * `namespace + b"d"` -> sorted list of the buckets that may hold entries (the directory),
      read once and written at most once per batch.

    `pop_through(bound)` scans only the buckets that may hold times at or before `bound`:
    with a watermark that advances batch by batch that is one or two buckets, so eviction
    costs what it evicts, not the size of the state. Create one `TimeIndex` per batch (it
    caches the directory); call `flush` before the batch ends.
    """

    __slots__ = ("_added", "_dir", "_dir_key", "_entry", "_state", "width")

    def __init__(self, state: StateView, namespace: bytes, width_ms: int) -> None:
        self._state = state
        self._entry = namespace + b"e"
        self._dir_key = namespace + b"d"
        self.width = width_ms
        self._dir: list[int] | None = None
        self._added: set[int] = set()

    def key(self, t: int, suffix: bytes) -> bytes:
        """Return the state key (relative to the view) of the entry (t, suffix)."""
        return self._entry + _TIMES.pack(t // self.width + _BIAS, t + _BIAS) + suffix

    def put(self, t: int, suffix: bytes, value: Any) -> bytes:
        """Store the entry (t, suffix) -> value; return its key."""
        key = self.key(t, suffix)
        self._state.put(key, value)
        self._added.add(t // self.width)
        return key

    def put_all(self, entries: Iterable[tuple[int, bytes, Any]]) -> None:
        """Store each entry (t, suffix) -> value."""
        items = entries if isinstance(entries, list) else list(entries)
        if not items:
            return
        width, prefix, pack = self.width, self._entry, _TIMES.pack
        self._state.put_all(
            {prefix + pack(t // width + _BIAS, t + _BIAS) + s: v for t, s, v in items}
        )
        self._added.update({t // width for t, _s, _v in items})

    def delete_all(self, entries: Iterable[tuple[int, bytes]]) -> None:
        """Remove each entry (t, suffix) (the directory is tidied by `pop_through`)."""
        width, prefix, pack = self.width, self._entry, _TIMES.pack
        self._state.delete_all(
            [prefix + pack(t // width + _BIAS, t + _BIAS) + s for t, s in entries]
        )

    def note(self, t: int) -> None:
        """Record that an entry at time `t` was written directly under `key(t, ...)`."""
        self._added.add(t // self.width)

    def delete(self, t: int, suffix: bytes) -> None:
        """Remove the entry (t, suffix) (the directory is tidied by `pop_through`)."""
        self._state.delete(self.key(t, suffix))

    def _directory(self) -> list[int]:
        if self._dir is None:
            self._dir = list(self._state.get(self._dir_key) or ())
        return self._dir

    def pop_through(self, bound: int) -> list[bytes]:
        """Remove every entry with time <= `bound` and return their suffixes, ascending by
        (time, suffix). Entries written earlier in this batch are included. Reads only the
        buckets that may hold times at or before `bound`, the last one up to `bound`."""
        return self._pop(bound, None)

    def pop_items_through(self, bound: int) -> list[tuple[bytes, Any]]:
        """`pop_through`, with each entry's value: (suffix, value) pairs."""
        values: list[Any] = []
        return list(zip(self._pop(bound, values), values, strict=True))

    def _pop(self, bound: int, values: list[Any] | None) -> list[bytes]:
        """`pop_through`; the entries' values are appended to `values` when given."""
        directory = self._directory()
        buckets = sorted(set(directory) | self._added)
        last = bound // self.width
        whole_last = (bound + 1) % self.width == 0  # `bound` is its bucket's last time
        out: list[bytes] = []
        expired: list[bytes] = []
        emptied: set[int] = set()
        state = self._state
        skip = len(self._entry) + 16
        for b in buckets:
            if b > last:
                break
            prefix = self._entry + encode_time(b)
            end = None
            if b < last or whole_last:
                emptied.add(b)
            else:
                end = prefix + encode_time(bound + 1)
            if values is None:
                keys = state.keys(prefix, end)
            else:
                found = list(state.items(prefix, end))
                keys = [key for key, _v in found]
                values += [value for _k, value in found]
            expired += keys
            out += [key[skip:] for key in keys]
        # Delete only after all scans: a delete between two scans would make the next one
        # re-merge the transaction's pending keys.
        state.delete_all(expired)
        if emptied:
            self._dir = [b for b in buckets if b not in emptied]
            self._added = set()
            state.put(self._dir_key, self._dir)
        return out

    def flush(self) -> None:
        """Persist the directory if entries were added in new buckets during this batch."""
        directory = self._directory()
        new = self._added.difference(directory)
        if new:
            self._dir = sorted(set(directory) | new)
            self._state.put(self._dir_key, self._dir)
        self._added = set()

    def earliest(self) -> int | None:
        """The smallest entry time, or None when the index is empty (reads one entry)."""
        state = self._state
        for b in sorted(set(self._directory()) | self._added):
            prefix = self._entry + encode_time(b)
            for key, _value in state.items(prefix):  # lazy: reads the first entry only
                return decode_time(key[len(prefix) : len(prefix) + 8])
        return None

    def count(self) -> int:
        """Number of entries (scans)."""
        return len(self._state.keys(self._entry))
