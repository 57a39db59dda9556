"""Sub-commands of `weir` beyond `local`: worker and run, replay, produce, compact, demo."""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import os
import signal
import sys
import threading
from typing import Any

from pydantic import ValidationError

from weir.service import logs
from weir.service.app import App, load_agent_spec, load_attribute
from weir.service.settings import settings_help

PIPELINES = "weir.agents"
"""Where `weir replay <name>` finds a pipeline given by its bare name."""
DEMO = "weir.agents.demo:run_demo"
"""What `weir demo` runs: exercise 5's e-commerce funnel over generated traffic, live."""


def load_app(spec: str) -> App:
    """The App `spec` names: `module:attribute` (attribute defaults to `app`; a bare name is
    a pipeline of weir/agents first), or for one agent alone `module:app.<agent>` or
    `module:<agent function>`, as `weir replay` takes them. Raises SystemExit with one
    readable line when it cannot."""
    try:
        module_name, attr, app, agent = load_agent_spec(spec, "app", PIPELINES)
    except ValidationError:
        raise  # invalid settings: the command says which, in one line (weir.service.cli)
    except ValueError as exc:
        raise SystemExit(f"weir: {exc}") from None
    if not isinstance(app, App):
        raise SystemExit(
            f"weir: {spec!r} is not a weir App or agent (a Query alone has no topics to run on: "
            "weir replay runs it)"
        )
    if agent:
        if agent not in app.agents:
            where = f"{module_name}:{attr}" if attr else module_name
            raise SystemExit(f"weir: {where} has no agent {agent!r} ({', '.join(app.agents)})")
        one = copy.copy(app)  # the module's App keeps all its agents
        one.agents = {agent: app.agents[agent]}
        return one
    return app


GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a long-running stream process.

    Everything alive now (imported modules, the app) is frozen out of future collections, and
    the youngest generation is collected every 50,000 net allocations instead of 700: a
    micro-batch allocates a dict per record, almost none of them in cycles, and the default
    collects several times per batch (about a tenth of replay time). Reference counting still
    frees everything that is not in a cycle at once.
    """
    import gc

    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def _dump_tasks() -> None:
    """SIGUSR1: log where every asyncio task of the worker is waiting (for stuck workers)."""
    import io

    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- {task.get_name()}: {task.get_coro()}\n")
        task.print_stack(limit=12, file=out)
    logging.getLogger("weir.worker").warning("asyncio tasks:\n%s", out.getvalue())


async def run_worker(app: App) -> None:
    """Run a worker for `app` until SIGTERM or SIGINT; then finish the checkpoint and leave."""
    from weir.service.endpoints import configured_bootstrap
    from weir.service.runtime.worker import Worker

    worker = Worker(app, app.settings.bootstrap_servers or configured_bootstrap())
    loop = asyncio.get_running_loop()
    bound = app.settings.shutdown_timeout_ms / 1000 + STOP_GRACE_S

    def on_stop_signal(signum: int, _frame: object) -> None:
        # A Python-level handler runs even while user code blocks the event loop: the
        # watchdog bounds the stop whatever the loop is doing.
        loop.call_soon_threadsafe(worker.stop)
        _start_watchdog(bound)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_stop_signal)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    await worker.run()


STOP_GRACE_S = 15.0
"""After shutdown_timeout_ms, how long the worker may take to abort and leave its groups
before the watchdog ends the process."""
STOP_TIMEOUT_EXIT = 1


def _start_watchdog(seconds: float) -> None:
    """End the process `seconds` from now unless it exits first (once per process)."""
    global _watchdog
    if _watchdog is not None:
        return

    def expire() -> None:
        logging.getLogger("weir.worker").error(
            "stop: still running %.0f s after the stop request (user code blocking the event "
            "loop?); exiting now without committing the batch in flight: its input is "
            "processed again after the restart",
            seconds,
            extra={"event": "stop_timeout"},
        )
        logging.shutdown()
        os._exit(STOP_TIMEOUT_EXIT)

    _watchdog = threading.Timer(seconds, expire)
    _watchdog.daemon = True
    _watchdog.start()


_watchdog: threading.Timer | None = None


def _worker(args: argparse.Namespace) -> int:
    logs.configure(args.log_level)
    app = load_app(args.app)
    tune_gc()
    from weir.service.connection import KafkaAccessError

    try:
        asyncio.run(run_worker(app))
    except KafkaAccessError as exc:  # the brokers refuse us: say why, in one line
        print(f"weir: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # one readable line; the traceback only at debug level
        logging.getLogger("weir").debug("worker failed", exc_info=True)
        print(f"weir worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    # Retries while fresh topics elect leaders are routine; show only real errors.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # The demo is a pipeline of the course's package, named here as the worker's app would be.
    _module, run_demo = load_attribute(DEMO, "run_demo")
    return int(asyncio.run(run_demo(args.seconds)))


def _replay(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from weir.service.replay import replay_files

    tune_gc()
    started = time.perf_counter()
    try:
        stats = replay_files(
            args.pipeline,
            Path(args.input),
            Path(args.output),
            batch_size=args.batch_size,
            no_data_batches=args.no_data_batches,
            state_dir=Path(args.state_dir) if args.state_dir else None,
            on_batch_failure=args.on_batch_failure,
            max_event_time_skew_ms=_skew(args.max_event_time_skew),
            package=PIPELINES,
            run_sinks=not args.no_sinks,
        )
    except (ValueError, OSError) as exc:
        print(f"weir replay: {exc}", file=sys.stderr)
        return 1
    secs = time.perf_counter() - started
    print(
        f"weir replay: {stats.input_lines} lines in {stats.batches} batches -> "
        f"{stats.output_rows} rows; {stats.late_rows} late, {stats.dead_letters} dead letters; "
        f"{secs:.2f}s ({stats.input_lines / max(secs, 1e-9):,.0f} events/s)",
        file=sys.stderr,
    )
    return 0


def _produce(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aiokafka.errors import KafkaError

    from weir.service.connection import KafkaAccessError, KafkaConnection
    from weir.service.endpoints import configured_bootstrap
    from weir.service.produce import produce
    from weir.service.settings import Settings

    kafka = KafkaConnection.from_settings(Settings(), configured_bootstrap())
    count = args.count if args.count is not None else int(args.rate * args.seconds)
    try:
        done = asyncio.run(
            produce(
                args.pipeline,
                kafka,
                rate=args.rate,
                count=count,
                late_fraction=args.late_fraction,
                duplicate_fraction=args.duplicate_fraction,
                copy=Path(args.copy) if args.copy else None,
                seed=args.seed,
                partitions=args.partitions,
                package=PIPELINES,
            )
        )
    except KafkaAccessError as exc:
        print(f"weir: {exc}", file=sys.stderr)
        return 1
    except (ValueError, KafkaError) as exc:
        print(f"weir produce: {exc}", file=sys.stderr)
        return 1
    topics = ", ".join(f"{t}: {n}" for t, n in sorted(done.per_topic.items()))
    print(
        f"weir produce: {done.events} events ({topics}; {done.late} late, {done.duplicates} "
        f"duplicated) in {done.seconds:.1f}s" + (f"; copy in {args.copy}" if args.copy else ""),
        file=sys.stderr,
    )
    return 0


def _compact(args: argparse.Namespace) -> int:
    from weir.service.sinks.parquet_compact import compact_parquet

    try:
        done = compact_parquet(args.path, min_files=args.min_files)
    except (BlockingIOError, OSError, ValueError) as exc:
        print(f"weir compact: {exc}", file=sys.stderr)
        return 1
    if done.files_before == done.files_after:
        print(
            f"nothing to compact in {args.path}: {done.files_before} files, no folder with "
            f"{args.min_files} or more"
        )
    else:
        print(
            f"compacted {args.path}: {done.folders} folders, {done.files_before} files -> "
            f"{done.files_after}, {done.rows} rows rewritten"
        )
    return 0


def _skew(text: str | None) -> int | None:
    """--max-event-time-skew: None keeps the pipeline's own, "off" is -1 (no guard)."""
    from weir.tables.timeutil import parse_duration

    if text is None:
        return None
    return -1 if text.strip().lower() == "off" else parse_duration(text)


