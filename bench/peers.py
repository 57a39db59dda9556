"""Peers in subprocesses on the same input topic, over the same records as Weir's runs:
quixstreams (its own venv: it pins pydantic<2.14, which would downgrade the project's venv)
and faust-streaming (the `bench` extra in the project venv). A run's rate is the input count
over the time from the peer's first processed record to its last one (both reported by the
peer); the group's committed offsets must then reach the end of the input (checked, and timed
as well). A run still short of that after the timeout is recorded as timed out."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.checks import (
    TUMBLING_GRACE_MS,
    TUMBLING_WINDOW_MS,
    TumblingTruth,
    check_quix_current,
    check_quix_final,
    tumbling_truth,
)
from bench.common import BENCH_DIR, REPO, Kafka, figure, median, stop_process
from bench.data import Dataset


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


class PeerTimeout(RuntimeError):
    """A peer run did not finish within the timeout: how far it got."""

    def __init__(
        self, timeout: float, reached: int, committed: int, n: int, rate: float | None, tail: str
    ) -> None:
        self.timeout = timeout
        self.reached = reached
        self.committed = committed
        self.rate = rate
        self.tail = tail
        at = f", {rate:,.0f} records/s until then" if rate else ""
        super().__init__(
            f"timed out after {timeout:.0f} s at {reached:,} of {n:,} records "
            f"({committed:,} committed{at})"
        )


def _marks(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_text()
    whole = text[: text.rfind("\n") + 1]  # a line still being written is left for later
    return [json.loads(line) for line in whole.splitlines() if line.strip()]


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
    ends: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Start a peer, wait until it processed `n` records and committed offsets cover the
    input (`topic`'s first `n` records, or `ends`: topic -> records, for several inputs),
    stop it (SIGTERM, then SIGKILL) and return its timings. Raises PeerTimeout when it is
    not done after `timeout` seconds, RuntimeError with the log's tail when it fails."""
    # one partition per topic: the first n records are offsets 0..n-1
    ends = ends or {topic: n}
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
            committed = 0
            deadline = launched + timeout
            while time.time() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"exited with {proc.returncode}: {_tail(log_path)}")
                # the broker is asked only once the peer reports all n records: polling it
                # meanwhile would take CPU from the peer (a new admin client per call)
                if max((m["n"] for m in _marks(marks)), default=0) < n:
                    await asyncio.sleep(0.1)
                    continue
                try:
                    per_topic = {t: await kafka.committed(group, t) for t in ends}
                    committed = sum(per_topic.values())
                    if all(per_topic[t] >= end for t, end in ends.items()):
                        committed_at = time.time()
                        break
                except Exception:  # the group may not exist yet
                    pass
                await asyncio.sleep(0.1)
            if committed_at is None:
                raise _timed_out(_marks(marks), committed, n, timeout, _tail(log_path))
        finally:
            stop_process(proc, 20)
    got = _marks(marks)
    first = min(m["wall"] for m in got if m["n"] == 1)
    last = [m["wall"] for m in got if m["n"] == n]
    if not last:
        raise RuntimeError(f"committed the input but reported fewer than {n} records")
    return {
        "seconds": last[0] - first,
        "seconds_to_committed": committed_at - first,
        "seconds_with_startup": committed_at - launched,
    }


def _timed_out(
    got: list[dict[str, Any]], committed: int, n: int, timeout: float, tail: str
) -> PeerTimeout:
    """How far a timed-out peer got: its last progress mark (or its committed offset)."""
    reached = max([committed, *(m["n"] for m in got)])
    rate = None
    first = [m["wall"] for m in got if m["n"] == 1]
    top = max(got, key=lambda m: m["n"], default=None)
    if first and top is not None and top["n"] > 1 and top["wall"] > first[0]:
        rate = top["n"] / (top["wall"] - first[0])
    return PeerTimeout(timeout, reached, committed, n, rate, tail)


async def quix_run(
    kafka: Kafka,
    topic: str,
    n: int,
    guarantee: str,
    emit: str,
    workdir: Path,
    timeout: float,
) -> dict[str, Any]:
    """One quixstreams tumbling run (`guarantee`: at-least-once | exactly-once; `emit`:
    current | final); the result names its output topic (`output_topic`)."""
    tag = uuid.uuid4().hex[:8]
    group = f"bench-quix-{tag}"
    marks = workdir / f"quix-{tag}.marks"
    out = f"bench-quix-out-{tag}"
    argv = [
        str(quix_python()),
        str(BENCH_DIR / "peer_quix.py"),
        kafka.bootstrap,
        topic,
        out,
        group,
        guarantee,
        emit,
        str(n),
        str(TUMBLING_WINDOW_MS),
        str(TUMBLING_GRACE_MS),
        str(workdir / f"quix-state-{tag}"),
        str(marks),
    ]
    # Its records carry the window start (event time, 2024) as timestamp: with the broker's
    # default 7-day retention they would be deleted before the check reads them.
    await kafka.create_topic(out)
    r = await run_peer(
        kafka, argv, {}, group, topic, n, marks, timeout, workdir / f"quix-{tag}.log"
    )
    return {**r, "output_topic": out}


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


