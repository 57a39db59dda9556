"""Peers in subprocesses on the same input topic: quixstreams (its own venv: it pins
pydantic<2.14, which would downgrade the project's venv) and faust-streaming (the `bench`
extra in the project venv). A run's rate is the input count over the time from the peer's
first processed record to its last one (both reported by the peer); the group's committed
offsets must then reach the end of the input (checked, and timed as well)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, REPO, Kafka, stop_process


def quix_python() -> Path:
    """The interpreter of the quixstreams venv (`BENCH_QUIX_PYTHON`, else the per-user cache
    folder that `make bench` fills)."""
    env = os.environ.get("BENCH_QUIX_PYTHON")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "weir" / "bench-quixstreams-venv" / "bin" / "python"


def peer_versions() -> dict[str, str]:
    """Installed peer versions, or why a peer is missing."""
    out: dict[str, str] = {}
    try:
        import faust

        out["faust-streaming"] = str(faust.__version__)
    except Exception as exc:
        out["faust-streaming"] = f"unavailable: {type(exc).__name__}: {exc}"
    py = quix_python()
    if not py.exists():
        out["quixstreams"] = f"unavailable: no venv at {py} (run `make bench`)"
    else:
        proc = subprocess.run(
            [str(py), "-c", "import quixstreams; print(quixstreams.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        out["quixstreams"] = (
            proc.stdout.strip() or f"unavailable: {proc.stderr.strip().splitlines()[-1:]}"
        )
    return out


async def run_peer(
    kafka: Kafka,
    argv: list[str],
    env: dict[str, str],
    group: str,
    topic: str,
    n: int,
    marks: Path,
    timeout: float,
    log_path: Path,
) -> dict[str, Any]:
    """Start a peer, wait until it processed `n` records and committed offsets cover the
    input, stop it (SIGTERM, then SIGKILL) and return its timings. Raises RuntimeError with
    the log's tail when it fails or times out."""
    end = n  # one partition: the first n records are offsets 0..n-1
    with open(log_path, "wb") as log_file:
        launched = time.time()
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **env, "PYTHONPATH": str(REPO)},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(marks.parent),
        )
        try:
            committed_at = None
            deadline = launched + timeout
            while time.time() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"exited with {proc.returncode}: {_tail(log_path)}")
                try:
                    if await kafka.committed(group, topic) >= end:
                        committed_at = time.time()
                        break
                except Exception:  # the group may not exist yet
                    pass
                await asyncio.sleep(0.1)
            if committed_at is None:
                raise RuntimeError(f"timed out after {timeout:.0f}s: {_tail(log_path)}")
        finally:
            stop_process(proc, 20)
    got = [json.loads(line) for line in marks.read_text().splitlines() if line.strip()]
    first = min(m["wall"] for m in got if m["n"] == 1)
    last = [m["wall"] for m in got if m["n"] == n]
    if not last:
        raise RuntimeError(f"committed the input but reported fewer than {n} records")
    return {
        "seconds": last[0] - first,
        "seconds_to_committed": committed_at - first,
        "seconds_with_startup": committed_at - launched,
    }


async def quix_run(
    kafka: Kafka, topic: str, n: int, guarantee: str, workdir: Path, timeout: float
) -> dict[str, Any]:
    """One quixstreams tumbling run (`guarantee`: at-least-once | exactly-once)."""
    tag = uuid.uuid4().hex[:8]
    group = f"bench-quix-{tag}"
    marks = workdir / f"quix-{tag}.marks"
    argv = [
        str(quix_python()),
        str(BENCH_DIR / "peer_quix.py"),
        kafka.bootstrap,
        topic,
        f"bench-quix-out-{tag}",
        group,
        guarantee,
        str(n),
        str(workdir / f"quix-state-{tag}"),
        str(marks),
    ]
    return await run_peer(
        kafka, argv, {}, group, topic, n, marks, timeout, workdir / f"quix-{tag}.log"
    )


async def faust_run(
    kafka: Kafka,
    topic: str,
    n: int,
    mode: str,
    workdir: Path,
    timeout: float,
    linger_s: float | None = None,
) -> dict[str, Any]:
    """One faust-streaming run (`mode`: count | tumbling), at_least_once, memory store; with
    `linger_s`, its producer lingers that long (faust's default 0 sends every changelog
    record in a request of its own)."""
    tag = uuid.uuid4().hex[:8]
    app_id = f"bench-faust-{tag}"
    marks = workdir / f"faust-{tag}.marks"
    env = {
        "BENCH_BOOTSTRAP": kafka.bootstrap,
        "BENCH_TOPIC": topic,
        "BENCH_APP_ID": app_id,
        "BENCH_MODE": mode,
        "BENCH_N": str(n),
        "BENCH_GUARANTEE": "at_least_once",
        "BENCH_DATADIR": str(workdir / f"faust-data-{tag}"),
        "BENCH_MARKS": str(marks),
        **({"BENCH_FAUST_LINGER": str(linger_s)} if linger_s is not None else {}),
    }
    argv = [sys.executable, str(BENCH_DIR / "peer_faust.py"), "worker", "-l", "warn"]
    return await run_peer(
        kafka, argv, env, app_id, topic, n, marks, timeout, workdir / f"faust-{tag}.log"
    )


def _tail(path: Path, lines: int = 8) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:])
