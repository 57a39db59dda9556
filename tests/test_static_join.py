"""Stream-static joins over Parquet, Delta Lake, CSV, in-memory rows and a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from weir.service.sources.static import static_table
from weir.tables.query import QueryTask
from weir.tables.state.memory import MemoryStore
from weir.tables.state.store import Store
from weir.tables.stream import read

PRODUCTS: list[dict[str, Any]] = [
    {"product_id": "p1", "category": "books", "price": 12.5},
    {"product_id": "p2", "category": "games", "price": 40.0},
    {"product_id": "p2", "category": "games-bundle", "price": 55.0},
]


def run(task: QueryTask, rows: list[dict[str, Any]], pt: int) -> list[dict[str, Any]]:
    result = task.run_batch({"purchases": rows}, pt)
    task.commit(result)
    return result.rows


PURCHASES: list[dict[str, Any]] = [
    {"purchase_id": 1, "product_id": "p1", "qty": 2},
    {"purchase_id": 2, "product_id": "p9", "qty": 1},
    {"purchase_id": 3, "product_id": "p2", "qty": 1},
    {"purchase_id": 4, "product_id": None, "qty": 1},
]

INNER: list[dict[str, Any]] = [
    {"purchase_id": 1, "product_id": "p1", "qty": 2, "category": "books", "price": 12.5},
    {"purchase_id": 3, "product_id": "p2", "qty": 1, "category": "games", "price": 40.0},
    {"purchase_id": 3, "product_id": "p2", "qty": 1, "category": "games-bundle", "price": 55.0},
]
LEFT: list[dict[str, Any]] = [
    INNER[0],
    {"purchase_id": 2, "product_id": "p9", "qty": 1, "category": None, "price": None},
    *INNER[1:],
    {"purchase_id": 4, "product_id": None, "qty": 1, "category": None, "price": None},
]


def check_inner_and_left(source: Any, store: Store, **kw: Any) -> None:
    table: Any = static_table(source, **kw)  # Stream.join is typed for streams only
    inner = read("purchases").join(table, on="product_id").query()
    assert run(inner.task(store), [dict(r) for r in PURCHASES], 1) == INNER
    left = read("purchases").join(table, on="product_id", how="left").query()
    assert run(left.task(MemoryStore()), [dict(r) for r in PURCHASES], 1) == LEFT


def test_rows_source(store: Store) -> None:
    check_inner_and_left(PRODUCTS, store)


def test_parquet_file_and_directory(tmp_path: Path, store: Store) -> None:
    pq.write_table(pa.Table.from_pylist(PRODUCTS), tmp_path / "products.parquet")
    check_inner_and_left(tmp_path / "products.parquet", store)
    d = tmp_path / "dir"
    d.mkdir()
    pq.write_table(pa.Table.from_pylist(PRODUCTS), d / "part-0.parquet")
    check_inner_and_left(str(d), MemoryStore())


def test_delta_table(tmp_path: Path, store: Store) -> None:
    from deltalake import write_deltalake

    write_deltalake(str(tmp_path / "delta"), pa.Table.from_pylist(PRODUCTS))
    check_inner_and_left(str(tmp_path / "delta"), store)


def test_csv_file(tmp_path: Path, store: Store) -> None:
    lines = ["product_id,category,price"] + [
        f"{p['product_id']},{p['category']},{p['price']}" for p in PRODUCTS
    ]
    (tmp_path / "products.csv").write_text("\n".join(lines) + "\n")
    check_inner_and_left(tmp_path / "products.csv", store)


def test_values_normalised_and_timestamps_rendered(tmp_path: Path) -> None:
    when = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    rows = [{"product_id": "p1", "since": when, "cost": Decimal("1.50"), "category": "x"}]
    table: Any = static_table(rows)
    q = read("purchases").join(table, on="product_id").query()
    out = run(q.task(MemoryStore()), [{"product_id": "p1", "category": "y"}], 1)
    assert out == [
        {
            "product_id": "p1",
            "left_category": "y",
            "since": 1714557600000,
            "cost": 1.5,
            "right_category": "x",
        }
    ]
    assert "since" in q.timestamp_columns


def test_periodic_reload(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist(PRODUCTS[:1]), path)
    table: Any = static_table(path, reload_every="10 minutes")
    task = read("purchases").join(table, on="product_id", how="left").query().task(MemoryStore())
    t0 = 1_700_000_000_000
    assert run(task, [{"product_id": "p1"}], t0)[0]["category"] == "books"
    pq.write_table(pa.Table.from_pylist([{**PRODUCTS[0], "category": "novels"}]), path)
    assert run(task, [{"product_id": "p1"}], t0 + 9 * 60_000)[0]["category"] == "books"
    assert run(task, [{"product_id": "p1"}], t0 + 10 * 60_000)[0]["category"] == "novels"


def test_refusals() -> None:
    table: Any = static_table(PRODUCTS)
    with pytest.raises(ValueError, match="unsupported join type"):
        read("purchases").join(table, on="product_id", how="right")
    with pytest.raises(ValueError, match="no time range"):
        read("purchases").join(table, on="product_id", between=("a", "b", "b"))
    with pytest.raises(ValueError, match="query="):
        static_table("postgresql://localhost/db")


@pytest.mark.postgres
def test_postgres_source(postgres_dsn: str, store: Store) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS weir_static_products")
        conn.execute(
            "CREATE TABLE weir_static_products (product_id text, category text, price numeric)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO weir_static_products VALUES (%s, %s, %s)",
                [(p["product_id"], p["category"], p["price"]) for p in PRODUCTS],
            )
    check_inner_and_left(
        postgres_dsn,
        store,
        query="SELECT product_id, category, price FROM weir_static_products ORDER BY price",
    )
