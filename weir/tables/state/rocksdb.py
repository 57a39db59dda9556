"""The RocksDB store (workers): one directory per task, atomic write batches."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

from weir.tables.state.store import OPERATOR_PREFIX, Changes, Store, prefix_end

MIB = 1 << 20


@dataclass(frozen=True)
class RocksDBMemory:
    """What the RocksDB stores of one process may hold in memory, all tasks together.

    `block_cache_bytes`: one LRU cache of data, index and filter blocks shared by every store
    (index and filter blocks are charged to it rather than held beside it). `write_buffer_bytes`:
    the bound on all stores' memtables together; a store whose memtable would pass its share
    is flushed to disk first. A store's own memtable is at most `memtable_bytes`.
    """

    block_cache_bytes: int = 64 * MIB
    write_buffer_bytes: int = 64 * MIB
    memtable_bytes: int = 16 * MIB


@cache
def _shared(memory: RocksDBMemory) -> tuple[Any, Any]:
    """The process's block cache and write-buffer manager for `memory` (made once)."""
    from rocksdict import Cache, WriteBufferManager

    return Cache(memory.block_cache_bytes), WriteBufferManager(memory.write_buffer_bytes, False)


def _options(memory: RocksDBMemory) -> Any:
    from rocksdict import BlockBasedOptions, Options

    block_cache, write_buffers = _shared(memory)
    table = BlockBasedOptions()
    table.set_block_cache(block_cache)
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    table.set_bloom_filter(10, False)  # a get of an absent key (a new group) skips the file
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_block_based_table_factory(table)
    opts.set_write_buffer_manager(write_buffers)
    opts.set_write_buffer_size(min(memory.memtable_bytes, memory.write_buffer_bytes))
    opts.set_max_write_buffer_number(2)
    return opts


class RocksDBStore(Store):
    """A store in a RocksDB directory (rocksdict); writes go through one atomic WriteBatch.
    Its memory is bounded by `memory`, shared with every other store of the process made
    with the same bounds."""

    def __init__(
        self, path: Path | str, memory: RocksDBMemory | None = None, count_rows: bool = True
    ) -> None:
        """`count_rows` False: `rows()` is not kept (it raises), which spares a scan at open
        and a lookup of each key written without being read first."""
        from rocksdict import Rdict, WriteBatch

        self._path = Path(path)
        self._path.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(self._path), options=_options(memory or RocksDBMemory()))
        self._wb_cls = WriteBatch
        self._closed = False
        self._counted = count_rows
        self._rows = sum(1 for _ in self.items(OPERATOR_PREFIX)) if count_rows else 0
        # The hot read: RocksDB's own get (raw mode gives bytes or None), no Python frame.
        self.get = self._db.get  # type: ignore[method-assign]

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def write(self, changes: Changes, existed: Mapping[bytes, bool] | None = None) -> None:
        if not changes:
            return
        wb = self._wb_cls(raw_mode=True)
        put, delete, op, counted = wb.put, wb.delete, OPERATOR_PREFIX, self._counted
        known = existed or {}
        unknown: list[bytes] = []  # operator keys written without being read first
        rows = 0
        for key, value in changes.items():
            if value is None:
                delete(key)
            else:
                put(key, value)
            if counted and key.startswith(op):
                held = known.get(key)
                if held is None:
                    unknown.append(key)
                    held = False
                rows += (value is not None) - held
        if unknown:
            found = cast(list[bytes | None], self._db.get(list[Any](unknown)))
            rows -= sum(v is not None for v in found)
        self._db.write(wb)
        self._rows += rows

    def items(self, prefix: bytes = b"", end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        from rocksdict import ReadOptions

        bounds = ReadOptions()
        stop = prefix_end(prefix)
        if end is not None and (stop is None or end < stop):
            stop = end
        if stop is not None:
            bounds.set_iterate_upper_bound(stop)
        # `bounds` must outlive the iteration (RocksDB keeps a pointer to the bound).
        yield from self._db.items(from_key=prefix, read_opt=bounds)
        del bounds

    def clear(self) -> None:
        keys = [k for k, _ in self.items()]
        self.write(dict.fromkeys(keys), dict.fromkeys(keys, True))

    def rows(self) -> int:
        if not self._counted:
            raise RuntimeError("this RocksDB store was opened with count_rows=False")
        return self._rows

    def size_bytes(self) -> int:
        db = self._db
        return sum(
            db.property_int_value(name) or 0
            for name in ("rocksdb.estimate-live-data-size", "rocksdb.cur-size-all-mem-tables")
        )

    def memtable_bytes(self) -> int:
        """Bytes this store holds in its memtables (bounded by `RocksDBMemory`)."""
        return self._db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()
