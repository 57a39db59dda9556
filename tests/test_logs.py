"""Log lines (weir.service.logs): JSON objects with the lifecycle fields given in `extra`, or
readable text; "auto" is text on a terminal and JSON otherwise."""

from __future__ import annotations

import logging

import orjson
import pytest

from weir.service import logs
from weir.service.runtime.checkpoint import Outgoing
from weir.service.runtime.progress import BatchTimes, QueryProgress, TaskBatch
from weir.service.runtime.reporting import StageReport
from weir.tables.state.memory import MemoryStore
from weir.tables.stream import read


def record(msg: str, **extra: object) -> logging.LogRecord:
    r = logging.LogRecord("weir.x", logging.INFO, __file__, 1, msg, ("q",), None)
    r.__dict__.update(extra)
    return r


def test_a_json_line_holds_the_message_and_the_known_fields_only() -> None:
    line = logs.JsonFormatter().format(
        record("%s: assigned", event="assigned", app="a", query="q", partitions=[0, 1], x=1)
    )
    out = orjson.loads(line)
    assert out["message"] == "q: assigned" and out["level"] == "INFO"
    assert out["logger"] == "weir.x" and out["time"].endswith("+00:00")
    assert {k: out[k] for k in ("event", "app", "query", "partitions")} == {
        "event": "assigned",
        "app": "a",
        "query": "q",
        "partitions": [0, 1],
    }
    assert "x" not in out and "\n" not in line


def test_an_exception_is_kept_in_the_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        r = record("%s failed")
        r.exc_info = sys.exc_info()
    out = orjson.loads(logs.JsonFormatter().format(r))
    assert "ValueError: boom" in out["exception"]


@pytest.mark.parametrize(("fmt", "json_lines"), [("json", True), ("text", False), ("auto", True)])
def test_configure_chooses_the_format(
    fmt: str, json_lines: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("info", fmt)  # captured stderr is not a terminal: auto is JSON
    logging.getLogger("weir.t").info("hello", extra={"event": "stopped"})
    err = capsys.readouterr().err.strip()
    if json_lines:
        assert orjson.loads(err)["event"] == "stopped"
    else:
        assert err.endswith("INFO weir.t hello")
    logging.getLogger().handlers.clear()


@pytest.mark.parametrize("level", ["info", "debug"])
def test_routine_broker_retries_are_debug_lines_not_warnings(
    level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found: a worker on fresh topics and groups printed aiokafka's retry warnings and
    errors (NotEnoughReplicas, a coordinator still being elected) as if something failed."""
    logs.configure(level, "text")
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    coordinator.error(
        "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError"
    )
    coordinator.warning("Marking the coordinator dead (node 1)for group g.")
    logging.getLogger("aiokafka.producer.sender").warning(
        "Got error produce response on topic-partition TopicPartition(topic='t', partition=0), "
        "retrying. Error: [Error 19] NotEnoughReplicasError"
    )
    logging.getLogger("aiokafka.conn").error("Unable to connect to node 1: refused")
    logging.getLogger("weir.worker").warning("Kafka unreachable (NotEnoughReplicas); retrying")
    lines = capsys.readouterr().err.strip().splitlines()
    logging.getLogger().handlers.clear()
    levels = [line.split()[2] for line in lines]
    if level == "info":  # only what is not routine, at its own level
        assert levels == ["ERROR", "WARNING"], lines
        assert "Unable to connect" in lines[0] and "weir.worker" in lines[1]
    else:  # still there when asked for, as debug lines
        assert levels == ["DEBUG", "DEBUG", "DEBUG", "ERROR", "WARNING"], lines


def test_the_first_batch_line_of_a_repartition_stage_names_that_stage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Its other lines say "clicks-repartition-ev[1]"; the first-batch line said "clicks[1]".
    progress = QueryProgress("app", "clicks", "app-clicks", None, [], "run")
    labels = ("app", "clicks", "repartition")
    report = StageReport(progress, labels, reads_user_topics=True, name="clicks-repartition-ev")
    task = read("ev").group_by("user").count().query("update").task(MemoryStore())
    result = task.run_batch({"ev": [{"user": "a"}]}, 1)
    batch = TaskBatch(1, result, 1, {}, BatchTimes(0, 0, 0, 0, 0), 0, {}, None)
    with caplog.at_level(logging.INFO, logger="weir.worker"):
        report.batch(batch, {}, Outgoing("dlq", 1_000_000))
    (line,) = [r for r in caplog.records if getattr(r, "event", None) == "first_batch"]
    assert line.getMessage() == "clicks-repartition-ev[1]: first batch committed"
    assert (line.query, line.partition) == ("clicks", 1)  # type: ignore[attr-defined]
