"""Where a query's output rows go: `base` (the Sink contract), `kafka` (a topic, inside the
checkpoint's transaction), `foreach_batch` (a user function per batch, and `write_batch` to
several sinks from it), `postgres` (an upsert into a PostgreSQL table), `parquet` and `delta`
(table folders; `parquet_compact` merges a Parquet table's small files), `errors` (any sink
that keeps failing logs its batch to an error file and the query goes on), `jsonlines` (a
file, for replay)."""
