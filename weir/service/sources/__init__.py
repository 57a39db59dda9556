"""Where a query's records come from: the Source contract (`base`), `kafka` (a consumer
group's topics, the worker's source), `files` (JSON lines, replay's source), `directory` (files
arriving in a directory, read as a stream; rows by `file_formats`, taken files in `file_log`),
`rate` (Spark's rate source: numbered rows at a fixed rate, replayable), `socket` (Spark's
socket source: text lines from a TCP server, demos only), `static` (tables for stream-static
joins)."""
