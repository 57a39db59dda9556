"""`python -m bench`: the whole benchmark in one run; see bench/__init__.py and Config."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench import data, peers, pipelines
from bench.common import BENCH_DIR, Config, Kafka, figure, machine_info, median
from bench.replay_runs import REPLAY_BATCH, replay_seconds
from bench.weir_runs import (
    latency_at_rate,
    raw_consume,
    raw_produce,
    restore_figures,
    run_worker,
    steady,
    tempdir,
)
from service.commands import tune_gc
from service.local import LocalStack
from tables.query import read

GUARANTEES = ("at_least_once", "exactly_once")
LATENCY_RATES = (20_000, 10_000, 5_000, 2_000, 1_000)
COMMIT_INTERVAL_MS = 200
FAUST_TUNED = "table_tumbling_linger_5ms_at_least_once"
"""faust with a 5 ms producer linger, as Weir's producers use: the faster faust run is the one
compared against."""


def say(msg: str) -> None:
    """One progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- output checks --------------------------------------------------------------------------
def check_windows(values: list[bytes], expect_count: int, expect_sum: float | None) -> str:
    """The last update per (key, window) must add up to the expected count (and sum)."""
    final: dict[tuple[Any, ...], dict[str, Any]] = {}
    for v in values:
        row = orjson.loads(v)
        key = (row.get("action"), row.get("user_id"), row["window_start"])
        final[key] = row
    total = sum(r["event_count"] for r in final.values())
    if total != expect_count:
        return f"FAIL: final window counts add up to {total}, expected {expect_count}"
    if expect_sum is not None:
        s = sum(r["total_amount"] for r in final.values())
        if not math.isclose(s, expect_sum, rel_tol=1e-9, abs_tol=1e-3):
            return f"FAIL: final window sums add up to {s}, expected {expect_sum}"
    return f"ok ({len(final)} windows, {len(values)} updates)"


def check_count(values: list[bytes], expect: int) -> str:
    """The output must hold exactly `expect` records."""
    return "ok" if len(values) == expect else f"FAIL: {len(values)} records, expected {expect}"


