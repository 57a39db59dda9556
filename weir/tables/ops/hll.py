"""HyperLogLog distinct counting for `approx_count_distinct`.

A sketch with ``m = 2**p`` registers over a stable 64-bit hash (blake2b of the value's JSON
encoding, so the same value counts the same in every process and after a restore). The
estimate uses Ertl's improved estimator ("New cardinality estimation algorithms for
HyperLogLog sketches", 2017), which is accurate from 0 up to far beyond 2**40 without
empirical bias tables. Small sketches are kept sparse; the state is a JSON-able dict so it can
live in the operator state store, and two sketches of the same precision merge exactly
(register-wise maximum) - the merge of the sketches of two sets is the sketch of their union.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from hashlib import blake2b
from typing import Any

import orjson

_ALPHA_INF = 1.0 / (2.0 * math.log(2.0))
_ENC = bytes((b + 48) & 0xFF for b in range(256))
"""Register byte -> printable char (registers are < 66, so 48..113: ASCII, no escapes)."""
_DEC = bytes((b - 48) & 0xFF for b in range(256))
_NON_STR = b"\xff"
"""Prefix of non-string values' JSON before hashing (never in UTF-8), so 1 and "1" differ."""
MIN_PRECISION = 4
MAX_PRECISION = 18


def precision_for(rsd: float) -> int:
    """Return the precision p whose standard error 1.04/sqrt(2**p) is at most rsd / 3.

    So `rsd` bounds the relative error with about 99.7% confidence (for rsd=0.05: p=12, 4096
    registers, standard error 1.6%). Raises ValueError unless 0 < rsd < 1; clamps p to
    [4, 18].
    """
    if not 0.0 < rsd < 1.0:
        raise ValueError(f"rsd must be between 0 and 1 (exclusive), not {rsd!r}")
    p = math.ceil(2.0 * math.log2(3.0 * 1.04 / rsd))
    return max(MIN_PRECISION, min(MAX_PRECISION, p))


def hash64(value: Any) -> int:
    """Return a stable 64-bit hash of a JSON-able value (type-aware: 1 and "1" differ).

    Strings hash their UTF-8 bytes; other values their JSON text behind a 0xFF byte.
    """
    data = value.encode() if type(value) is str else _NON_STR + orjson.dumps(value)
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


