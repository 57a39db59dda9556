"""Invalid settings stop any `weir` command with one line naming each setting (as its WEIR_*
variable) and what is wrong, exit code 2, never a secret; `WEIR_HOME` moves worker state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from weir.service.settings import Settings

APP = "weir.agents.word_count:app"


def weir_worker(env: dict[str, str], cwd: Path, app: str = APP) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    return subprocess.run(
        [sys.executable, "-m", "weir.service.cli", "worker", app],
        env={**clean, "WEIR_HOME": str(cwd / "home"), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"WEIR_PROCESSING_GUARANTEE": "exactly_twice"},
            "WEIR_PROCESSING_GUARANTEE (processing_guarantee): Input should be 'at_least_once' "
            "or 'exactly_once'",
        ),
        (
            {"WEIR_COMMIT_INTERVAL_MS": "soon"},
            "WEIR_COMMIT_INTERVAL_MS (commit_interval_ms): not a duration",
        ),
        (
            {"WEIR_MAX_RECORDS_PER_TRIGGER": "lots"},
            "WEIR_MAX_RECORDS_PER_TRIGGER (max_records_per_trigger): Input should be a valid "
            "integer",
        ),
        (
            {"WEIR_ROCKSDB_BLOCK_CACHE_BYTES": "lots"},
            "WEIR_ROCKSDB_BLOCK_CACHE_BYTES (rocksdb_block_cache_bytes): could not parse value "
            "and unit from byte string",
        ),
        (
            {"WEIR_SECURITY_PROTOCOL": "SASL_SSL", "WEIR_SASL_PASSWORD": "hunter2-secret"},
            "security_protocol SASL_SSL needs sasl_mechanism, sasl_username",
        ),
        (
            {"WEIR_STORE": "redis", "WEIR_NO_DATA_BATCHES": "maybe"},
            "WEIR_NO_DATA_BATCHES (no_data_batches): Input should be a valid boolean",
        ),
    ],
)
def test_an_invalid_setting_is_one_line_and_exit_2(
    env: dict[str, str], line: str, tmp_path: Path
) -> None:
    proc = weir_worker(env, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("weir: invalid settings: "), proc.stderr
    assert line in lines[0]
    assert "hunter2" not in proc.stderr and "pydantic.dev" not in proc.stderr


def test_two_mistakes_are_both_named_on_the_line(tmp_path: Path) -> None:
    proc = weir_worker({"WEIR_STORE": "redis", "WEIR_NO_DATA_BATCHES": "maybe"}, tmp_path)
    (line,) = proc.stderr.strip().splitlines()
    assert "WEIR_STORE (store)" in line and "WEIR_NO_DATA_BATCHES" in line


def test_an_unknown_keyword_setting_in_an_app_is_named(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(
        'from weir import App\napp = App("x", comit_interval="1s")\n'
    )
    proc = weir_worker({}, tmp_path, "myapp:app")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "weir: invalid settings: WEIR_COMIT_INTERVAL (comit_interval): not a setting of Weir"
    )


def test_weir_home_moves_the_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIR_HOME", str(tmp_path / "home"))
    assert Settings().state_dir == tmp_path / "home" / "state"
    monkeypatch.delenv("WEIR_HOME")
    monkeypatch.chdir(tmp_path)
    assert Settings().state_dir == tmp_path / ".weir" / "state"
    assert Settings(state_dir=tmp_path / "s").state_dir == tmp_path / "s"


def test_worker_help_lists_every_setting_and_local_help_says_what_each_action_does() -> None:
    def helped(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "weir.service.cli", *args, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    worker = helped("worker")
    for name in Settings.model_fields:
        assert f"WEIR_{name.upper()} " in worker
    assert "Kafka transaction timeout for exactly_once producers (default 60000)" in worker
    local = helped("local", "up")
    assert "up: start both" in local and "down: stop" in local and "$WEIR_HOME" in local


def test_a_bare_number_in_a_duration_variable_is_milliseconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the deploy manifests: WEIR_COMMIT_INTERVAL_MS=1000 was "not a duration"."""
    monkeypatch.setenv("WEIR_COMMIT_INTERVAL_MS", "1000")
    monkeypatch.setenv("WEIR_IDLE_TIMEOUT_MS", " 250 ")
    settings = Settings()
    assert (settings.commit_interval_ms, settings.idle_timeout_ms) == (1000, 250)
    monkeypatch.setenv("WEIR_COMMIT_INTERVAL_MS", "2 seconds")
    assert Settings().commit_interval_ms == 2000
