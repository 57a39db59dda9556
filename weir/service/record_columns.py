"""Columns from the input record itself, as Spark's Kafka source exposes them beside `value`:
`key`, `topic`, `partition`, `offset` and the broker `timestamp`.

An agent asks for them with `record_columns=True` (all five, Spark's names), a list of
those names, or a mapping {record field: column name} to rename one that would clash with a
field of the value (a value field of the same name is overwritten). `key` is the key's text
(UTF-8, undecodable bytes replaced; null without a key), `timestamp` the broker's record
timestamp as an event-time column (null when the source has none, as files). `value`, only
when named (not with True), is the record's value bytes, as Spark's Kafka source has it:
`from_json(col("value").cast("string"), schema)` parses it (the value is still decoded as the
row's fields too, so it must be a JSON object).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from weir.service.sources.base import SourceRecord
from weir.tables.operator import Row

FIELDS = ("key", "topic", "partition", "offset", "timestamp")
"""The fields `record_columns=True` adds."""
TYPES = {
    "key": "string",
    "topic": "string",
    "partition": "int",
    "offset": "bigint",
    "timestamp": "timestamp",
    "value": "binary",
}
"""Each record field's Spark type name."""

RecordColumns = bool | Sequence[str] | Mapping[str, str]
"""How an agent names the record columns it wants (see the module docstring)."""


def parse_record_columns(spec: RecordColumns | None) -> dict[str, str]:
    """{record field: column name}; raises ValueError naming an unknown field."""
    if spec is None or spec is False:
        return {}
    if spec is True:
        return {f: f for f in FIELDS}
    if isinstance(spec, str):
        spec = [spec]
    pairs = dict(spec) if isinstance(spec, Mapping) else {f: f for f in spec}
    unknown = sorted(set(pairs) - set(TYPES))
    if unknown:
        raise ValueError(f"record_columns: unknown fields {unknown} (one of {list(TYPES)})")
    return pairs


def add_record_columns(
    rows: list[Row],
    recs: Sequence[SourceRecord],
    positions: Sequence[int] | None,
    columns: Mapping[str, str],
) -> None:
    """Set the record columns of each row from the record it was decoded from (`positions`:
    the record index of each row, None when row i comes from record i)."""
    for j, row in enumerate(rows):
        rec = recs[j if positions is None else positions[j]]
        for field, column in columns.items():
            if field == "key":
                key = rec.key
                row[column] = None if key is None else key.decode(errors="replace")
            elif field == "timestamp":
                ts = rec.timestamp
                row[column] = ts if ts is not None and ts >= 0 else None
            else:
                row[column] = getattr(rec, field)
