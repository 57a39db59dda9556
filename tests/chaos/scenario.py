"""One chaos run: a pipeline's exactly_once and at_least_once apps, each with `weir worker`
processes on the same 4-partition inputs, through waves of input while workers are SIGKILLed
and restarted, a third worker joins, and the broker is SIGKILLed and restarted; then the
checks and a summary line per app."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.chaos import harness, models
from tests.chaos.apps import INPUTS
from tests.chaos.harness import ChaosBroker
from tests.workers import WorkerProcess

GUARANTEES = ("exactly_once", "at_least_once")
COMPLETE_TIMEOUT_S = 240.0
LONG = os.environ.get("WEIR_CHAOS_LONG") == "1"
TIMEOUT_S = 3600 if LONG else 600
"""pytest-timeout for one chaos test."""


@dataclass
class Plan:
    """Per wave, the records it holds and the chaos actions done while it is processed:
    "kill" (SIGKILL a random worker of each app while it commits output, restart it), "join"
    (a third worker joins each app's group), "leave" (it is SIGTERMed, the group rebalances)
    and "broker" (SIGKILL the broker while output is committed, restart it)."""

    per_wave: int
    steps: list[list[str]]
    seed: int


def plan_for(pipeline: str) -> Plan:
    """The CI plan (3 waves, 4 kills per app, a join, a broker kill), or with WEIR_CHAOS_LONG=1
    the long one (8 waves, 4 times the records, 13 kills, a join and a leave, two broker
    kills). WEIR_CHAOS_SEED fixes the seed (else a random one, printed in the summary)."""
    seed = int(os.environ.get("WEIR_CHAOS_SEED") or random.randrange(1 << 30))
    if LONG:
        steps = [
            ["kill", "kill"],
            ["join", "kill"],
            ["kill", "broker", "kill"],
            ["kill", "kill"],
            ["leave", "kill"],
            ["broker", "kill"],
            ["kill", "kill"],
            ["kill"],
        ]
        return Plan(6000, steps, seed)
    return Plan(1500, [["kill", "kill"], ["join", "broker", "kill"], ["kill"]], seed)


@dataclass
class AppRun:
    """One app (a guarantee) of the run: its worker slots, each with its own state folder and
    log, and what was done to them."""

    pipeline: str
    guarantee: str
    name: str
    output: str
    root: Path
    bootstrap: str
    max_records: int
    slots: dict[int, WorkerProcess] = field(default_factory=dict)
    kills: int = 0
    rebalances: int = 0

    def start(self, slot: int) -> None:
        env = {
            "WEIR_BOOTSTRAP_SERVERS": self.bootstrap,
            "WEIR_PROCESSING_GUARANTEE": self.guarantee,
            "WEIR_MAX_RECORDS_PER_TRIGGER": str(self.max_records),
            "WEIR_COMMIT_INTERVAL_MS": "100 ms",
            "WEIR_STATE_DIR": str(self.root / f"state-{slot}"),
            "WEIR_CHAOS_PIPELINE": self.pipeline,
            "WEIR_CHAOS_APP": self.name,
            "WEIR_CHAOS_OUTPUT": self.output,
        }
        log = self.root / f"worker-{slot}.log"
        self.slots[slot] = WorkerProcess("tests.chaos.apps:app", env, log)

    def assert_alive(self) -> None:
        for slot, w in self.slots.items():
            assert w.proc.poll() is None, (
                f"{self.name} worker {slot} exited with {w.proc.returncode}:\n{w.tail()}"
            )

    def kill_one(self, rng: random.Random) -> None:
        """SIGKILL a random worker and start it again on its state folder."""
        slot = rng.choice(sorted(self.slots))
        self.slots[slot].kill()
        self.kills += 1
        self.start(slot)

    def stop_all(self) -> None:
        """SIGTERM every worker (all at once), each must exit cleanly."""
        for w in self.slots.values():
            w.proc.terminate()
        for slot, w in self.slots.items():
            assert w.wait(90) == 0, f"{self.name} worker {slot}:\n{w.tail()}"

    def cleanup(self) -> None:
        for w in self.slots.values():
            if w.proc.poll() is None:
                w.kill()

    def tails(self) -> str:
        return "\n".join(
            f"--- {self.name} worker {s}:\n{w.tail(25)}" for s, w in self.slots.items()
        )


@dataclass
class Result:
    """An app's final outcome and its summary line."""

    app: AppRun
    outcome: models.Outcome
    open_transactions: dict[str, int]
    line: str


async def _grows(app: AppRun, timeout: float) -> bool:
    """Wait until `app` commits output (its output's end offsets move); False on timeout."""
    loop = asyncio.get_running_loop()
    before = await harness.end_total(app.bootstrap, app.output)
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        app.assert_alive()
        if await harness.end_total(app.bootstrap, app.output) > before:
            return True
        await asyncio.sleep(0.05)
    return False


async def _kill(app: AppRun, rng: random.Random) -> None:
    await _grows(app, 20)
    await asyncio.sleep(rng.uniform(0.0, 0.8))
    app.kill_one(rng)


async def _broker(broker: ChaosBroker, apps: list[AppRun], rng: random.Random) -> None:
    await _grows(rng.choice(apps), 20)
    await asyncio.sleep(rng.uniform(0.0, 0.8))
    await asyncio.to_thread(broker.kill)
    await asyncio.sleep(rng.uniform(0.5, 3.0))
    await asyncio.to_thread(broker.up)
    for app in apps:
        app.assert_alive()


async def _act(action: str, broker: ChaosBroker, apps: list[AppRun], rng: random.Random) -> None:
    if action == "kill":
        await asyncio.gather(*(_kill(app, random.Random(rng.random())) for app in apps))
    elif action == "join":
        for app in apps:
            app.start(2)
            app.rebalances += 1
    elif action == "leave":
        for app in apps:
            assert app.slots.pop(2).terminate(90) == 0, app.tails()
            app.rebalances += 1
    elif action == "broker":
        await _broker(broker, apps, rng)
    else:
        raise ValueError(action)


async def _until_complete(apps: list[AppRun], produced: models.Inputs) -> None:
    """Wait until every app's output holds every expected result (nothing lost)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + COMPLETE_TIMEOUT_S
    for app in apps:
        while True:
            app.assert_alive()
            records = await harness.read_all(app.bootstrap, app.output)
            outcome = models.check(app.pipeline, records, produced)
            if outcome.lost == 0:
                break
            if loop.time() > deadline:
                raise AssertionError(
                    f"{app.name}: output incomplete after {COMPLETE_TIMEOUT_S}s: "
                    f"{outcome.problems}\n{app.tails()}"
                )
            await asyncio.sleep(1.0)


async def run(pipeline: str, broker: ChaosBroker, tmp: Path) -> list[Result]:
    """Run `pipeline` under the plan with both guarantees side by side on the same inputs;
    return each app's final outcome (checked by the caller)."""
    plan = plan_for(pipeline)
    bootstrap = await asyncio.to_thread(broker.up)
    kills_before = broker.kills
    tag = uuid.uuid4().hex[:6]
    apps = [
        AppRun(
            pipeline,
            g,
            f"chaos-{pipeline}-{g.replace('_', '')}-{tag}",
            f"{pipeline}-{g}-out-{tag}",
            tmp / g,
            bootstrap,
            max(50, plan.per_wave // 12),
        )
        for g in GUARANTEES
    ]
    inputs = [f"{t}" for t in INPUTS[pipeline]]
    await harness.create_topics(bootstrap, [*inputs, *(a.output for a in apps)])
    produced: models.Inputs = {t: [] for t in inputs}
    try:
        return await _run(pipeline, plan, broker, apps, produced, kills_before)
    except AssertionError as exc:
        raise AssertionError(f"chaos {pipeline} seed={plan.seed}: {exc}") from None
    finally:
        for app in apps:
            app.cleanup()


async def _run(
    pipeline: str,
    plan: Plan,
    broker: ChaosBroker,
    apps: list[AppRun],
    produced: models.Inputs,
    kills_before: int,
) -> list[Result]:
    rng = random.Random(plan.seed)
    bootstrap = broker.bootstrap
    for k, actions in enumerate(plan.steps):
        wave = models.wave(pipeline, k, plan.per_wave, rng, produced)
        chunks = len(actions) + 1
        for t, rows in wave.items():
            produced[t] += rows
        parts = [{t: rows[i::chunks] for t, rows in wave.items()} for i in range(chunks)]
        for i, action in enumerate([*actions, ""]):
            for t, rows in parts[i].items():
                await harness.produce(bootstrap, t, rows)
            if k == 0 and i == 0:
                for app in apps:
                    (app.root).mkdir(parents=True)
                    app.start(0)
                    app.start(1)
            if action:
                await _act(action, broker, apps, rng)
        await _until_complete(apps, produced)
    for app in apps:
        app.stop_all()
    results = []
    n_in = sum(len(rows) for rows in produced.values())
    for app in apps:
        outcome = models.check(pipeline, await harness.read_all(bootstrap, app.output), produced)
        written = [app.output, *await harness.topics_of(bootstrap, app.name)]
        still_open = await harness.open_transactions(bootstrap, written)
        line = (
            f"chaos {pipeline} {app.guarantee}: in={n_in} out={outcome.out} "
            f"duplicates={outcome.duplicates} lost={outcome.lost} wrong={outcome.wrong} "
            f"open_txn={len(still_open)} worker_kills={app.kills} "
            f"rebalances={app.rebalances} broker_kills={broker.kills - kills_before} "
            f"seed={plan.seed}"
        )
        results.append(Result(app, outcome, still_open, line))
    return results


def report(results: list[Result], capsys: pytest.CaptureFixture[str]) -> None:
    """Print each app's summary line to the terminal, then check it: exactly_once has no
    duplicate, no loss, no wrong result and no open transaction; at_least_once no loss and
    no wrong result (its duplicates are reported, not failed)."""
    with capsys.disabled():
        print()
        for r in results:
            print(r.line)
    for r in results:
        o = r.outcome
        assert o.lost == 0 and o.wrong == 0, f"{r.line}\n{o.problems}\n{r.app.tails()}"
        if r.app.guarantee == "exactly_once":
            assert o.duplicates == 0, f"{r.line}\n{o.problems}\n{r.app.tails()}"
            assert not r.open_transactions, f"{r.line}\nopen: {r.open_transactions}"
