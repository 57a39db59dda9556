"""Event-time parsing: the batch (Arrow) path must give exactly what the per-value path gives,
and the watermark operator must dead-letter what neither can read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weir.tables.operator import BatchContext
from weir.tables.ops.basic import WatermarkOperator
from weir.tables.state.memory import MemoryStore
from weir.tables.state.store import StateTxn
from weir.tables.timeutil import iso_utc, learn_texts, many_to_millis, to_millis

SHAPES = [
    "%Y-%m-%dT%H:%M:%S.{ms}Z",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S.{ms}+00:00",
    "%Y-%m-%dT%H:%M:%S.{ms}+02:00",
    "%Y-%m-%dT%H:%M:%S.{ms}-05:30",
    "%Y-%m-%dT%H:%M:%S.%f+00:00",  # Python's isoformat(): microseconds, floored to ms
    "%Y-%m-%dT%H:%M:%S",  # naive: Arrow refuses, to_millis reads it as UTC
    "%Y-%m-%d %H:%M:%S.{ms}",
    "%Y-%m-%dT%H:%M:%S.%f9Z",  # nanoseconds: to_millis floors them, Arrow refuses
]


def _text(dt: datetime, shape: str) -> str:
    return dt.strftime(shape).replace("{ms}", f"{dt.microsecond // 1000:03d}")


def test_to_millis_reads_iso_strings_datetimes_and_numbers() -> None:
    assert to_millis("2024-05-01T10:00:00Z") == 1_714_557_600_000
    assert to_millis("2024-05-01T12:00:00.250+02:00") == 1_714_557_600_250
    assert to_millis("2024-05-01T10:00:00") == 1_714_557_600_000  # naive is UTC
    assert to_millis(datetime(2024, 5, 1, 10, tzinfo=UTC)) == 1_714_557_600_000
    assert to_millis(1_714_557_600_000) == 1_714_557_600_000
    assert to_millis("1969-12-31T23:59:59.500Z") == -500
    for bad in ("yesterday", None, True, "2024-02-30T00:00:00Z", [1]):
        with pytest.raises(ValueError):
            to_millis(bad)


ARROW_SHAPES = SHAPES[:6]
"""The shapes the batch path reads; the others make a batch go value by value."""


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([ARROW_SHAPES, SHAPES]), st.data())
def test_batch_parsing_equals_value_by_value(palette: list[str], data: st.DataObject) -> None:
    stamp = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1))
    values = data.draw(st.lists(st.tuples(stamp, st.sampled_from(palette)), min_size=64))
    texts = [_text(dt, shape) for dt, shape in values]
    parsed = many_to_millis(texts)
    if all(shape in ARROW_SHAPES for _dt, shape in values):
        assert parsed is not None
    if parsed is not None:
        assert parsed == [to_millis(t) for t in texts]


def test_batch_parsing_declines_what_it_cannot_read_exactly() -> None:
    base = datetime(2024, 5, 1, 10, tzinfo=UTC)
    good = [(base + timedelta(seconds=i)).isoformat() for i in range(100)]
    assert many_to_millis(good) == [1_714_557_600_000 + 1000 * i for i in range(100)]
    assert many_to_millis(good[:10]) is None  # too few to gain
    for odd in (None, 17, "not a time", "2024-05-01T10:00:00.1234567Z"):
        assert many_to_millis([*good, odd]) is None


def _context() -> BatchContext:
    return BatchContext(
        batch_id=0, watermark=None, late_watermark=None, processing_time=0, has_data=True
    )


def test_watermark_operator_parses_a_batch_and_dead_letters_bad_rows() -> None:
    op = WatermarkOperator("events", "ts", 0)
    rows = [{"id": i, "ts": f"2024-05-01T10:00:{i % 60:02d}.{i:03d}Z"} for i in range(100)]
    state = StateTxn(MemoryStore()).view(b"w/")
    ctx = _context()
    out = op.process([dict(r) for r in rows], state, ctx)
    assert [r["ts"] for r in out] == [to_millis(r["ts"]) for r in rows]
    assert not ctx.errors

    mixed = [dict(r) for r in rows]
    mixed[3]["ts"] = "soon"
    del mixed[7]["ts"]
    ctx = _context()
    out = op.process(mixed, state, ctx)
    assert [r["id"] for r in out] == [i for i in range(100) if i not in (3, 7)]
    assert sorted(r["id"] for r, _reason, _stage in ctx.errors) == [3, 7]
    assert all(type(r["ts"]) is int for r in out)


@given(st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999))
def test_iso_utc_is_the_instant_as_python_formats_it(ms: int) -> None:
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    spec = "milliseconds" if ms % 1000 else "seconds"
    assert iso_utc(ms) == dt.isoformat(timespec=spec).replace("+00:00", "Z")
    assert to_millis(iso_utc(ms)) == ms


def _reference_iso(ms: int) -> str:
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return dt.isoformat(timespec="milliseconds" if ms % 1000 else "seconds").replace("+00:00", "Z")


@given(
    st.lists(
        st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999),
        min_size=64,
        max_size=80,
    )
)
@settings(max_examples=40)
def test_event_times_read_in_any_shape_are_written_back_in_iso_utc_form(times: list[int]) -> None:
    # Times read in iso_utc's own form are remembered and written back as read; a batch in
    # any other shape (".000", "+00:00", microseconds) must still come out in iso_utc's form.
    def shaped(ms: int, shape: str) -> str:
        whole = _reference_iso(ms - ms % 1000)[:-1]
        return {
            "own": _reference_iso(ms),
            "zeros": whole + ".000Z",
            "offset": _reference_iso(ms)[:-1] + "+00:00",
            "micros": whole + f".{ms % 1000:03d}456Z",
        }[shape]

    for shape in ("zeros", "offset", "micros", "own"):
        parsed = many_to_millis([shaped(ms, shape) for ms in times], "ts")
        assert parsed is not None
        learn_texts("ts")
        for ms in parsed:
            assert iso_utc(ms) == _reference_iso(ms)


def test_a_time_column_the_output_rows_lack_is_not_learned() -> None:
    # An aggregation's rows carry window bounds, not the event time its watermark parsed:
    # the parsed batch is kept for a writer that writes that column back, not learned.
    from weir.service.codec import render_rows
    from weir.tables import timeutil

    texts = [f"2026-03-01T10:{m:02d}:00Z" for m in range(60)] * 2
    parsed = many_to_millis(texts, "ts")
    assert parsed is not None
    window = {"window_start": parsed[0], "user": "u1", "n": 3}
    assert render_rows([window], ("ts", "window_start"))[0]["window_start"] == texts[0]
    assert "ts" in timeutil._LAST_READ, "learned for rows without the column"
    assert render_rows([{"ts": parsed[5]}], ("ts",)) == [{"ts": texts[5]}]
    assert "ts" not in timeutil._LAST_READ
