"""faust-streaming peer (run as a subprocess, see bench/peers.py): a Table count per action,
or a 10-minute tumbling windowed table (count, sum) per action on the Kafka timestamp
(= event time). Input records are keyed by action, so no repartition is needed.

Environment: BENCH_BOOTSTRAP, BENCH_TOPIC, BENCH_APP_ID, BENCH_MODE (count | tumbling),
BENCH_N, BENCH_GUARANTEE, BENCH_DATADIR, BENCH_MARKS, BENCH_FAUST_LINGER (producer linger in
seconds; faust's default is 0). Writes the wall time of the first, of every PROGRESS_EVERY-th
and of the n-th processed record to BENCH_MARKS."""

import json
import os
import time
from datetime import timedelta
from typing import Any

import faust

BOOTSTRAP = os.environ["BENCH_BOOTSTRAP"]
TOTAL = int(os.environ["BENCH_N"])
MARKS = os.environ["BENCH_MARKS"]
MODE = os.environ["BENCH_MODE"]
PROGRESS_EVERY = 10_000
LINGER: dict[str, Any] = (
    {"producer_linger": float(os.environ["BENCH_FAUST_LINGER"])}
    if "BENCH_FAUST_LINGER" in os.environ
    else {}
)

app = faust.App(
    os.environ["BENCH_APP_ID"],
    broker=f"kafka://{BOOTSTRAP}",
    store="memory://",
    processing_guarantee=os.environ.get("BENCH_GUARANTEE", "at_least_once"),
    datadir=os.environ["BENCH_DATADIR"],
    topic_partitions=1,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    web_host="127.0.0.1",
    **LINGER,
)
topic = app.topic(os.environ["BENCH_TOPIC"], key_serializer="raw", value_serializer="json")
counts = app.Table("counts", default=int, partitions=1)
windowed = (
    app.Table("windowed", default=lambda: (0, 0.0), partitions=1)
    .tumbling(timedelta(minutes=10), expires=timedelta(minutes=15))
    .relative_to_stream()
)
seen = [0]


def _mark() -> None:
    seen[0] += 1
    if seen[0] == 1 or seen[0] == TOTAL or seen[0] % PROGRESS_EVERY == 0:
        with open(MARKS, "a") as f:
            f.write(json.dumps({"n": seen[0], "wall": time.time()}) + "\n")


@app.agent(topic)
async def process(stream: Any) -> None:
    """Count per action (MODE=count) or tumbling count+sum per action (MODE=tumbling)."""
    async for event in stream:
        action = event["action"]
        if MODE == "count":
            counts[action] += 1
        else:
            c, s = windowed[action].current()
            windowed[action] = (c + 1, s + event["amount"])
        _mark()


if __name__ == "__main__":
    app.main()