FAUST_TUNED = "table_tumbling_linger_5ms_at_least_once"
"""faust with a 5 ms producer linger, as Weir's producers use: the faster faust run is the one
compared against."""
QUIX_EMITS = ("current", "final")
"""`.current()` emits every update (Spark's update mode, as Weir's tumbling query does);
`.final()` emits each window once it closes (append mode)."""
PEER_HOW = (
    "peers process the same input records as Weir's runs (all of BENCH_RECORDS); "
    "peer rate = input records / (wall time of its n-th processed record - wall time "
    "of its first), as the peer reports them; *_to_committed: until its consumer "
    "group's committed offsets reached the end of the input (includes its commit "
    "interval: quixstreams 5 s, faust 2.8 s by default); a run not done within timeout_s is "
    "recorded as timed out with the records it had reached; quixstreams tumbling window "
    "with .current() (every update, like Weir's update mode) and .final() (closed windows "
    "only, like append mode; windows still open at the end of the input are not emitted), "
    "each output checked against the exact windows of the input on the first run; each "
    "peer at its defaults, faust with its in-memory store (rocksdb needs python-rocksdb, not "
    f"installable here), and once more with a 5 ms producer linger ({FAUST_TUNED}); ratios "
    "use the faster faust run"
)
Check = Callable[[list[tuple[bytes | None, bytes]]], str]


def quix_label(emit: str, guarantee: str) -> str:
    """The results label of a quixstreams run, e.g. tumbling_final_exactly_once."""
    return f"tumbling_{emit}_{guarantee.replace('-', '_')}"


def _cases(
    kafka: Kafka, topic: str, events: Dataset, workdir: Path, timeout: float, quix_ok: bool
) -> list[tuple[str, str, Callable[[], Awaitable[dict[str, Any]]], Check | None]]:
    n = len(events.values)
    truth = tumbling_truth(events) if quix_ok else TumblingTruth({}, set())
    checks: dict[str, Check] = {
        "current": partial(check_quix_current, truth=truth),
        "final": partial(check_quix_final, truth=truth),
    }
    cases: list[tuple[str, str, Callable[[], Awaitable[dict[str, Any]]], Check | None]] = []
    for emit in QUIX_EMITS:
        for g in ("at-least-once", "exactly-once"):
            cases.append(
                (
                    "quixstreams",
                    quix_label(emit, g),
                    partial(quix_run, kafka, topic, n, g, emit, workdir, timeout),
                    checks[emit],
                )
            )
    for mode, linger in (("count", None), ("tumbling", None), ("tumbling", 0.005)):
        cases.append(
            (
                "faust",
                f"table_{mode}_at_least_once" if linger is None else FAUST_TUNED,
                partial(faust_run, kafka, topic, n, mode, workdir, timeout, linger),
                None,
            )
        )
    return cases


async def peer_figures(
    kafka: Kafka,
    topic: str,
    events: Dataset,
    runs: int,
    timeout: float,
    workdir: Path,
    say: Callable[[str], None],
    skip: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """quixstreams tumbling (.current() and .final(), both guarantees) and faust-streaming
    (count, tumbling table) over all of `events` (already in `topic`), `runs` runs each; a
    peer named in `skip` ("quixstreams", "faust") is left out."""
    n = len(events.values)
    versions = peer_versions()
    res: dict[str, Any] = {
        "versions": versions,
        "records": n,
        "same_input_as_weir": True,
        "timeout_s": timeout,
    }
    quix_ok = not versions["quixstreams"].startswith("unavailable")
    for peer, label, fn, check in _cases(kafka, topic, events, workdir, timeout, quix_ok):
        if peer in skip:
            continue
        key = "faust-streaming" if peer == "faust" else peer
        if versions[key].startswith("unavailable"):
            res.setdefault(peer, {})[label] = {"error": versions[key]}
            continue
        done: list[dict[str, Any]] = []
        checks: list[str] = []
        try:
            for run in range(runs):
                r = await fn()
                if check is not None and "output_topic" in r:
                    if run == 0:
                        checks.append(check(await kafka.read_records(r["output_topic"])))
                    await kafka.delete_topics([r["output_topic"]])
                done.append(r)
        except PeerTimeout as exc:
            res.setdefault(peer, {})[label] = {
                "error": str(exc),
                "timed_out": True,
                "timeout_s": exc.timeout,
                "records_reached": exc.reached,
                "records_committed": exc.committed,
                "records_per_s_until_timeout": None if exc.rate is None else round(exc.rate, 1),
                "log_tail": exc.tail[-2000:],
                "completed_runs": done,
            }
            say(f"{peer} {label}: {exc}")
            continue
        except Exception as exc:
            res.setdefault(peer, {})[label] = {
                "error": f"{type(exc).__name__}: {exc}"[:2000],
                "completed_runs": done,
            }
            say(f"{peer} {label}: FAILED {exc}"[:300])
            continue
        fig = peer_figure(n, done, **({"check": checks} if check is not None else {}))
        res.setdefault(peer, {})[label] = fig
        say(
            f"{peer} {label}: {fig['records_per_s']:,.0f}/s"
            + (f" check={checks}" if checks else "")
        )
    res["how"] = PEER_HOW
    return res


def peer_figure(n: int, done: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The figure of a peer's runs over `n` records each (run_peer's timings): its rate, to
    committed and with start-up, medians over the runs."""
    return figure(
        [n] * len(done),
        [r["seconds"] for r in done],
        records_per_s_to_committed=round(n / median([r["seconds_to_committed"] for r in done]), 1),
        records_per_s_with_startup=round(n / median([r["seconds_with_startup"] for r in done]), 1),
        **extra,
    )


def _tail(path: Path, lines: int = 8) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:])