def register(sub: Any) -> None:
    """Add the sub-commands to the `weir` parser's sub-parsers."""
    rp = sub.add_parser("replay", help="run a pipeline over a JSON-lines file, no broker")
    rp.add_argument("pipeline", help="a module of agents/ (e.g. tumbling_window) or module:attr")
    rp.add_argument("--input", required=True, help="JSON lines; several inputs: a 'topic' field")
    rp.add_argument("--output", required=True, help="JSON lines written here")
    rp.add_argument("--batch-size", type=int, default=1000, help="input lines per micro-batch")
    rp.add_argument(
        "--no-data-batches",
        action="store_true",
        help="run a batch without input whenever the watermark moves",
    )
    rp.add_argument("--state-dir", help="keep state in RocksDB here (default: memory)")
    rp.add_argument(
        "--no-sinks",
        action="store_true",
        help="do not run the agent's own sinks (Parquet, Delta, PostgreSQL, foreach-batch)",
    )
    rp.add_argument(
        "--on-batch-failure",
        choices=["fail", "dead_letter"],
        default="fail",
        help="a batch the query cannot run: stop with one line, or dead-letter its lines",
    )
    rp.add_argument(
        "--max-event-time-skew",
        help='dead-letter rows whose event time is more than this ahead of now ("1 day"); '
        "default: the pipeline's own (the course pipelines use 1 day); off: no guard",
    )
    rp.set_defaults(func=_replay)
    demo = sub.add_parser("demo", help="the e-commerce funnel live on the local broker, checked")
    demo.add_argument("--seconds", type=float, default=30.0)
    demo.set_defaults(func=_demo)
    for name, what in (("worker", "run the agents of an app"), ("run", "the same as worker")):
        worker = sub.add_parser(
            name,
            help=f"{what}: weir {name} module:app",
            description=f"{what.capitalize()} until stopped (SIGTERM or Ctrl-C).",
            epilog=settings_help(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        worker.add_argument(
            "app",
            help="a pipeline of weir/agents (e.g. event_summary), module:app, or "
            "module:app.<agent> for one agent",
        )
        worker.add_argument("--log-level", default="info")
        worker.set_defaults(func=_worker)
    pr = sub.add_parser("produce", help="write a pipeline's generated input to its topics")
    pr.add_argument("pipeline", help="a pipeline of weir/agents with generate(), or module")
    pr.add_argument("--rate", type=float, default=1000.0, help="events per second")
    pr.add_argument("--count", type=int, help="events to produce (default: rate x seconds)")
    pr.add_argument("--seconds", type=float, default=10.0)
    pr.add_argument("--late-fraction", type=float, default=0.0)
    pr.add_argument("--duplicate-fraction", type=float, default=0.0)
    pr.add_argument("--copy", help="also write the events here as JSON lines (for replay)")
    pr.add_argument("--seed", type=int, default=7)
    pr.add_argument("--partitions", type=int, default=1, help="for topics it creates")
    pr.set_defaults(func=_produce)
    cp = sub.add_parser("compact", help="merge a Parquet sink's small files (readers unaffected)")
    cp.add_argument("path", help="the Parquet sink's folder")
    cp.add_argument("--min-files", type=int, default=2, help="compact folders with this many")
    cp.set_defaults(func=_compact)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
