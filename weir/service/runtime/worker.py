"""The worker: runs every agent of an app (split into stages where they repartition) until
stopped, waiting for Kafka while it is unreachable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from weir.service import http
from weir.service.app import App
from weir.service.connection import KafkaConnection, check_access
from weir.service.runtime import topology
from weir.service.runtime.failures import MAX_BACKOFF_S, transient
from weir.service.runtime.progress import QueryProgress
from weir.service.runtime.runner import AgentRunner
from weir.service.settings import for_agent
from weir.service.status import agent_state, public

log = logging.getLogger("weir.worker")


class Worker:
    """Runs every agent of an app until SIGTERM/SIGINT or until available-now agents finish.

    Contract: on a stop signal each agent finishes its in-flight checkpoint, closes its tasks
    and leaves the group; a failed agent stops the worker with its error.
    """

    def __init__(self, app: App, bootstrap: str | None = None) -> None:
        """`bootstrap` (else the app's `bootstrap_servers` setting) names the Kafka brokers;
        ValueError when neither does (`weir worker` falls back to `weir local up`'s broker).
        The app's security settings (TLS, SASL) apply to every Kafka client of the worker."""
        self.app = app
        self.kafka = KafkaConnection.from_settings(app.settings, bootstrap)
        self.bootstrap = self.kafka.bootstrap_servers
        run_id = str(uuid.uuid4())
        self.queries = {
            name: QueryProgress(
                app.name,
                name,
                agent.group_id,
                _sink_description(topology.Stage(agent)),
                app.listeners,
                run_id,
            )
            for name, agent in app.agents.items()
        }
        """Per agent, its query's handle: `last_progress`, `recent_progress`, `status`."""
        self.runners = {
            name: AgentRunner(
                topology.Stage(agent), for_agent(app.settings, name), self.kafka, self.queries[name]
            )
            for name, agent in app.agents.items()
        }
        self.stop_event = asyncio.Event()
        self.waiting_for_kafka: str | None = None
        """Why the worker is not running yet, while Kafka is unreachable at start."""

    async def _expand(self) -> None:
        """Split agents whose keyed state needs a repartition topic into their two stages."""
        for stage in await topology.stages(self.app, self.kafka):
            settings = for_agent(self.app.settings, stage.agent.name)
            runner = AgentRunner(stage, settings, self.kafka, self.queries[stage.query_name])
            runner.available_now.upstream = [self.runners[u].finished for u in stage.upstream]
            runner.available_now.upstream_written = [
                self.runners[u].written for u in stage.upstream
            ]
            self.runners[stage.agent.name] = runner

    def progress(self, n: int) -> dict[str, Any]:
        """See `weir.service.status.Status.progress`."""
        queries: dict[str, Any] = {}
        for name, query in self.queries.items():
            recent = list(query.recent)[-n:] if n > 0 else []
            last = query.last
            mains = [r for r in self.runners.values() if r.labels[1:] == (name, "main")]
            queries[name] = {
                "id": query.id,
                "runId": query.run_id,
                "name": name,
                "status": dict(query.status),
                "last_progress": public(last) if last is not None else None,
                "recent_progress": [public(p) for p in recent],
                "partitions": sorted({p for r in mains for p in r.tasks}),
            }
        return {"queries": queries}

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """See `weir.service.status.Status.readiness`: ready when every agent is (every
        assigned partition has its restored task) and the worker is not stopping."""
        states = {
            name: agent_state(runner.assigned(), runner.tasks)
            for name, runner in self.runners.items()
        }
        if self.waiting_for_kafka is not None:
            return False, {name: self.waiting_for_kafka for name in states}
        if self.stop_event.is_set():
            return False, {name: "stopping" for name in states}
        return all(s == "ready" for s in states.values()), states

    async def run(self) -> None:
        """Start all agents and run them until stopped."""
        started: list[AgentRunner] = []
        settings = self.app.settings
        web = await http.serve(self, settings.web_port, settings.web_host)
        log.info("Kafka at %s", self.kafka.describe())
        error: BaseException | None = None
        try:
            if not await self._until_connected(self._expand, "starting"):
                return
            for runner in self.runners.values():
                if not await self._until_connected(runner.start, runner.name, runner.stop):
                    return
                started.append(runner)
            for runner in started:
                if runner.stage.kind == "main":
                    runner.progress.started()
            runs = [asyncio.create_task(r.run(self.stop_event)) for r in started]
            try:
                await self._supervise(runs)
            except Exception as exc:
                error = exc
                raise
        finally:
            for runner in started:
                with contextlib.suppress(Exception):
                    await runner.stop()
                if runner.stage.kind == "main":
                    runner.progress.terminated(error)
            if web is not None:
                await web.stop()
            log.info("stopped", extra={"event": "stopped", "app": self.app.name})

    async def _supervise(self, runs: list[asyncio.Task[None]]) -> None:
        """Wait for the agents' runs until they end or a stop is requested; the first run that
        fails stops the others and its error is raised."""
        stopper = asyncio.create_task(self.stop_event.wait())
        pending = set(runs)
        try:
            while pending:
                done, _ = await asyncio.wait(
                    pending | {stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                for d in done - {stopper}:
                    pending.discard(d)
                    if d.exception() is not None:
                        self.stop_event.set()
                        raise d.exception()  # type: ignore[misc]
                if stopper.done():
                    await self._finish_in_flight(pending)
                    return
        finally:
            stopper.cancel()

    async def _finish_in_flight(self, runs: set[asyncio.Task[None]]) -> None:
        """After a stop request: let the batch in flight commit within `shutdown_timeout_ms`;
        past it abort it (its input is read again after the restart) and say so."""
        if not runs:  # every run ended with the stop request
            return
        timeout = self.app.settings.shutdown_timeout_ms / 1000
        _done, late = await asyncio.wait(runs, timeout=timeout)
        if not late:
            return
        for run in late:
            run.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        for runner in self.runners.values():
            if not runner.finished.is_set():
                await runner.abort_in_flight()
                log.warning(
                    "%s: the batch in flight did not commit within %.0f s of the stop request "
                    "(shutdown_timeout_ms); aborted: its input is processed again after the "
                    "restart",
                    runner.name,
                    timeout,
                    extra={"event": "aborted", "app": self.app.name, "query": runner.labels[1]},
                )

    async def _until_connected(
        self,
        step: Callable[[], Awaitable[None]],
        what: str,
        undo: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """Run `step`, retrying with backoff while Kafka is unreachable (`waiting_for_kafka`
        says so meanwhile, and /readyz reports it). False when a stop came first. Raises
        KafkaAccessError when a broker refuses the login or its certificate is not trusted
        (checked after each failed attempt, within `kafka_connect_timeout_ms`)."""
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                await step()
                self.waiting_for_kafka = None
                return True
            except Exception as exc:
                if not transient(exc):
                    raise
                await check_access(self.kafka)  # a refusal is final: KafkaAccessError
                self.waiting_for_kafka = f"waiting for Kafka at {self.bootstrap}: {exc}"
                log.warning("%s: Kafka unreachable (%s); retrying in %.1fs", what, exc, delay)
                if undo is not None:
                    await undo()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), delay)
            delay = min(MAX_BACKOFF_S, delay * 2)
        return False

    def stop(self) -> None:
        """Ask every agent to stop after its current checkpoint."""
        self.stop_event.set()


def _sink_description(stage: topology.Stage) -> str | None:
    """The agent's sinks in one line (None without a sink)."""
    names = [sink.description for sink in stage.sinks()]
    return ", ".join(names) if names else None
