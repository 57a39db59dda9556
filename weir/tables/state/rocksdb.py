"""The RocksDB store (workers): one directory per task, atomic write batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from weir.tables.state.store import Changes, Store


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
