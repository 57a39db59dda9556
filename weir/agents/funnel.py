"""Exercise 5: an end-to-end e-commerce funnel: three Kafka topics, a windowed funnel in a Delta
Lake table (update mode), purchases enriched from a static catalog into Parquet.

Inputs (5-minute watermarks on all three), with their schemas:
    clicks       {click_id, user_id, product_id, click_time}
    cart_events  {cart_id, user_id, product_id, cart_time}
    purchases    {purchase_id, user_id, product_id, quantity, purchase_time}

Query 1, agent `funnel_metrics` (update mode, Delta Lake). As one would in Spark, each stream
is tagged with its event type and its time column renamed `event_time`, the three are unioned
and grouped by 15-minute tumbling windows of `event_time`:

    click_count     = count(when(event_type = 'click', 1))      (and cart_count, purchase_count)
    conversion_rate = purchase_count / click_count

Weir counts a column's non-null values as Spark's `count(col)` does, so each tagged row carries
its type as a column that is 1 (`click`, `cart` or `purchase`) and `count("click")` is the
`count(when(...))` above. A window without clicks (carts or purchases only) has click_count 0
and conversion_rate null: Spark SQL's `/` gives null for a zero divisor (non-ANSI mode, the
default before Spark 4; `try_divide` in ANSI mode), never an error or infinity. Weir tracks a
watermark by column name, so each stream gets its common `event_time` column first, then
`with_watermark("event_time", "5 minutes")`: the same as Spark's withWatermark on click_time
followed by an alias. The global watermark is the minimum over the three inputs of (latest
event time - 5 minutes); a row whose window ended at or before the previous batch's watermark
is late, dropped and counted in the progress's `numRowsDroppedByWatermark`. Each batch emits
the windows it changed and the Delta sink merges them on (window_start, window_end), so the
table holds every window's latest counts; a window's state is dropped once the watermark
passes its end. Duplicated events (a producer retry sending one twice) are counted as events,
as the exercise's query counts them: nothing here deduplicates.

Query 2, agent `enriched_purchases` (append, Parquet): purchases left-joined on product_id
with the static product catalog, a Parquet file read once when the query is defined (as Spark
reads a static DataFrame), adding `category` and `price`. A purchase of a product the catalog
lacks is kept with null category and price rather than dropped (Spark's default inner join
would drop it silently). The query is stateless: its watermark (the exercise asks for one on
every stream) drops nothing, as in Spark, where only stateful operators drop late rows, so
late purchases are written too.

Checkpoints: one per query, never shared. Each agent is its own query, as each
`writeStream.option("checkpointLocation", ...)` is in Spark: its own consumer group
`<app>-<agent>` (its committed offsets: Spark's offset and commit logs), its own state folder
and changelog topic `<app>-<agent>-changelog` (state store, batch ids and watermark), its own
batch identities in the Delta and Parquet sinks. A checkpoint is one query's record of how far
it has read and what its state is, for that query's plan. Shared by two queries it would mix
them up: both read `purchases`, so the offsets one commits would make the other skip records
it never counted (or count some twice); the batch ids would collide, so a sink would skip one
query's batch as "already written" by the other; and one query would restore state written
by the other's operators (Spark fails on the mismatch or misreads it). Exactly-once holds per
query only because each has its own.

`build_app(...)` makes the app (tests give their own names, topics and paths); the module's
`app` is built on first use, with its outputs and catalog under `$WEIR_HOME/funnel/`
(`.weir/funnel/` by default): importing this module writes nothing. `query` is the funnel for
`weir replay funnel` (lines with a "topic" field: clicks, cart_events or purchases).
`generate(traffic, n)` makes a realistic funnel for `weir produce funnel` and the demo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from weir import (
    App,
    Query,
    Row,
    Schema,
    Stream,
    Trigger,
    col,
    count,
    delta,
    parquet,
    read,
    static_table,
    window,
)
from weir.service.endpoints import state_dir
from weir.service.traffic import Event, Traffic

WATERMARK = "5 minutes"
WINDOW = "15 minutes"
WINDOW_MS = 15 * 60_000
WATERMARK_MS = 5 * 60_000

max_event_time_skew = "1 day"
"""The event-time guard: rows stamped more than a day ahead of the clock are dead-lettered."""

CLICKS = Schema(
    {"click_id": "string", "user_id": "string", "product_id": "string", "click_time": "timestamp"}
)
CART_EVENTS = Schema(
    {"cart_id": "string", "user_id": "string", "product_id": "string", "cart_time": "timestamp"}
)
PURCHASES = Schema(
    {
        "purchase_id": "string",
        "user_id": "string",
        "product_id": "string",
        "quantity": "integer",
        "purchase_time": "timestamp",
    }
)

FUNNEL_COLUMNS = {
    "window_start": "timestamp",
    "window_end": "timestamp",
    "click_count": "long",
    "cart_count": "long",
    "purchase_count": "long",
    "conversion_rate": "double",
}
"""The Delta table's schema (merged on window_start, window_end)."""
ENRICHED_COLUMNS = {
    "purchase_id": "string",
    "user_id": "string",
    "product_id": "string",
    "quantity": "integer",
    "purchase_time": "timestamp",
    "category": "string",
    "price": "double",
}
"""The Parquet sink's schema."""

