"""What feeds a query: `base` (the Source contract and the record shape), `kafka` (a consumer
group's topics, the worker's source), `files` (JSON lines, replay's source), `static` (tables
for stream-static joins)."""
