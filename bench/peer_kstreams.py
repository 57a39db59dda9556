"""Kafka Streams 4.x as a peer (bench/kstreams, a JVM per workload and guarantee) on the same
input topics and records as Weir's runs: one stream thread, RocksDB stores, exactly_once_v2
or at_least_once and Weir's 200 ms commit interval. Its rates come from the progress marks it
writes (first record, half of the input, last record), its outputs are checked against the
input's exact facts."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.checks import (
    check_distinct,
    check_join_pairs,
    check_quix_current,
    check_windows,
    tumbling_truth,
)
from bench.common import BENCH_DIR, Config, Kafka, median
from bench.data import Dataset
from bench.peers import PeerTimeout, _marks, peer_figure, run_peer

KSTREAMS_VERSION = "4.4.0"
"""Kept equal to the version in bench/kstreams/pom.xml."""
SOURCE = BENCH_DIR / "kstreams"
MAIN_CLASS = "dev.weir.bench.KStreamsBench"
COMMIT_INTERVAL_MS = 200
"""Weir's default commit interval."""
GUARANTEES = {"at_least_once": "at_least_once", "exactly_once": "exactly_once_v2"}
"""Weir's guarantee -> Kafka Streams' processing.guarantee."""
WORKLOADS: dict[str, list[str]] = {
    "tumbling": ["events"],
    "tumbling_wide": ["wide"],
    "sliding": ["events"],
    "dedup": ["dedup"],
    "join": ["orders", "payments"],
}
"""Kafka Streams workload (named as Weir's pipeline) -> the bench data sets it reads."""
SLIDING_REPARTITION = "by-user"
"""The name of sliding's repartition topic in Workloads.java."""
HOW = (
    "Kafka Streams 4.4 (bench/kstreams) in its own JVM per run: one stream thread, RocksDB "
    "stores, default record cache, exactly_once_v2 or at_least_once, commit.interval.ms 200; "
    "rate = input records / (wall time of its last processed record - its first), second "
    "half = the later half of the input records / (last - the record at half the input), "
    "after JIT warm-up; to_committed: until the group's committed offsets reached the end of "
    "every input. Event time is the record timestamp (the data sets set it to the event-time "
    "field). tumbling and tumbling_wide group by the record key (action; user_id over "
    "100,000 values), sliding re-keys by user_id through a repartition topic (its rate "
    "counts the records read back from it), dedup keeps "
    "(event_id, event_ts) 15 minutes in a RocksDB window store, join is a KStream-KStream "
    "join on order_id with payments in [order, order + 4 h], 2 h grace. Checks: tumbling "
    "windows' last updates equal the exact windows of the input; sliding's add up to twice "
    "the count and sum; dedup outputs exactly the distinct records; join outputs exactly "
    "each (order_id, payment_id) pair once"
)


