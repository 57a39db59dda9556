"""Process and port helpers for the local servers."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


class LocalStartError(RuntimeError):
    """A local server did not start; the message carries the reason and the last log lines."""


def free_port(preferred: int | None = None) -> int:
    """Return `preferred` if a server can listen on it on 127.0.0.1, else any free port there.

    A port whose last connections linger in TIME_WAIT (a broker that just crashed) counts as
    free, as it does for the servers, which listen with SO_REUSEADDR: a restarted broker keeps
    its recorded port, so workers configured with it reconnect."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise LocalStartError("no free TCP port on 127.0.0.1")


def pid_alive(pid: int) -> bool:
    """True when process `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM `pid`, wait up to `timeout` seconds, then SIGKILL it."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def tail(path: Path, lines: int = 30) -> str:
    """Return the last `lines` lines of a log file ("" if it does not exist)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