class HyperLogLog:
    """A HyperLogLog sketch of precision `p`.

    Contract: `add`/`update` never lower a register; `merge` with a sketch of the same
    precision gives the sketch of the union; `cardinality` is deterministic for a given set
    of values (independent of insertion order, batching or merges); `to_state`/`from_state`
    round-trip exactly through JSON.
    """

    __slots__ = ("_dense", "_sparse", "p")

    def __init__(self, p: int = 12) -> None:
        if not MIN_PRECISION <= p <= MAX_PRECISION:
            raise ValueError(f"precision must be in [{MIN_PRECISION}, {MAX_PRECISION}], not {p}")
        self.p = p
        self._sparse: dict[int, int] | None = {}
        self._dense: bytearray | None = None

    @classmethod
    def with_rsd(cls, rsd: float = 0.05) -> HyperLogLog:
        """Return an empty sketch sized for relative error `rsd` (see `precision_for`)."""
        return cls(precision_for(rsd))

    # -- adding ---------------------------------------------------------------------------
    def add(self, value: Any) -> None:
        """Add one value (None is ignored, as Spark ignores nulls)."""
        if value is not None:
            self.add_hashes((hash64(value),))

    def update(self, values: Iterable[Any]) -> None:
        """Add many values (Nones ignored)."""
        enc = orjson.dumps
        self.add_hashes(
            int.from_bytes(
                blake2b(
                    v.encode() if type(v) is str else _NON_STR + enc(v), digest_size=8
                ).digest(),
                "big",
            )
            for v in values
            if v is not None
        )

    def add_hashes(self, hashes: Iterable[int]) -> None:
        """Add values by their 64-bit hashes."""
        p = self.p
        q = 64 - p
        mask = (1 << q) - 1
        sparse = self._sparse
        if sparse is not None:
            limit = self._sparse_limit()
            hashes = iter(hashes)
            for h in hashes:
                idx = h >> q
                rank = q - (h & mask).bit_length() + 1
                if rank > sparse.get(idx, 0):
                    sparse[idx] = rank
                    if len(sparse) > limit:
                        self._to_dense()
                        # continue densely with the rest of the iterator
                        self.add_hashes(hashes)
                        return
            return
        regs = self._dense
        assert regs is not None
        for h in hashes:
            idx = h >> q
            rank = q - (h & mask).bit_length() + 1
            if rank > regs[idx]:
                regs[idx] = rank

    def merge(self, other: HyperLogLog) -> None:
        """Fold `other` (same precision) into this sketch; raises ValueError otherwise."""
        if other.p != self.p:
            raise ValueError(f"cannot merge HyperLogLog sketches of precision {self.p}, {other.p}")
        if other._sparse is not None:
            self.add_registers(other._sparse.items())
            return
        assert other._dense is not None
        if self._sparse is not None:
            self._to_dense()
        regs = self._dense
        assert regs is not None
        self._dense = bytearray(map(max, regs, other._dense))

    def add_registers(self, items: Iterable[tuple[int, int]]) -> None:
        """Raise registers to at least the given (index, rank) values."""
        sparse = self._sparse
        if sparse is not None:
            for idx, rank in items:
                if rank > sparse.get(idx, 0):
                    sparse[idx] = rank
            if len(sparse) > self._sparse_limit():
                self._to_dense()
            return
        regs = self._dense
        assert regs is not None
        for idx, rank in items:
            if rank > regs[idx]:
                regs[idx] = rank

    # -- estimating -----------------------------------------------------------------------
    def cardinality(self) -> int:
        """Return the estimated number of distinct values added (Ertl's improved estimator)."""
        p = self.p
        m = 1 << p
        q = 64 - p
        counts = [0] * (q + 2)
        if self._sparse is not None:
            counts[0] = m - len(self._sparse)
            for rank in self._sparse.values():
                counts[rank] += 1
        else:
            assert self._dense is not None
            for rank in range(q + 2):
                counts[rank] = self._dense.count(rank)
        if counts[0] == m:
            return 0
        z = m * _tau(1.0 - counts[q + 1] / m)
        for k in range(q, 0, -1):
            z = 0.5 * (z + counts[k])
        z += m * _sigma(counts[0] / m)
        return round(_ALPHA_INF * m * m / z)

    # -- state ----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Return a JSON-able state: {"p": p, "s": [idx, rank, ...]} or {"p": p, "d": str}."""
        if self._sparse is not None:
            flat: list[int] = []
            for idx in sorted(self._sparse):
                flat.append(idx)
                flat.append(self._sparse[idx])
            return {"p": self.p, "s": flat}
        assert self._dense is not None
        return {"p": self.p, "d": self._dense.translate(_ENC).decode("ascii")}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HyperLogLog:
        """Rebuild a sketch from `to_state` output."""
        hll = cls(int(state["p"]))
        if "d" in state:
            regs = bytearray(state["d"].encode("ascii").translate(_DEC))
            if len(regs) != 1 << hll.p:
                raise ValueError("HyperLogLog state has the wrong number of registers")
            hll._sparse = None
            hll._dense = regs
        else:
            flat = state["s"]
            hll._sparse = dict(zip(flat[0::2], flat[1::2], strict=True))
        return hll

    def _sparse_limit(self) -> int:
        # A sparse entry costs ~10 JSON bytes vs 1 per dense register: switch at m/8 entries.
        return (1 << self.p) // 8

    def _to_dense(self) -> None:
        regs = bytearray(1 << self.p)
        assert self._sparse is not None
        for idx, rank in self._sparse.items():
            regs[idx] = rank
        self._sparse = None
        self._dense = regs


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y = 1.0
    z = x
    while True:
        x *= x
        z_old = z
        z += x * y
        y += y
        if z == z_old:
            return z


def _tau(x: float) -> float:
    if x == 0.0 or x == 1.0:
        return 0.0
    y = 1.0
    z = 1.0 - x
    while True:
        x = math.sqrt(x)
        z_old = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == z_old:
            return z / 3.0
