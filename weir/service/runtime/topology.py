"""The topology of an app's stages: an agent whose keyed state needs its input repartitioned
runs as two stages joined by a repartition topic (see weir.tables.plan)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient

from weir.service.app import Agent, App, Topic
from weir.service.codec import WHOLE_ROW
from weir.service.connection import KafkaConnection
from weir.service.runtime import topics
from weir.service.sinks.base import Sink
from weir.service.sinks.foreach_batch import ForeachBatchSink
from weir.service.sinks.kafka import KafkaTopicSink
from weir.tables.plan import Cut, split
from weir.tables.query import Query

log = logging.getLogger("weir.worker")


@dataclass(frozen=True)
class Stage:
    """One runnable stage: an agent as declared, or one of the two halves of a split one."""

    agent: Agent
    upstream: tuple[str, ...] = ()
    """Names of the stages feeding it (available-now waits for them to finish)."""
    aliases: Mapping[str, str] = field(default_factory=dict)
    """Input topic -> input name in the query (stage 2 reads repartition topics)."""
    internal_sink: bool = False
    """Stage 1: the sink is a repartition topic whose configs Weir keeps; rows are written as
    the engine holds them (times as epoch ms), each naming its input record."""
    dead_letters: str | None = None
    """Stage 1: its agent's dead-letter topic."""
    query: str | None = None
    """Stage 1: the name of the agent it is part of (its query, in progress and metrics)."""

    @property
    def query_name(self) -> str:
        """The user's agent this stage runs (part of)."""
        return self.query or self.agent.name

    @property
    def kind(self) -> str:
        """ "repartition" for an internal first stage, "main" for the agent's own."""
        return "repartition" if self.internal_sink else "main"

    @property
    def dead_letter_topic(self) -> str:
        """Where the stage's failed records go: its agent's dead-letter topic."""
        return self.dead_letters or self.agent.dead_letter_topic

    def sinks(self) -> list[Sink]:
        """The stage's sinks, in the order they are written: the foreach-batch one and the
        other sinks (written before the checkpoint's transaction), then the sink topic (inside
        it)."""
        agent = self.agent
        out: list[Sink] = []
        fb = agent.foreach_batch
        if fb is not None:
            out.append(fb if isinstance(fb, Sink) else ForeachBatchSink(fb))
        out.extend(agent.sinks)
        if agent.sink is not None:
            headers = None if self.internal_sink else agent.headers
            columns = agent.kafka_columns and not self.internal_sink
            out.append(
                KafkaTopicSink(agent.sink.name, agent.key, self.internal_sink, headers, columns)
            )
        return out


async def stages(app: App, kafka: KafkaConnection) -> list[Stage]:
    """The stages replacing agents that must be split, in start order (each stage 1 before
    its stage 2, which keeps the agent's name); agents that run as declared are not listed.
    Creates missing input topics, whose partition counts decide."""
    admin = kafka.admin()
    await admin.start()
    out: list[Stage] = []
    try:
        existing = set(await admin.list_topics())
        for agent in list(app.agents.values()):
            if agent.repartition is False or agent.external is not None:
                continue  # trusted as partitioned, or one task
            new_inputs = [t for t in agent.inputs if t.name not in existing]
            for t in new_inputs:
                await topics.create(admin, t.name, t.partitions or 1, t.config)
                existing.add(t.name)
            await topics.wait_for_leaders(admin, [t.name for t in new_inputs])
            desc = await admin.describe_topics([t.name for t in agent.inputs])
            n = max(len(d["partitions"]) for d in desc)
            if agent.repartition is None and n == 1:
                continue
            plan = split(agent.query.node)
            if plan is None:
                continue
            stage2, cuts = plan
            stage2_query = Query(stage2, agent.query.output_mode)
            out.extend(await _split(admin, app, agent, n, stage2_query, cuts))
    finally:
        await admin.close()
    return out


async def _split(
    admin: AIOKafkaAdminClient, app: App, agent: Agent, n: int, stage2_query: Query, cuts: list[Cut]
) -> list[Stage]:
    by_name = {t.name: t for t in agent.inputs}
    input_configs = await topics.describe_configs(admin, list(by_name))
    out: list[Stage] = []
    aliases: dict[str, str] = {}
    inputs: list[Topic] = []
    for cut in cuts:
        # Whatever the input accepts, its repartition topic accepts too.
        limit = topics.limits_of(input_configs[cut.input_name]).max_message_bytes
        config = {**topics.REPARTITION_CONFIG, "max.message.bytes": str(limit)}
        topic = Topic(f"{agent.group_id}-repartition-{cut.input_name}", n, config)
        stage1 = Agent(
            app=app,
            name=f"{agent.name}-repartition-{cut.input_name}",
            inputs=(by_name[cut.input_name],),
            query=Query(cut.stage1, "append"),
            sink=topic,
            key=cut.key if cut.key is not None else WHOLE_ROW,
            trigger=agent.trigger,
            repartition=False,
            starting_offsets=agent.starting_offsets,
            schemas={k: v for k, v in agent.schemas.items() if k == cut.input_name},
            record_columns=agent.record_columns,
        )
        out.append(
            Stage(
                stage1, internal_sink=True, dead_letters=agent.dead_letter_topic, query=agent.name
            )
        )
        aliases[topic.name] = cut.input_name
        inputs.append(topic)
    stage2 = dataclasses.replace(
        agent,
        inputs=tuple(inputs),
        query=stage2_query,
        repartition=False,
        starting_offsets="earliest",
        schemas={},  # stage 1 conformed the rows already
        record_columns={},  # and added the records' columns
    )
    out.append(Stage(stage2, tuple(s.agent.name for s in out), aliases=aliases))
    log.info(
        "%s: repartitioning %s by %s through %s",
        agent.name,
        [c.input_name for c in cuts],
        [c.key for c in cuts],
        [t.name for t in inputs],
    )
    return out
