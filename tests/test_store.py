"""State stores and transactions against a plain dict model: sorted prefix scans stay exact
through many small and large batches of writes, deletes and re-inserts."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TypeVar

import pytest

import weir.tables.state.memory as store_mod
from weir.tables.state.layout import TimeIndex
from weir.tables.state.memory import MemoryStore
from weir.tables.state.rocksdb import RocksDBMemory, RocksDBStore
from weir.tables.state.store import OPERATOR_PREFIX, StateTxn, Store

PREFIXES = [b"", b"a", b"ab", b"b\xff", b"\xff", b"c"]
V = TypeVar("V")


def _expect(model: dict[bytes, V], prefix: bytes) -> list[tuple[bytes, V]]:
    return sorted((k, v) for k, v in model.items() if k.startswith(prefix))


def _random_key(rng: random.Random) -> bytes:
    return bytes(rng.choice(b"abc\xff") for _ in range(rng.randint(1, 4)))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("block", [4, 16])
def test_prefix_scans_match_a_dict_model(
    store: Store, seed: int, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small index blocks: many splits, and both the one-key and the rebuild paths of a block.
    monkeypatch.setattr(store_mod, "_BLOCK", block)
    rng = random.Random(seed)
    model: dict[bytes, bytes] = {}
    for _batch in range(60):
        changes: dict[bytes, bytes | None] = {}
        for _ in range(rng.choice([1, 3, 40])):
            key = _random_key(rng)
            changes[key] = None if rng.random() < 0.4 else str(rng.random()).encode()
        store.write(changes)
        for k, v in changes.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
        for prefix in PREFIXES:
            assert list(store.items(prefix)) == _expect(model, prefix)
            end = prefix + _random_key(rng)
            bounded = [(k, v) for k, v in _expect(model, prefix) if k < end]
            assert list(store.items(prefix, end)) == bounded
        if isinstance(store, MemoryStore):  # the index holds no removed key (no leak)
            assert [k for b in store._blocks for k in b] == sorted(model)


def test_memory_store_scan_is_a_snapshot_of_keys() -> None:
    s = MemoryStore()
    s.write({b"k%04d" % i: b"v" for i in range(5000)})
    it = s.items(b"k")
    assert next(it) == (b"k0000", b"v")
    s.write({b"k0001": None, b"k00005": b"new"})
    rest = [k for k, _ in it]
    assert b"k0001" not in rest  # deleted keys are not yielded...
    assert b"k00005" not in rest  # ...and keys written after the scan began are not seen
    assert len(rest) == 4998
    assert [k for k, _ in s.items(b"k000")][:3] == [b"k0000", b"k00005", b"k0002"]


@pytest.mark.parametrize("seed", range(3))
def test_txn_scans_merge_pending_writes_with_the_store(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    model: dict[bytes, int] = {}
    for _batch in range(15):
        txn = StateTxn(store)
        for _ in range(rng.randint(1, 30)):
            key = _random_key(rng)
            if rng.random() < 0.4:
                txn.delete(key)
                model.pop(key, None)
            else:
                value = rng.randint(0, 9)
                txn.put(key, value)
                model[key] = value
            if rng.random() < 0.3:  # scans interleaved with writes re-merge the pending keys
                for prefix in PREFIXES:
                    assert list(txn.items(prefix)) == _expect(model, prefix)
        txn.commit()
        for prefix in PREFIXES:
            assert list(StateTxn(store).items(prefix)) == _expect(model, prefix)


@pytest.mark.parametrize("seed", range(3))
def test_rows_is_the_exact_number_of_operator_keys(store: Store, seed: int, tmp_path: Path) -> None:
    """Through transactions that read some keys before writing them and not others, deletes
    of absent keys, puts over held keys and metadata writes, `rows()` equals the count of
    operator keys; a reopened RocksDB store counts the same."""
    rng = random.Random(seed)
    model: dict[bytes, int] = {}
    for _batch in range(40):
        txn = StateTxn(store)
        for _ in range(rng.randint(1, 40)):
            key = OPERATOR_PREFIX + _random_key(rng) if rng.random() < 0.8 else _random_key(rng)
            if rng.random() < 0.5:
                txn.get(key)  # the transaction now knows whether the store held it
            if rng.random() < 0.35:
                txn.delete(key)
                model.pop(key, None)
            else:
                txn.put(key, rng.randint(0, 9))
                model[key] = 1
        txn.commit({"offset": _batch})
        assert store.rows() == sum(k.startswith(OPERATOR_PREFIX) for k in model)
    if isinstance(store, RocksDBStore):
        store.close()
        again = RocksDBStore(tmp_path / "db")
        assert again.rows() == sum(k.startswith(OPERATOR_PREFIX) for k in model)
        again.clear()
        assert again.rows() == 0
        again.close()


def test_rocksdb_memtables_of_all_stores_stay_within_the_shared_bound(tmp_path: Path) -> None:
    # Two tasks' stores share one bound of 4 MiB: 40 MiB of writes stay near it (flushes run
    # in the background, so a little over), where a 1 GiB bound lets each store fill its own
    # 16 MiB memtable.
    def most_held(bound: int, folder: Path) -> int:
        memory = RocksDBMemory(block_cache_bytes=16 << 20, write_buffer_bytes=bound)
        stores = [RocksDBStore(folder / str(i), memory) for i in range(2)]
        rng = random.Random(7)
        most = 0
        for i in range(200):
            for s in stores:
                s.write({b"k%08d" % (i * 1000 + j): rng.randbytes(100) for j in range(1000)})
            most = max(most, sum(s.memtable_bytes() for s in stores))
        assert stores[1].get(b"k00000005") is not None
        assert stores[0].get(b"k00199999") is not None
        for s in stores:
            s.close()
        return most

    assert most_held(4 << 20, tmp_path / "bounded") <= 12 << 20
    assert most_held(1 << 30, tmp_path / "unbounded") >= 24 << 20


def test_a_rocksdb_store_that_does_not_count_rows_still_holds_every_write(
    tmp_path: Path,
) -> None:
    store = RocksDBStore(tmp_path / "db", count_rows=False)
    store.write({OPERATOR_PREFIX + b"a": b"1", OPERATOR_PREFIX + b"b": b"2", b"\x01m": b"3"})
    store.write({OPERATOR_PREFIX + b"a": None})
    assert list(store.items()) == [(b"\x01m", b"3"), (OPERATOR_PREFIX + b"b", b"2")]
    with pytest.raises(RuntimeError, match="count_rows"):
        store.rows()
    store.close()


@pytest.mark.parametrize("seed", range(4))
def test_time_index_pops_exactly_the_entries_at_or_before_each_bound(seed: int) -> None:
    # Bounds inside buckets, on their last millisecond and past several at once; entries put
    # in the same batch as the pop and in earlier committed batches.
    rng = random.Random(seed)
    store = MemoryStore()
    model: set[tuple[int, bytes]] = set()
    bound = -50
    for _batch in range(30):
        txn = StateTxn(store)
        idx = TimeIndex(txn.view(b"s1/"), b"x", 10)
        for _ in range(rng.randint(0, 12)):
            t, suffix = bound + rng.randint(1, 60), _random_key(rng)
            idx.put(t, suffix, 1)
            model.add((t, suffix))
        bound += rng.choice([0, 3, 9, 10, 25])
        if rng.random() < 0.3:
            bound = (bound // 10) * 10 + 9  # a bucket's last millisecond
        popped = idx.pop_through(bound)
        gone = sorted(e for e in model if e[0] <= bound)
        assert popped == [suffix for _t, suffix in gone]
        model.difference_update(gone)
        idx.flush()
        txn.commit()
        assert idx.count() == len(model)
