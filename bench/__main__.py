"""`python -m bench`: the whole benchmark in one run; see bench/__init__.py and Config."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import data, peer_kstreams, peers, pipelines
from bench.checks import check_count, check_windows
from bench.common import BENCH_DIR, Config, Kafka, figure, machine_info, median
from bench.replay_runs import REPLAY_BATCH, replay_seconds
from bench.report import COMMIT_INTERVAL_MS, ratios_and_targets, table
from bench.weir_runs import (
    latency_at_rate,
    raw_consume,
    raw_produce,
    restore_figures,
    run_worker,
    steady,
    tempdir,
)
from weir.service.commands import tune_gc
from weir.service.local import LocalStack
from weir.tables.stream import read

GUARANTEES = ("at_least_once", "exactly_once")
LATENCY_RATES = (20_000, 10_000, 5_000, 2_000, 1_000)


def say(msg: str) -> None:
    """One progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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
            "wide": data.wide_events(n),
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
                "stateless_expr",
                pipelines.stateless_expr,
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
                "tumbling_expr",
                pipelines.tumbling_expr,
                ["events"],
                lambda v: check_windows(v, n, ev["total_amount"]),
            ),
            (
                "tumbling_wide",
                pipelines.tumbling_wide,
                ["wide"],
                lambda v: check_windows(v, n, self.sets["wide"].expect["total_amount"]),
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
            if name in self.cfg.skip:
                continue
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
        """quixstreams tumbling (.current() and .final(), both guarantees) and faust-streaming
        (count, tumbling table), over the same input records as Weir's runs."""
        self.results["peers"] = await peers.peer_figures(
            self.kafka,
            self.topics["events"],
            self.sets["events"],
            self.cfg.runs,
            self.cfg.peer_timeout,
            self.workdir,
            say,
            self.cfg.skip,
        )

    async def kstreams(self) -> None:
        """Kafka Streams 4.x (bench/kstreams) on the tumbling, tumbling_wide, sliding, dedup
        and join inputs, both guarantees, whole-run and second-half rates, outputs checked."""
        self.results["kstreams"] = await peer_kstreams.kstreams_figures(
            self.kafka, self.topics, self.sets, self.cfg, self.workdir, say
        )

    def replay(self) -> None:
        """Replay mode over in-memory JSON lines, no broker."""
        ev = data.replay_lines(self.sets["events"])
        cases: list[tuple[str, Callable[[], Any], list[bytes]]] = [
            ("stateless", lambda: pipelines.stateless(read("events")), ev),
            ("stateless_expr", lambda: pipelines.stateless_expr(read("events")), ev),
            ("tumbling", lambda: pipelines.tumbling(read("events")), ev),
            ("tumbling_expr", lambda: pipelines.tumbling_expr(read("events")), ev),
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
        """pyinstrument over one exactly_once worker run of BENCH_PROFILE's pipeline ->
        bench/profile.txt (bench/profile-<name>.txt for a pipeline other than tumbling)."""
        from pyinstrument import Profiler

        name = self.cfg.profile
        cases = {case[0]: case for case in self._weir_cases()}
        if name not in cases:
            raise ValueError(f"BENCH_PROFILE={name}: not a pipeline ({', '.join(cases)})")
        _name, build, inputs, _check = cases[name]
        state = tempdir("weir-bench-profile-")
        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        try:
            await run_worker(
                self.kafka.bootstrap,
                build,
                [self.topics[i] for i in inputs],
                f"bench-prof-{uuid.uuid4().hex[:6]}",
                "exactly_once",
                state,
            )
        finally:
            profiler.stop()
            shutil.rmtree(state, ignore_errors=True)
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        target = BENCH_DIR / ("profile.txt" if name == "tumbling" else f"profile-{name}.txt")
        target.write_text(text)
        say(f"profile written to {target.relative_to(BENCH_DIR.parent)}")

    async def course(self) -> None:
        """The course's pipelines, replay and worker (bench/course.py)."""
        from bench.course import course

        self.results["course"] = await course(self.kafka, self.workdir, say)


def _interleave(a: list[bytes], b: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for x, y in zip(a, b, strict=True):
        out.append(x)
        out.append(y)
    return out


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
        ("kstreams", bench.kstreams),
        ("replay", bench.replay),
        ("latency", bench.latency),
        ("restore", bench.restore),
        ("course", bench.course),
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