PRODUCTS: list[tuple[str, str, str, float]] = [
    ("P001", "Trail running shoes", "shoes", 89.9),
    ("P002", "Leather boots", "shoes", 149.0),
    ("P003", "Canvas sneakers", "shoes", 49.5),
    ("P004", "Rain jacket", "apparel", 119.0),
    ("P005", "Merino T-shirt", "apparel", 39.9),
    ("P006", "Fleece hoodie", "apparel", 59.0),
    ("P007", "Wool socks", "apparel", 12.5),
    ("P008", "Noise-cancelling headphones", "electronics", 249.0),
    ("P009", "Bluetooth speaker", "electronics", 79.0),
    ("P010", "E-reader", "electronics", 129.99),
    ("P011", "USB-C charger", "electronics", 24.9),
    ("P012", "Espresso machine", "home", 399.0),
    ("P013", "Chef's knife", "home", 69.0),
    ("P014", "Cast-iron pan", "home", 45.0),
    ("P015", "Desk lamp", "home", 34.5),
    ("P016", "Yoga mat", "sports", 29.0),
    ("P017", "Dumbbell set", "sports", 99.0),
    ("P018", "Climbing rope", "sports", 159.0),
    ("P019", "Board game", "toys", 39.0),
    ("P020", "Building blocks", "toys", 59.99),
]
"""The sample product catalog: (product_id, product_name, category, price)."""


def catalog_rows() -> list[Row]:
    """The sample catalog as rows {product_id, product_name, category, price}."""
    return [
        {"product_id": p, "product_name": n, "category": c, "price": price}
        for p, n, c, price in PRODUCTS
    ]


def write_catalog(path: str | Path) -> Path:
    """Write the sample catalog as a Parquet file at `path` (its folder created; an existing
    file replaced through a temporary name); return the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema(
        [
            ("product_id", pa.string()),
            ("product_name", pa.string()),
            ("category", pa.string()),
            ("price", pa.float64()),
        ]
    )
    tmp = target.with_name(f".{target.name}.tmp")
    pq.write_table(pa.Table.from_pylist(catalog_rows(), schema=schema), tmp)
    tmp.replace(target)
    return target


def _tagger(kind: str, time_column: str) -> Callable[[Row], Row]:
    def tag(row: Row) -> Row:
        return {
            "event_type": kind,
            "event_time": row.get(time_column),
            "user_id": row.get("user_id"),
            "product_id": row.get("product_id"),
            kind: 1,
        }

    tag.__name__ = f"tag_{kind}"
    return tag


def funnel(clicks: Stream, cart_events: Stream, purchases: Stream) -> Stream:
    """The funnel over any three streams with the exercise's columns (the worker's topics, or
    replay's inputs): per 15-minute window of event time, click_count, cart_count,
    purchase_count and conversion_rate (null without clicks); see the module docstring."""
    tagged = [
        stream.map(_tagger(kind, column)).with_watermark("event_time", WATERMARK)
        for stream, kind, column in (
            (clicks, "click", "click_time"),
            (cart_events, "cart", "cart_time"),
            (purchases, "purchase", "purchase_time"),
        )
    ]
    return (
        tagged[0]
        .union(*tagged[1:])
        .group_by(window("event_time", WINDOW))
        .agg(
            count("click").alias("click_count"),
            count("cart").alias("cart_count"),
            count("purchase").alias("purchase_count"),
        )
        .withColumn("conversion_rate", col("purchase_count") / col("click_count"))
    )


def enrich(purchases: Stream, catalog_path: str | Path) -> Stream:
    """Purchases left-joined with the catalog at `catalog_path` (Parquet, read now): the
    purchase's columns plus `category` and `price` (null for a product not in the catalog)."""
    catalog = static_table(catalog_path)
    return (
        purchases.with_watermark("purchase_time", WATERMARK)
        .join(catalog, on="product_id", how="left")
        .select(*ENRICHED_COLUMNS)
    )


def data_dir() -> Path:
    """Where the module's `app` keeps its outputs and catalog: `$WEIR_HOME/funnel`."""
    return state_dir() / "funnel"


def default_paths() -> dict[str, Path]:
    """The module's `app`'s files under `data_dir()`: "delta" (the funnel's Delta table),
    "parquet" (the enriched purchases) and "catalog" (the product catalog)."""
    base = data_dir()
    return {
        "delta": base / "funnel_metrics",
        "parquet": base / "enriched_purchases",
        "catalog": base / "product_catalog.parquet",
    }


