"""`weir status`: a running worker's queries, read from its `/progress` endpoint."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from typing import Any

import orjson

_TIMEOUT_S = 5.0
_COLUMNS = ("QUERY", "STATUS", "BATCH", "INPUT/S", "PROCESSED/S", "LAG", "STATE ROWS", "WATERMARK")


def rows(progress: dict[str, Any]) -> list[tuple[str, ...]]:
    """One line per query of a `/progress` answer, in name order: its status message, last
    batch id, input and processing rates, records behind the latest offsets, state rows and
    watermark ("-" where the query has no such thing yet)."""
    out: list[tuple[str, ...]] = []
    for name, query in sorted(progress.get("queries", {}).items()):
        last = query.get("last_progress") or {}
        status = (query.get("status") or {}).get("message", "-")
        if not last:
            out.append((name, status, "-", "-", "-", "-", "-", "-"))
            continue
        lag = sum(int(s["metrics"]["maxOffsetsBehindLatest"]) for s in last.get("sources", []))
        ops = last.get("stateOperators", [])
        state = str(sum(op.get("numRowsTotal") or 0 for op in ops)) if ops else "-"
        out.append(
            (
                name,
                status,
                str(last.get("batchId", "-")),
                f"{last.get('inputRowsPerSecond', 0):,.1f}",
                f"{last.get('processedRowsPerSecond', 0):,.1f}",
                str(lag),
                state,
                (last.get("eventTime") or {}).get("watermark") or "-",
            )
        )
    return out


def table(lines: list[tuple[str, ...]]) -> str:
    """`lines` under the column headings, aligned."""
    everything = [_COLUMNS, *lines]
    widths = [max(len(line[i]) for line in everything) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in everything
    )


def _status(args: argparse.Namespace) -> int:
    url = args.url
    if url is None:
        from weir.service.settings import Settings

        port = Settings().web_port
        if not port:
            print("weir status: no worker port: pass --url or set WEIR_WEB_PORT", file=sys.stderr)
            return 2
        url = f"http://127.0.0.1:{port}"
    target = url.rstrip("/") + "/progress?n=1"
    try:
        with urllib.request.urlopen(target, timeout=_TIMEOUT_S) as answer:
            progress = orjson.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"weir status: no worker answers at {url} ({reason})", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps(progress, option=orjson.OPT_INDENT_2).decode())
    else:
        print(table(rows(progress)))
    return 0


def register(sub: Any) -> None:
    """Add the `status` command to the `weir` parser's subcommands."""
    st = sub.add_parser(
        "status",
        help="show a running worker's queries (from its /progress endpoint)",
        description="One line per query of a running worker: status, last batch, input and "
        "processing rates, lag, state rows and watermark. Exit 1 when no worker answers.",
    )
    st.add_argument(
        "--url",
        help="the worker's endpoints, e.g. http://127.0.0.1:8000 (default: 127.0.0.1 on "
        "WEIR_WEB_PORT)",
    )
    st.add_argument("--json", action="store_true", help="print the /progress answer as JSON")
    st.set_defaults(func=_status)
