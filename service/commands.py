"""Sub-commands of `weir` beyond `local`: worker, replay, demo."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the sub-commands to the `weir` parser's sub-parsers."""