def cache_root() -> Path:
    """Where built jars live: the per-user cache (XDG_CACHE_HOME, else ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "weir" / "bench-kstreams"


def source_hash() -> str:
    """A hash of the pom and the Java sources: a change rebuilds the jar."""
    h = hashlib.sha256()
    for path in sorted([SOURCE / "pom.xml", *SOURCE.rglob("*.java")]):
        h.update(path.relative_to(SOURCE).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def classpath() -> str:
    """The app's class path, built once per source hash with `mvn package` (Maven and Java
    17 needed) into the cache; raises RuntimeError with Maven's output when the build fails."""
    target = cache_root() / source_hash()
    done = target / ".complete"
    cp = f"{target / 'weir-bench-kstreams.jar'}:{target / 'libs'}/*"
    if done.exists():
        return cp
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time across processes
        if done.exists():
            return cp
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise RuntimeError("Maven (mvn) and Java 17 are needed to build bench/kstreams")
        proc = subprocess.run(
            [
                "mvn", "-q", "-B", "-f", str(SOURCE / "pom.xml"),
                "package", "dependency:copy-dependencies",
                f"-Dout={target}", f"-DoutputDirectory={target / 'libs'}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            out = (proc.stdout + proc.stderr).strip().splitlines()[-20:]
            raise RuntimeError("Maven could not build bench/kstreams:\n" + "\n".join(out))
        done.write_text(source_hash())
    return cp


async def ks_run(
    kafka: Kafka,
    cp: str,
    workload: str,
    inputs: dict[str, int],
    guarantee: str,
    workdir: Path,
    timeout: float,
) -> dict[str, Any]:
    """One Kafka Streams run of `workload` over `inputs` (topic -> records, in the app's
    argument order) under Weir's `guarantee`; its timings, second-half rate included, and
    its output topic (`output_topic`)."""
    tag = uuid.uuid4().hex[:8]
    app_id = f"bench-ks-{workload}-{tag}"
    marks = workdir / f"ks-{tag}.marks"
    out = f"bench-ks-out-{tag}"
    state = workdir / f"ks-state-{tag}"
    n = sum(inputs.values())
    argv = [
        "java",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp",
        cp,
        MAIN_CLASS,
        workload,
        kafka.bootstrap,
        app_id,
        GUARANTEES[guarantee],
        str(COMMIT_INTERVAL_MS),
        str(state),
        str(marks),
        str(n),
        out,
        *inputs,
    ]
    # Its records carry event-time timestamps (2024): the default 7-day retention would
    # delete them before the check reads them.
    await kafka.create_topic(out)
    ends = dict(inputs)
    if workload == "sliding":  # done once the aggregation has read its repartition topic
        ends[f"{app_id}-{SLIDING_REPARTITION}-repartition"] = n
    try:
        first_topic = next(iter(inputs))
        r = await run_peer(
            kafka, argv, {}, app_id, first_topic, n, marks, timeout,
            workdir / f"ks-{tag}.log", ends=ends,
        )  # fmt: skip
    finally:
        shutil.rmtree(state, ignore_errors=True)
    got = _marks(marks)
    half = next(m["wall"] for m in got if m["n"] == n // 2)
    last = next(m["wall"] for m in got if m["n"] == n)
    return {**r, "seconds_second_half": last - half, "output_topic": out}


Check = Callable[[list[tuple[bytes | None, bytes]]], str]


def _checks(sets: dict[str, Dataset]) -> dict[str, Check]:
    ev, wide = sets["events"], sets["wide"]
    return {
        "tumbling": partial(check_quix_current, truth=tumbling_truth(ev), start="window_start"),
        "tumbling_wide": partial(
            check_quix_current, truth=tumbling_truth(wide), start="window_start"
        ),
        "sliding": lambda recs: check_windows(
            [v for _, v in recs], 2 * len(ev.values), 2 * ev.expect["total_amount"]
        ),
        "dedup": lambda recs: check_distinct(
            [v for _, v in recs], int(sets["dedup"].expect["distinct"])
        ),
        "join": lambda recs: check_join_pairs([v for _, v in recs], sets["payments"]),
    }


async def kstreams_figures(
    kafka: Kafka,
    topics: dict[str, str],
    sets: dict[str, Dataset],
    cfg: Config,
    workdir: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Every workload of WORKLOADS under both guarantees, `cfg.runs` runs each (the first
    run's output checked): whole-run and second-half rates, medians over the runs."""
    if not (cache_root() / source_hash() / ".complete").exists():
        say("building bench/kstreams with Maven (once per source change)")
    cp = classpath()
    checks = _checks(sets)
    res: dict[str, Any] = {"version": KSTREAMS_VERSION, "timeout_s": cfg.peer_timeout}
    for workload, names in WORKLOADS.items():
        inputs = {topics[s]: len(sets[s].values) for s in names}
        n = sum(inputs.values())
        for guarantee in GUARANTEES:
            done: list[dict[str, Any]] = []
            verdicts: list[str] = []
            try:
                for run in range(cfg.runs):
                    r = await ks_run(
                        kafka, cp, workload, inputs, guarantee, workdir, cfg.peer_timeout
                    )
                    if run == 0 or cfg.quick:
                        verdicts.append(
                            checks[workload](await kafka.read_records(r["output_topic"]))
                        )
                    await kafka.delete_topics([r["output_topic"]])
                    done.append(r)
            except (PeerTimeout, RuntimeError) as exc:
                res.setdefault(workload, {})[guarantee] = {
                    "error": f"{type(exc).__name__}: {exc}"[:2000],
                    "completed_runs": done,
                }
                say(f"kstreams {workload} {guarantee}: FAILED {exc}"[:300])
                continue
            second_half = median([r["seconds_second_half"] for r in done])
            fig = peer_figure(
                n,
                done,
                records_per_s_second_half=round((n - n // 2) / second_half, 1),
                check=verdicts,
            )
            res.setdefault(workload, {})[guarantee] = fig
            say(
                f"kstreams {workload} {guarantee}: {fig['records_per_s']:,.0f}/s, second half "
                f"{fig['records_per_s_second_half']:,.0f}/s check={verdicts}"
            )
    res["how"] = HOW
    return res
