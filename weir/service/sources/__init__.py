"""What feeds a query: `base` (the Source contract and the record shape), `kafka` (a consumer
group's topics, the worker's source), `files` (JSON lines, replay's source), `rate` (Spark's
rate source: numbered rows at a fixed rate, replayable), `socket` (Spark's socket source: text
lines from a TCP server, demos only), `static` (tables for stream-static joins)."""