# -- sections -------------------------------------------------------------------------------
class Bench:
    """One bench run: the broker, the data sets and the collected results."""

    def __init__(self, cfg: Config, bootstrap: str, workdir: Path) -> None:
        self.cfg = cfg
        self.kafka = Kafka(bootstrap)
        self.workdir = workdir
        self.results: dict[str, Any] = {}
        self.topics: dict[str, str] = {}
        self.sets: dict[str, data.Dataset] = {}

    async def produce_inputs(self) -> None:
        """Generate and produce every input data set once; all runs read these topics."""
        n = self.cfg.records
        orders, payments = data.orders_payments(n)
        self.sets = {
            "events": data.events(n),
            "dedup": data.duplicated_events(n),
            "orders": orders,
            "payments": payments,
        }
        if "restore" not in self.cfg.skip:
            self.sets["keys"] = data.distinct_keys(self.cfg.restore_keys)
        for name, ds in self.sets.items():
            topic = await self.kafka.create_topic(f"bench-{name}")
            secs = await self.kafka.produce(topic, ds.values, ds.keys, ds.timestamps)
            self.topics[name] = topic
            size = sum(map(len, ds.values)) / max(1, len(ds.values))
            say(f"produced {len(ds.values):,} {name} ({size:.0f} B avg) in {secs:.1f}s")
        ev = self.sets["events"].values
        self.results["input"] = {
            "records": n,
            "avg_value_bytes": round(sum(map(len, ev)) / len(ev), 1),
            "example": ev[0].decode(),
        }

    async def raw(self) -> None:
        """The limit: raw aiokafka consume (getmany + orjson.loads) and produce."""
        ev = self.sets["events"]
        n = len(ev.values)
        cons = [await raw_consume(self.kafka.bootstrap, self.topics["events"], n)]
        prod = [await raw_produce(self.kafka, ev.values, ev.keys)]
        for _ in range(self.cfg.runs - 1):
            cons.append(await raw_consume(self.kafka.bootstrap, self.topics["events"], n))
            prod.append(await raw_produce(self.kafka, ev.values, ev.keys))
        self.results["raw"] = {
            "consume": figure([n] * len(cons), cons, how="getmany + orjson.loads, 1 partition"),
            "produce": figure(
                [n] * len(prod), prod, how="create_batch/send_batch, linger 5 ms, acks=1"
            ),
        }
        say(
            f"raw consume {self.results['raw']['consume']['records_per_s']:,.0f}/s, "
            f"produce {self.results['raw']['produce']['records_per_s']:,.0f}/s"
        )

    def _weir_cases(self) -> list[tuple[str, Callable[..., Any], list[str], Callable[..., str]]]:
        ev = self.sets["events"].expect
        n = self.cfg.records
        return [
            (
                "stateless",
                pipelines.stateless,
                ["events"],
                lambda v: check_count(v, int(ev["kept"])),
            ),
            (
                "tumbling",
                pipelines.tumbling,
                ["events"],
                lambda v: check_windows(v, n, ev["total_amount"]),
            ),
            (
                "sliding",
                pipelines.sliding,
                ["events"],
                lambda v: check_windows(v, 2 * n, 2 * ev["total_amount"]),
            ),
            (
                "dedup",
                pipelines.dedup,
                ["dedup"],
                lambda v: check_count(v, int(self.sets["dedup"].expect["distinct"])),
            ),
            (
                "join",
                pipelines.join,
                ["orders", "payments"],
                lambda v: check_count(v, int(self.sets["payments"].expect["matches"])),
            ),
        ]

    async def weir(self) -> None:
        """Every pipeline under both guarantees through the real worker (available-now)."""
        out: dict[str, Any] = {}
        for name, build, inputs, check in self._weir_cases():
            topics = [self.topics[i] for i in inputs]
            n_in = sum(len(self.sets[i].values) for i in inputs)
            out[name] = {}
            for g in GUARANTEES:
                secs: list[float] = []
                with_startup: list[float] = []
                checks: list[str] = []
                for run in range(self.cfg.runs):
                    sink = f"bench-out-{name}-{uuid.uuid4().hex[:8]}"
                    state = tempdir("weir-bench-state-")
                    try:
                        r = await run_worker(self.kafka.bootstrap, build, topics, sink, g, state)
                    finally:
                        shutil.rmtree(state, ignore_errors=True)
                    if r.input_records != n_in:
                        checks.append(f"FAIL: processed {r.input_records} of {n_in} inputs")
                    elif run == 0 or self.cfg.quick:
                        checks.append(check(await self.kafka.read_values(sink)))
                    secs.append(r.seconds)
                    with_startup.append(r.seconds_with_startup)
                    await self.kafka.delete_topics([sink])
                fig = figure(
                    [n_in] * len(secs),
                    secs,
                    records_per_s_with_startup=round(n_in / median(with_startup), 1),
                    check=checks,
                )
                out[name][g] = fig
                say(f"weir {name} {g}: {fig['records_per_s']:,.0f}/s check={checks}")
        self.results["weir"] = out

    async def peers(self) -> None:
        """quixstreams tumbling (both guarantees) and faust-streaming (count, tumbling table)."""
        versions = peers.peer_versions()
        res: dict[str, Any] = {"versions": versions}
        topic = self.topics["events"]
        n = self.cfg.peer_records
        res["records"] = n
        cases: list[tuple[str, str, Callable[[], Any]]] = []
        for g in ("at-least-once", "exactly-once"):
            cases.append(
                (
                    "quixstreams",
                    f"tumbling_{g.replace('-', '_')}",
                    lambda g=g: peers.quix_run(
                        self.kafka, topic, n, g, self.workdir, self.cfg.peer_timeout
                    ),
                )
            )
        for mode, linger in (("count", None), ("tumbling", None), ("tumbling", 0.005)):
            cases.append(
                (
                    "faust",
                    f"table_{mode}_at_least_once" if linger is None else FAUST_TUNED,
                    lambda mode=mode, linger=linger: peers.faust_run(
                        self.kafka, topic, n, mode, self.workdir, self.cfg.peer_timeout, linger
                    ),
                )
            )
        for peer, label, fn in cases:
            key = "faust-streaming" if peer == "faust" else peer
            if versions[key].startswith("unavailable"):
                res.setdefault(peer, {})[label] = {"error": versions[key]}
                continue
            runs: list[dict[str, Any]] = []
            try:
                for _ in range(self.cfg.runs):
                    runs.append(await fn())
            except Exception as exc:
                res.setdefault(peer, {})[label] = {
                    "error": f"{type(exc).__name__}: {exc}"[:2000],
                    "completed_runs": runs,
                }
                say(f"{peer} {label}: FAILED {exc}"[:300])
                continue
            fig = figure(
                [n] * len(runs),
                [r["seconds"] for r in runs],
                records_per_s_to_committed=round(
                    n / median([r["seconds_to_committed"] for r in runs]), 1
                ),
                records_per_s_with_startup=round(
                    n / median([r["seconds_with_startup"] for r in runs]), 1
                ),
            )
            res.setdefault(peer, {})[label] = fig
            say(f"{peer} {label}: {fig['records_per_s']:,.0f}/s")
        res["how"] = (
            "peer rate = input records / (wall time of its n-th processed record - wall time "
            "of its first), as the peer reports them; *_to_committed: until its consumer "
            "group's committed offsets reached the end of the input (includes its commit "
            "interval: quixstreams 5 s, faust 2.8 s by default); each peer at its defaults, "
            "faust with its in-memory store (rocksdb needs python-rocksdb, not installable "
            f"here), and once more with a 5 ms producer linger ({FAUST_TUNED}); ratios use the "
            "faster faust run"
        )
        self.results["peers"] = res

    def replay(self) -> None:
        """Replay mode over in-memory JSON lines, no broker."""
        ev = data.replay_lines(self.sets["events"])
        cases: list[tuple[str, Callable[[], Any], list[bytes]]] = [
            ("tumbling", lambda: pipelines.tumbling(read("events")), ev),
            ("sliding", lambda: pipelines.sliding(read("events")), ev),
            ("dedup", lambda: pipelines.dedup(read("raw")), data.replay_lines(self.sets["dedup"])),
            (
                "join",
                lambda: pipelines.join(read("orders"), read("payments")),
                _interleave(
                    data.replay_lines(self.sets["orders"], "orders"),
                    data.replay_lines(self.sets["payments"], "payments"),
                ),
            ),
        ]
        out: dict[str, Any] = {"batch_size": REPLAY_BATCH}
        for name, build, lines in cases:
            secs = [replay_seconds(build, lines)[0] for _ in range(self.cfg.runs)]
            out[name] = figure([len(lines)] * len(secs), secs)
            say(f"replay {name}: {out[name]['records_per_s']:,.0f} events/s")
        self.results["replay"] = out

    async def latency(self) -> None:
        """p50/p99 end-to-end latency at the highest steady rate of LATENCY_RATES."""
        attempts: list[dict[str, Any]] = []
        warm = 3.0
        chosen: dict[str, Any] | None = None
        for rate in LATENCY_RATES:
            r = await latency_at_rate(
                self.kafka, rate, self.cfg.latency_seconds, warm, self.workdir
            )
            r["steady"] = steady(r)
            attempts.append(r)
            say(
                f"latency @{rate}/s: p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms steady={r['steady']}"
            )
            if r["steady"]:
                chosen = r
                break
        out: dict[str, Any] = {"attempts": attempts, "commit_interval_ms": COMMIT_INTERVAL_MS}
        if chosen is not None:
            more = [chosen]
            for _ in range(self.cfg.runs - 1):
                more.append(
                    await latency_at_rate(
                        self.kafka,
                        chosen["target_rate"],
                        self.cfg.latency_seconds,
                        warm,
                        self.workdir,
                    )
                )
            out.update(
                rate=chosen["target_rate"],
                fallback=chosen["target_rate"] != LATENCY_RATES[0],
                p50_ms=median([m["p50_ms"] for m in more]),
                p99_ms=median([m["p99_ms"] for m in more]),
                runs=more,
            )
        out["how"] = (
            "stateless filter+map, exactly_once, default 200 ms commit interval, worker in a "
            "subprocess; latency = wall time a read_committed reader sees the output - the "
            "producer's timestamp `pts` in the record; the first 3 s are warm-up"
        )
        self.results["latency"] = out

    async def restore(self) -> None:
        """Restore time of N keys from the changelog and state memory per 1M keys."""
        self.results["restore"] = await restore_figures(
            self.kafka.bootstrap,
            self.topics["keys"],
            self.cfg.restore_keys,
            self.cfg.runs,
            self.workdir,
        )
        r = self.results["restore"]
        say(f"restore {r['keys']:,} keys: {r['restore_seconds']}s")

    async def profile(self) -> None:
        """pyinstrument over one tumbling exactly_once worker run -> bench/profile.txt."""
        from pyinstrument import Profiler

        state = tempdir("weir-bench-profile-")
        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        try:
            await run_worker(
                self.kafka.bootstrap,
                pipelines.tumbling,
                [self.topics["events"]],
                f"bench-prof-{uuid.uuid4().hex[:6]}",
                "exactly_once",
                state,
            )
        finally:
            profiler.stop()
            shutil.rmtree(state, ignore_errors=True)
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        (BENCH_DIR / "profile.txt").write_text(text)
        say("profile written to bench/profile.txt")


