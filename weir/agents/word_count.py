"""Word count, the course's first example (section 1.2), as a Weir agent.

    lines = spark.readStream.format(...).load()
    words = lines.select(explode(split(lines.value, " ")).alias("word"))
    word_counts = words.groupBy("word").count()
    query = word_counts.writeStream.outputMode("update")...

Weir's query is those two lines as written (`build`). Words are split on single spaces, as
Spark's `split(value, " ")` splits them: "The" and "the" are two words, and two spaces make
an empty word "". A line whose value is null gives no word.

Input: topic `lines`, JSON rows {"value": "some text"}. Output: topic `word-counts`, one row
{"word": ..., "count": ...} per word whose count changed in the micro-batch (update mode),
keyed by the word, so a compacted topic holds the current count of every word.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from weir import App, Query, Stream, explode, read, split
from weir.service.traffic import Event, Traffic

VOCABULARY = (
    "stream", "table", "window", "watermark", "kafka", "spark", "state", "join", "late",
    "event", "time", "batch", "query", "offset", "checkpoint", "exactly", "once", "sink",
    "source", "update", "append", "complete", "trigger", "agent", "partition", "changelog",
    "replay", "session", "sliding", "tumbling", "dedup", "order", "payment", "click",
)  # fmt: skip

app = App("wordcount")
lines_topic = app.topic("lines")
counts_topic = app.topic("word-counts", config={"cleanup.policy": "compact"})


def build(lines: Stream) -> Query:
    """The word-count query over a stream of lines, as the course writes it."""
    words = lines.select(explode(split(lines.value, " ")).alias("word"))
    word_counts = words.groupBy("word").count()
    return word_counts.query("update")


@app.agent(lines_topic, sink=counts_topic, key="word")
def word_count(lines: Stream) -> Query:
    """Running count per word, emitted in update mode."""
    return build(lines)


query = build(read("lines"))
"""The same query for replay mode (`weir replay word_count`)."""


def line(rng: random.Random, words: int = 8) -> str:
    """A line of `words` words of VOCABULARY, Zipf-like: a few words are much more frequent,
    like real text (what `weir demo` produces)."""
    last = len(VOCABULARY) - 1
    return " ".join(VOCABULARY[min(int(rng.paretovariate(1.2)) - 1, last)] for _ in range(words))


def generate(traffic: Traffic, n: int) -> Iterator[Event]:
    """`weir produce`'s input: `n` rows {"value": line} on `lines` (no event time: the count
    is not windowed, so `traffic`'s late events are ordinary lines)."""
    return traffic.events(n, lambda _i, _at: ("lines", {"value": line(traffic.rng)}))
