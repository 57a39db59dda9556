"""`weir local up && weir local status && weir local down` as a user runs it: a real broker and
PostgreSQL start, answer, and leave no process behind; `up` is idempotent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from weir.service.local.proc import pid_alive

pytestmark = [pytest.mark.broker, pytest.mark.postgres]


def _weir(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env["WEIR_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "weir.service.cli", "local", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_up_status_down_leaves_nothing_running(tmp_path: Path) -> None:
    home = tmp_path / "weir-home"
    up = _weir("up", home=home)
    assert up.returncode == 0, up.stderr
    lines = dict(line.split(None, 1) for line in up.stdout.splitlines())
    assert lines["kafka"].startswith("127.0.0.1:")
    assert lines["postgres"].startswith("postgresql://weir@127.0.0.1:")
    try:
        again = _weir("up", home=home)  # idempotent: same endpoints, nothing new started
        assert again.returncode == 0 and again.stdout == up.stdout
        status = _weir("status", home=home)
        assert status.returncode == 0
        assert status.stdout.count("running pid") == 2, status.stdout
        with psycopg.connect(lines["postgres"]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        kafka_pid = int((home / "kafka" / "kafka.pid").read_text())
        pg_pid = int((home / "postgres" / "data" / "postmaster.pid").read_text().split()[0])
        assert pid_alive(kafka_pid) and pid_alive(pg_pid)
    finally:
        down = _weir("down", home=home)
    assert down.returncode == 0, down.stderr
    assert not pid_alive(kafka_pid) and not pid_alive(pg_pid)
    assert _weir("status", home=home).stdout.count("stopped") == 2