def _interleave(a: list[bytes], b: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for x, y in zip(a, b, strict=True):
        out.append(x)
        out.append(y)
    return out


# -- ratios, targets, table -----------------------------------------------------------------
def _get(d: dict[str, Any], *path: str) -> float | None:
    cur: Any = d
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return float(cur) if isinstance(cur, int | float) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def ratios_and_targets(res: dict[str, Any]) -> None:
    """Same-run ratios and the issue's targets (met / not met / not measured)."""
    raw = _get(res, "raw", "consume", "records_per_s")
    eos = _get(res, "weir", "tumbling", "exactly_once", "records_per_s")
    quix_eos = _get(res, "peers", "quixstreams", "tumbling_exactly_once", "records_per_s")
    quix_alo = _get(res, "peers", "quixstreams", "tumbling_at_least_once", "records_per_s")
    faust_runs = [
        _get(res, "peers", "faust", label, "records_per_s")
        for label in ("table_tumbling_at_least_once", FAUST_TUNED)
    ]
    faust_w = max((f for f in faust_runs if f is not None), default=None)  # the faster faust
    faust_c = _get(res, "peers", "faust", "table_count_at_least_once", "records_per_s")
    ratios: dict[str, float | None] = {}
    for name, gs in res.get("weir", {}).items():
        for g, fig in gs.items():
            ratios[f"weir_{g}_{name} / raw_consume"] = _ratio(fig["records_per_s"], raw)
    alo = _get(res, "weir", "tumbling", "at_least_once", "records_per_s")
    ratios["weir_exactly_once_tumbling / quixstreams_exactly_once"] = _ratio(eos, quix_eos)
    ratios["weir_at_least_once_tumbling / quixstreams_at_least_once"] = _ratio(alo, quix_alo)
    ratios["weir_exactly_once_tumbling / faust_tumbling_table (faster faust)"] = _ratio(
        eos, faust_w
    )
    ratios["weir_at_least_once_tumbling / faust_tumbling_table (faster faust)"] = _ratio(
        alo, faust_w
    )
    ratios["weir_at_least_once_tumbling / faust_count_table"] = _ratio(alo, faust_c)
    ratios["weir_exactly_once / at_least_once (tumbling)"] = _ratio(eos, alo)
    res["ratios"] = ratios
    replay_t = _get(res, "replay", "tumbling", "records_per_s")
    p99 = _get(res, "latency", "p99_ms")
    lat_rate = _get(res, "latency", "rate")

    def verdict(value: float | None, ok: bool | None, note: str = "") -> dict[str, Any]:
        status = "not measured" if value is None else ("met" if ok else "not met")
        return {"value": value, "status": status, **({"note": note} if note else {})}

    r1 = ratios["weir_exactly_once_tumbling / quixstreams_exactly_once"]
    r2 = ratios["weir_exactly_once_tumbling / faust_tumbling_table (faster faust)"]
    r3 = _ratio(eos, raw)
    res["targets"] = {
        "weir_eos_tumbling >= 3x quixstreams exactly-once": verdict(r1, r1 is not None and r1 >= 3),
        "weir_eos_tumbling >= 5x faust": verdict(r2, r2 is not None and r2 >= 5),
        "weir_eos_tumbling >= 40% of raw consume": verdict(r3, r3 is not None and r3 >= 0.4),
        "replay tumbling >= 300,000 events/s": verdict(
            replay_t, replay_t is not None and replay_t >= 300_000
        ),
        "p99 latency <= 2x commit interval at 20k rec/s": verdict(
            p99,
            p99 is not None and p99 <= 2 * COMMIT_INTERVAL_MS and lat_rate == 20_000,
            "" if lat_rate in (None, 20_000) else f"measured at the fallback rate {lat_rate:.0f}/s",
        ),
    }


def table(res: dict[str, Any]) -> str:
    """The human-readable summary."""
    lines: list[str] = []
    m = res["machine"]
    lines.append(
        f"Weir bench: {res['config']['records']:,} records x {res['config']['runs']} runs "
        f"(median; peers: the first {res['config']['peer_records']:,}), "
        f"{m['nproc']} CPUs {m['cpu_model']}, Python {m['python']}"
    )
    lines.append(f"{'figure':<58} {'value':>14}  note")
    lines.append("-" * 100)

    def row(name: str, value: float | None, unit: str = "rec/s", note: str = "") -> None:
        v = "-" if value is None else f"{value:,.0f} {unit}" if unit else f"{value:,.3f}"
        lines.append(f"{name:<58} {v:>20}  {note}")

    row(
        "raw aiokafka consume (getmany + orjson.loads)",
        _get(res, "raw", "consume", "records_per_s"),
    )
    row("raw aiokafka produce (send_batch)", _get(res, "raw", "produce", "records_per_s"))
    for name, gs in res.get("weir", {}).items():
        for g, fig in gs.items():
            row(f"weir {name} {g}", fig["records_per_s"], note=" ".join(fig["check"])[:60])
    for peer in ("quixstreams", "faust"):
        for label, fig in res.get("peers", {}).get(peer, {}).items():
            if "error" in fig:
                lines.append(f"{peer + ' ' + label:<58} {'n/a':>20}  {fig['error'][:80]}")
            else:
                row(f"{peer} {label}", fig["records_per_s"])
    for name, fig in res.get("replay", {}).items():
        if isinstance(fig, dict):
            row(f"replay {name}", fig["records_per_s"], "ev/s")
    lat = res.get("latency", {})
    if "p99_ms" in lat:
        note = "fallback rate" if lat["fallback"] else ""
        row(f"latency p50 @ {lat['rate']:,}/s (EOS, 200 ms commit)", lat["p50_ms"], "ms", note)
        row(f"latency p99 @ {lat['rate']:,}/s (EOS, 200 ms commit)", lat["p99_ms"], "ms", note)
    rs = res.get("restore", {})
    if rs:
        row(f"restore {rs['keys']:,} keys from changelog", rs["restore_seconds"], "s")
        row("restore rate", rs["restore_records_per_s"], "rec/s")
        row("RocksDB on disk per 1M keys", rs["rocksdb_disk_bytes_per_1m_keys"] / 2**20, "MiB")
        row(
            "memory-store RSS delta per 1M keys",
            rs["memory_store_rss_delta_bytes_per_1m_keys"] / 2**20,
            "MiB",
        )
    lines.append("-" * 100)
    for name, value in res.get("ratios", {}).items():
        row(name, value, unit="")
    lines.append("-" * 100)
    for name, t in res.get("targets", {}).items():
        v = t["value"]
        shown = "-" if v is None else f"{v:,.3f}"
        lines.append(f"{name:<58} {shown:>20}  {t['status'].upper()} {t.get('note', '')}")
    return "\n".join(lines)


async def main_async(cfg: Config, bootstrap: str, root: Path) -> dict[str, Any]:
    """Run every section against the broker at `bootstrap`; return the results."""
    res: dict[str, Any] = {
        "machine": machine_info(),
        "config": {
            k: (sorted(v) if isinstance(v, frozenset) else v) for k, v in cfg.__dict__.items()
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "errors": {},
    }
    t0 = time.monotonic()
    res["broker"] = bootstrap
    bench = Bench(cfg, bootstrap, root)
    bench.results = res
    await bench.produce_inputs()
    sections: list[tuple[str, Callable[[], Any]]] = [
        ("raw", bench.raw),
        ("weir", bench.weir),
        ("peers", bench.peers),
        ("replay", bench.replay),
        ("latency", bench.latency),
        ("restore", bench.restore),
    ]
    if cfg.profile:
        sections.append(("profile", bench.profile))
    for name, fn in sections:
        if name in cfg.skip:
            continue
        try:
            out = fn()
            if asyncio.iscoroutine(out):
                await out
        except Exception as exc:
            res["errors"][name] = f"{type(exc).__name__}: {exc}"
            say(f"section {name} failed:\n{traceback.format_exc()}")
    res["duration_s"] = round(time.monotonic() - t0, 1)
    return res


def main() -> int:
    """Run the bench, print the table, write bench/results.json; exit 1 on a failed check."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = Config.from_env()
    tune_gc()  # the in-process workers and replays run as `weir worker` / `weir replay` do
    root = tempdir("weir-bench-")
    stack = LocalStack(root / "local")
    try:
        say(f"starting a local Kafka broker in {root}")
        bootstrap = stack.kafka.up()  # only Kafka: the bench needs no PostgreSQL
        res = asyncio.run(main_async(cfg, bootstrap, root))
    finally:
        say("stopping the local broker")
        stack.down()
        shutil.rmtree(root, ignore_errors=True)
    ratios_and_targets(res)
    out = BENCH_DIR / "results.json"
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(table(res))
    print(f"\nresults: {out} (took {res['duration_s']:.0f}s)")
    failed = [
        c
        for g in res.get("weir", {}).values()
        for f in g.values()
        for c in f["check"]
        if c.startswith("FAIL")
    ]
    return 1 if failed or res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
