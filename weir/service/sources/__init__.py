"""What feeds a query: `base` (the Source contract and the record shape), `kafka` (a consumer
group's topics, the worker's source), `files` (JSON lines, replay's source), `directory` (files
arriving in a directory, read as a stream; rows by `file_formats`, taken files in `file_log`),
`static` (tables for stream-static joins)."""
