"""The RocksDB store (workers): one directory per task, atomic write batches."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from weir.tables.state.store import OPERATOR_PREFIX, Changes, Store


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
        self._closed = False
        self._rows = sum(1 for _ in self.items(OPERATOR_PREFIX))

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def write(self, changes: Changes, existed: Mapping[bytes, bool] | None = None) -> None:
        if not changes:
            return
        known = existed or {}
        ops = [k for k in changes if k.startswith(OPERATOR_PREFIX)]
        unknown = [k for k in ops if k not in known]
        found = cast(list[bytes | None], self._db.get(list[Any](unknown))) if unknown else []
        held = dict(zip(unknown, (v is not None for v in found), strict=True))
        rows = sum((changes[k] is not None) - (known[k] if k in known else held[k]) for k in ops)
        wb = self._wb_cls(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        self._db.write(wb)
        self._rows += rows

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
        self.write(dict.fromkeys(keys), dict.fromkeys(keys, True))

    def rows(self) -> int:
        return self._rows

    def size_bytes(self) -> int:
        db = self._db
        return sum(
            db.property_int_value(name) or 0
            for name in ("rocksdb.estimate-live-data-size", "rocksdb.cur-size-all-mem-tables")
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()
