"""Topic administration: creating an agent's topics, reading the limits the broker enforces on
them, keeping internal topics' configs, and deleting what internal topics no longer need."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import TopicPartition

from weir.service.app import Agent
from weir.service.connection import KafkaConnection
from weir.service.runtime.failures import stop_client

log = logging.getLogger("weir.topics")

DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""The broker's default `message.max.bytes`: the largest record batch a topic accepts."""

REPARTITION_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}
"""Repartition topics keep records until Weir deletes them after their consumer's commit (as
Kafka Streams does), so neither age nor size can delete records not yet processed."""


@dataclass(frozen=True)
class TopicLimits:
    """What the broker refuses on a topic (read from its configs)."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """`max.message.bytes`: a record batch larger than this is refused (MessageSizeTooLarge)."""


async def create(
    admin: AIOKafkaAdminClient, name: str, partitions: int, config: dict[str, str]
) -> None:
    """Create topic `name` (replication factor 1) unless it exists."""
    with contextlib.suppress(TopicAlreadyExistsError):
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=dict(config))])


async def wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[str]) -> None:
    """Wait until every partition of `topics` accepts writes: it has a leader and the leader
    is in sync (a new topic refuses acks=all writes before, with retried NotEnoughReplicas
    warnings). Raises RuntimeError after 30 s."""
    if not topics:
        return
    for _ in range(300):
        desc = await admin.describe_topics(topics)
        if all(
            d["error_code"] == 0
            and d["partitions"]
            and all(p["leader"] >= 0 and p["leader"] in p["isr"] for p in d["partitions"])
            for d in desc
        ):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topics {topics} do not accept writes (no leader in sync) after 30s")


async def describe_configs(
    admin: AIOKafkaAdminClient, topics: list[str]
) -> dict[str, dict[str, str]]:
    """The current configs of `topics` (name -> value); a topic that cannot be described
    (no permission, not there) maps to {}."""
    if not topics:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
    out: dict[str, dict[str, str]] = {t: {} for t in topics}
    for response in await admin.describe_configs(resources):
        for error_code, _msg, _type, name, entries in response.resources:
            if error_code == 0 and name in out:
                out[name] = {e[0]: e[1] for e in entries if e[1] is not None}
    return out


def limits_of(config: dict[str, str]) -> TopicLimits:
    """The limits a topic's configs set (broker defaults for what they do not say)."""
    return TopicLimits(int(config.get("max.message.bytes", DEFAULT_MAX_MESSAGE_BYTES)))


async def ensure_config(
    admin: AIOKafkaAdminClient, name: str, current: dict[str, str], wanted: dict[str, str]
) -> None:
    """Give an internal topic whose `current` configs differ from `wanted` exactly the
    `wanted` overrides (a topic made by an older version of Weir)."""
    if all(current.get(k) == v for k, v in wanted.items()):
        return
    await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, dict(wanted))])
    log.info("topic %s: set %s", name, wanted)


async def delete(admin: AIOKafkaAdminClient, names: Collection[str]) -> None:
    """Delete the topics of `names` that exist and wait (up to 20 s) until the broker no
    longer lists them, so topics of the same names can be created again at once."""
    doomed = set(names) & set(await admin.list_topics())
    if not doomed:
        return
    await admin.delete_topics(sorted(doomed))
    for _ in range(200):
        if not doomed & set(await admin.list_topics()):
            return
        await asyncio.sleep(0.1)


async def delete_before(admin: AIOKafkaAdminClient, offsets: dict[TopicPartition, int]) -> None:
    """Delete the records before `offsets` (committed positions of an internal topic)."""
    if offsets:
        await admin.delete_records({tp: RecordsToDelete(o) for tp, o in offsets.items()})


async def ensure_agent_topics(
    kafka: KafkaConnection, agent: Agent, dead_letter_topic: str, internal_sink: bool
) -> dict[str, TopicLimits]:
    """Create the inputs, sink, changelog and dead-letter topics of `agent` that do not
    exist, give an `internal_sink` (a repartition topic) its configs, and return the limits
    of the topics it writes. Raises ValueError when inputs of a join are not co-partitioned."""
    admin = kafka.admin()
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        created: list[str] = []
        kafka_inputs = [] if agent.external is not None else list(agent.inputs)
        for t in kafka_inputs:
            if t.name not in existing:
                await create(admin, t.name, t.partitions or 1, t.config)
                existing.add(t.name)
                created.append(t.name)
        await wait_for_leaders(admin, created)
        counts = {"": 1}  # a non-Kafka input: one task
        if kafka_inputs:
            desc = await admin.describe_topics([t.name for t in kafka_inputs])
            counts = {d["topic"]: len(d["partitions"]) for d in desc}
        n_in = max(counts.values())
        if len(set(counts.values())) > 1 and len(agent.inputs) > 1:
            raise ValueError(
                f"agent {agent.name}: input topics must be co-partitioned, got {counts}"
            )
        wanted = [
            (agent.changelog_topic, n_in, {"cleanup.policy": "compact"}),
            (dead_letter_topic, 1, {}),
        ]
        if agent.sink is not None:
            wanted.append((agent.sink.name, agent.sink.partitions or n_in, agent.sink.config))
        if agent.late_topic is not None:
            wanted.append((agent.late_topic.name, agent.late_topic.partitions or 1, {}))
        for name, parts, config in wanted:
            if name not in existing:
                await create(admin, name, parts, config)
                created.append(name)
        await wait_for_leaders(admin, created)
        configs = await describe_configs(admin, [name for name, _p, _c in wanted])
        if internal_sink and agent.sink is not None:
            await ensure_config(admin, agent.sink.name, configs[agent.sink.name], agent.sink.config)
        return {name: limits_of(c) for name, c in configs.items()}
    finally:
        await admin.close()


class Purger:
    """Deletes the consumed records of the repartition topics a stage reads, at most every
    `interval_s` (Kafka Streams' purge of repartition topics). A failed delete is logged and
    retried with the next offsets; it never fails a batch."""

    def __init__(self, kafka: KafkaConnection, name: str, interval_s: float = 5.0) -> None:
        self.kafka = kafka
        self.name = name
        self.interval_s = interval_s
        self._admin: AIOKafkaAdminClient | None = None
        self._pending: dict[TopicPartition, int] = {}
        self._next = 0.0

    async def start(self) -> None:
        """Connect the admin client."""
        self._admin = self.kafka.admin()
        await self._admin.start()

    async def consumed(self, offsets: dict[TopicPartition, int]) -> None:
        """Note committed `offsets`; delete what is before them when the interval is up."""
        self._pending.update(offsets)
        now = time.monotonic()
        if now < self._next or self._admin is None:
            return
        self._next = now + self.interval_s
        pending, self._pending = self._pending, {}
        try:
            await delete_before(self._admin, pending)
        except (KafkaError, OSError) as exc:
            log.warning("%s: deleting consumed repartition records failed: %r", self.name, exc)

    async def stop(self) -> None:
        """Delete what is pending, then close the admin client."""
        if self._admin is None:
            return
        self._next = 0.0
        await self.consumed({})
        await stop_client(self._admin)
        self._admin = None
