"""Where a query's output rows go: `base` (the Sink contract), `kafka` (a topic, inside the
checkpoint's transaction), `foreach_batch` (a user function per batch), `postgres` (an upsert
into a PostgreSQL table), `jsonlines` (a file, for replay)."""
