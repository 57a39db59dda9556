"""The operators, one module per family: `basic` (map, filter, watermark, union), `functions`
(aggregate functions) and `hll`, `aggregate` and `sessions` (grouped aggregation), `dedup`,
`join` (stream-stream), `static` (stream-static), `arbitrary` (flat_map_groups_with_state).

Only the builder (`weir.tables.stream`) imports them."""
