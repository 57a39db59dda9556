"""Batch plans: a batch that writes outside the Kafka checkpoint (a foreach-batch function,
PostgreSQL, files) records the input it covers before its first such write, as Spark writes its
offset log before a batch runs. After a crash between those writes and the checkpoint, the
same batch id runs again over exactly that input, so a sink that skips a batch it already has
(by its identity) neither loses nor repeats a row. The plan is a record of the task's
changelog, committed on its own (a small transaction under exactly_once), so it survives the
machine too.
"""

from __future__ import annotations

from collections.abc import Mapping

from weir.service.sources.base import SourceRecord, TopicRecords


def ranges_of(recs: TopicRecords) -> dict[str, tuple[int, int]]:
    """Per input topic of a batch, (first offset, offset after the last)."""
    return {topic: (rs[0].offset, rs[-1].offset + 1) for topic, rs in recs.items() if rs}


def within_plan(
    recs: TopicRecords, plan: Mapping[str, tuple[int, int]]
) -> dict[str, list[SourceRecord]]:
    """The records of `recs` inside the plan's ranges, each offset once, in offset order."""
    out: dict[str, list[SourceRecord]] = {}
    for topic, (first, end) in plan.items():
        by_offset = {r.offset: r for r in recs.get(topic, ()) if first <= r.offset < end}
        if by_offset:
            out[topic] = [by_offset[o] for o in sorted(by_offset)]
    return out


def take_planned(recs: TopicRecords, plan: Mapping[str, tuple[int, int]]) -> TopicRecords | None:
    """The records of `recs` that the planned batch covers, or None while some are still
    missing (the consumer has not fetched up to the plan's end of every topic yet).

    Records beyond the plan belong to later batches and are left out; a topic the plan does
    not name contributes nothing.
    """
    out = within_plan(recs, plan)
    for topic, (_first, end) in plan.items():
        rs = out.get(topic)
        if not rs or rs[-1].offset != end - 1:
            return None
    return out


class PlannedRuns:
    """Per task running a planned batch again, its records fetched so far (a fetch brings at
    most `max_records_per_trigger` of them, fewer than a plan may cover)."""

    def __init__(self) -> None:
        self._held: dict[int, dict[str, list[SourceRecord]]] = {}

    def take(
        self, task: int, recs: TopicRecords, plan: Mapping[str, tuple[int, int]]
    ) -> TopicRecords | None:
        """Add `recs` to what task `task` holds; return the planned batch's records once all
        are there (then holding nothing), None until then."""
        held = self._held.setdefault(task, {})
        for topic, rs in recs.items():
            held.setdefault(topic, []).extend(rs)
        exact = take_planned(held, plan)
        if exact is None:
            self._held[task] = within_plan(held, plan)
        else:
            del self._held[task]
        return exact

    def forget(self, task: int) -> None:
        """Drop what task `task` holds (it was closed)."""
        self._held.pop(task, None)