def build_app(
    name: str = "funnel",
    *,
    clicks_topic: str = "clicks",
    carts_topic: str = "cart_events",
    purchases_topic: str = "purchases",
    delta_path: str | Path | None = None,
    parquet_path: str | Path | None = None,
    catalog_path: str | Path | None = None,
    trigger: Trigger | None = None,
    **settings: Any,
) -> App:
    """The two queries as one app: `funnel_metrics` (the three topics -> the Delta table at
    `delta_path`, merged on the window) and `enriched_purchases` (`purchases_topic` joined with
    the catalog at `catalog_path` -> Parquet at `parquet_path`). Paths default to
    `default_paths()`; the sample catalog is written to `catalog_path` when no file is
    there. `settings` go to App (the event-time guard defaults to a day); `trigger` applies to
    both queries."""
    paths = default_paths()
    delta_at = Path(delta_path) if delta_path is not None else paths["delta"]
    parquet_at = Path(parquet_path) if parquet_path is not None else paths["parquet"]
    catalog_at = Path(catalog_path) if catalog_path is not None else paths["catalog"]
    if not catalog_at.exists():
        write_catalog(catalog_at)
    settings.setdefault("max_event_time_skew_ms", max_event_time_skew)
    app = App(name, **settings)
    clicks, carts, purchases = (app.topic(t) for t in (clicks_topic, carts_topic, purchases_topic))
    schemas = {clicks_topic: CLICKS, carts_topic: CART_EVENTS, purchases_topic: PURCHASES}

    @app.agent(
        clicks,
        carts,
        purchases,
        sink=delta(delta_at, FUNNEL_COLUMNS, mode="merge", keys=["window_start", "window_end"]),
        schema=schemas,
        trigger=trigger,
        name="funnel_metrics",
    )
    def funnel_metrics(clicks: Stream, carts: Stream, purchases: Stream) -> Query:
        return funnel(clicks, carts, purchases).query("update")

    @app.agent(
        purchases,
        sink=parquet(parquet_at, ENRICHED_COLUMNS),
        schema=PURCHASES,
        trigger=trigger,
        name="enriched_purchases",
    )
    def enriched_purchases(purchases: Stream) -> Query:
        return enrich(purchases, catalog_at).query("append")

    return app


query: Query = funnel(read("clicks"), read("cart_events"), read("purchases")).query("update")
"""The funnel for replay mode (`weir replay funnel`)."""


def __getattr__(name: str) -> App:
    """`app`, built on first use (`weir worker funnel`) so that importing writes nothing."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    built = build_app()
    globals()["app"] = built
    return built


USERS = 400
CART_RATE = 0.35
"""Share of clicks after which the user adds the product to the cart (later)."""
BUY_RATE = 0.45
"""Share of cart additions that end in a purchase (later)."""


def generate(traffic: Traffic, n: int, topics: Mapping[str, str] | None = None) -> Iterator[Event]:
    """`n` funnel events stamped by `traffic` (see weir.service.traffic), in production order:
    mostly clicks by any of 400 users on catalog products (a few products more popular); a
    share of the clicked (user, product) pairs come back as cart events, and a share of those
    as purchases of 1 to 3 items, each later than its click or cart (unless stamped late).
    Ids are unique per event (`c<i>`, `k<i>`, `p<i>`); a duplicate repeats one exactly.
    `topics` renames the default topics ("clicks", "cart_events", "purchases"). Every value
    comes from `traffic.rng`, so the same seed gives the same events."""
    rng = traffic.rng
    name = {t: t for t in ("clicks", "cart_events", "purchases")} | dict(topics or {})
    weights = [1.0 / (1 + k % 7) for k in range(len(PRODUCTS))]
    ids = [p[0] for p in PRODUCTS]
    clicked: list[tuple[str, str]] = []
    carted: list[tuple[str, str]] = []

    def take(pool: list[tuple[str, str]]) -> tuple[str, str]:
        k = rng.randrange(len(pool))
        pool[k], pool[-1] = pool[-1], pool[k]
        return pool.pop()

    def make(i: int, ts: str) -> Event:
        r = rng.random()
        if carted and r < 0.10:
            user, product = take(carted)
            quantity = rng.choice((1, 1, 1, 1, 2, 2, 3))
            row = {"purchase_id": f"p{i}", "user_id": user, "product_id": product}
            return name["purchases"], {**row, "quantity": quantity, "purchase_time": ts}
        if clicked and r < 0.32:
            user, product = take(clicked)
            if rng.random() < BUY_RATE:
                carted.append((user, product))
            row = {"cart_id": f"k{i}", "user_id": user, "product_id": product}
            return name["cart_events"], {**row, "cart_time": ts}
        user = f"u{rng.randrange(USERS):03d}"
        product = rng.choices(ids, weights)[0]
        if rng.random() < CART_RATE:
            clicked.append((user, product))
        del clicked[:-300], carted[:-300]  # abandoned: the oldest never come back
        row = {"click_id": f"c{i}", "user_id": user, "product_id": product}
        return name["clicks"], {**row, "click_time": ts}

    return traffic.events(n, make)
