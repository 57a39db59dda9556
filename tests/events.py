"""Test events on one day, as the course's examples use them."""

from __future__ import annotations

from typing import Any

from weir.tables.operator import Row
from weir.tables.timeutil import to_millis

DAY = "2024-05-01"


def ms(hhmm: str) -> int:
    """Epoch ms of `hhmm` on the test day."""
    return to_millis(f"{DAY}T{hhmm}:00Z")


def ev(hhmm: str, action: str = "click", user: str = "u1", amount: Any = 1.0) -> Row:
    """An input event as it arrives on the "events" topic."""
    return {
        "event_id": f"{action}-{user}-{hhmm}-{amount}",
        "user_id": user,
        "action": action,
        "amount": amount,
        "event_time": f"{DAY}T{hhmm}:00Z",
    }


def win(start: str, end: str) -> dict[str, int]:
    return {"window_start": ms(start), "window_end": ms(end)}
