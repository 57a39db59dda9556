"""Worker subprocesses for broker tests: started like a user would (`weir worker`), killed by
pid, their logs kept for failure messages."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


class WorkerProcess:
    """`python -m weir.service.cli worker <spec>` with extra environment; output to a log file."""

    def __init__(self, spec: str, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()
        full_env = {**os.environ, "WEIR_LOG_FORMAT": "text", **env}  # tests read text lines
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "weir.service.cli", "worker", spec, "--log-level", "info"],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        """SIGKILL: no checkpoint, no goodbye."""
        self.proc.send_signal(signal.SIGKILL)
        self.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM: finish the checkpoint, leave the group; return the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        """Wait for exit; on timeout kill it and fail with the log's tail."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self._log.close()
            raise AssertionError(f"worker did not exit within {timeout}s:\n{self.tail()}") from None
        self._log.close()
        return rc

    def tail(self, lines: int = 40) -> str:
        """The last lines of the worker's log."""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def story(self, lines: int = 60) -> str:
        """Whether the worker runs (or its exit code), and the last of Weir's own log lines
        (the client library's connection noise left out): what a failed test shows."""
        rc = self.proc.poll()
        state = "running" if rc is None else f"exited with {rc}"
        text = self.log_path.read_text(errors="replace").splitlines()
        own = [line for line in text if " weir." in line or "Error" in line[:40]]
        return f"worker {state}; its last lines:\n" + "\n".join(own[-lines:])


def wait_for(predicate: object, timeout: float, what: str) -> None:
    """Poll a zero-argument callable until it is truthy, or fail saying `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def run_counting_to_end(env: dict[str, str], log: Path) -> None:
    """Run `tests.apps.counting` with the available-now trigger until it has processed its
    input and exited; fail with the log's tail unless it exits 0 within 180 s."""
    w = WorkerProcess("tests.apps.counting:app", {**env, "WEIR_TEST_TRIGGER": "available_now"}, log)
    assert await asyncio.to_thread(w.wait, 180) == 0, w.tail()
