"""Window specs: epoch-aligned tumbling/sliding assignment and argument validation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weir.tables.window import SessionWindowSpec, WindowSpec, session_window, window

MIN = 60_000


def test_tumbling_window_is_aligned_to_the_epoch() -> None:
    w = window("event_time", "10 minutes")
    assert w == WindowSpec("event_time", 10 * MIN, 10 * MIN, 0)
    assert w.tumbling
    t = 1_714_557_600_000 + 7 * MIN  # 2024-05-01T10:07Z
    assert w.windows_of(t) == [(t - 7 * MIN, t + 3 * MIN)]


def test_window_boundaries_are_half_open() -> None:
    w = window("ts", 10)
    assert w.windows_of(0) == [(0, 10)]
    assert w.windows_of(9) == [(0, 10)]
    assert w.windows_of(10) == [(10, 20)]


def test_negative_times_use_floor_alignment() -> None:
    assert window("ts", 10).windows_of(-1) == [(-10, 0)]
    assert window("ts", 10, 5).windows_of(-5) == [(-5, 5), (-10, 0)]


def test_sliding_window_covers_each_row_size_over_slide_times() -> None:
    w = window("ts", "10 minutes", "5 minutes")
    assert not w.tumbling
    assert w.windows_of(7 * MIN) == [(5 * MIN, 15 * MIN), (0, 10 * MIN)]
    assert w.windows_of(5 * MIN) == [(5 * MIN, 15 * MIN), (0, 10 * MIN)]


def test_sliding_window_when_size_is_not_a_multiple_of_slide() -> None:
    w = window("ts", 10, 4)
    # starts are multiples of 4; windows [s, s + 10) that cover 9: s in {0, 4, 8}
    assert w.windows_of(9) == [(8, 18), (4, 14), (0, 10)]
    assert w.windows_of(10) == [(8, 18), (4, 14)]


def test_start_time_shifts_the_grid() -> None:
    w = window("ts", "10 minutes", start_time="2 minutes")
    assert w.windows_of(MIN) == [(-8 * MIN, 2 * MIN)]
    assert w.windows_of(2 * MIN) == [(2 * MIN, 12 * MIN)]


def test_durations_accept_timedelta_and_ms() -> None:
    assert window("ts", timedelta(minutes=10), 300_000).slide_ms == 5 * MIN
    assert session_window("ts", timedelta(seconds=30)) == SessionWindowSpec("ts", 30_000)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ts", 0), "positive"),
        (("ts", "10 minutes", "11 minutes"), "less than or equal"),
        (("ts", "10 minutes", 0), "positive"),
        (("ts", "bogus"), "duration"),
        (("", "10 minutes"), "column"),
    ],
)
def test_window_validation(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        window(*args)  # type: ignore[arg-type]


def test_start_time_must_be_smaller_than_slide() -> None:
    with pytest.raises(ValueError, match="start time"):
        window("ts", "10 minutes", "5 minutes", start_time="5 minutes")


def test_session_gap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        session_window("ts", 0)


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 50),
    slide_frac=st.integers(1, 50),
    offset_frac=st.integers(0, 49),
    t=st.integers(-1000, 1000),
)
def test_assignment_matches_brute_force(
    size: int, slide_frac: int, offset_frac: int, t: int
) -> None:
    slide = max(1, size * slide_frac // 50)
    offset = offset_frac % slide
    w = window("ts", size, slide, start_time=offset)
    expected = [
        (s, s + size)
        for s in range(t - size - slide, t + slide + 1)
        if (s - offset) % slide == 0 and s <= t < s + size
    ]
    assert sorted(w.windows_of(t)) == expected
