"""A real single-node KRaft Apache Kafka broker (combined broker and controller) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from weir.service.local.proc import LocalStartError, free_port, pid_alive, stop_pid, tail

KAFKA_VERSION = "4.4.0"
"""The newest Kafka 4.x release; aiokafka's transactions (InitProducerId, AddOffsetsToTxn,
TxnOffsetCommit v0, EndTxn) work against it, checked by the exactly-once tests."""

START_TIMEOUT_S = 90.0


def cache_dir() -> Path:
    """Per-user cache for the broker's jars: `$XDG_CACHE_HOME/weir`, else `~/.cache/weir`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "weir"


def kafka_classpath() -> str:
    """The broker's classpath: `WEIR_KAFKA_HOME/libs` when set, else jars fetched once through
    Maven into the per-user cache. Raises LocalStartError with Maven's output when it fails."""
    home = os.environ.get("WEIR_KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        if not libs.is_dir():
            raise LocalStartError(f"WEIR_KAFKA_HOME={home} has no libs/ folder")
        return f"{libs}/*"
    target = cache_dir() / f"kafka-{KAFKA_VERSION}"
    libs = target / "libs"
    done = target / ".complete"
    if done.exists():
        return f"{libs}/*"
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch at a time across processes
        if done.exists():
            return f"{libs}/*"
        if shutil.which("mvn") is None:
            raise LocalStartError("Maven (mvn) is not on PATH; it is needed to fetch Kafka once")
        pom = resources.files("weir.service.local").joinpath("kafka-pom.xml").read_text()
        (target / "pom.xml").write_text(pom.replace("@KAFKA_VERSION@", KAFKA_VERSION))
        print(f"weir: fetching Apache Kafka {KAFKA_VERSION} through Maven (once) ...", flush=True)
        proc = subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(target / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            out = (proc.stdout + proc.stderr).strip().splitlines()[-20:]
            raise LocalStartError("Maven could not fetch Kafka:\n" + "\n".join(out))
        done.write_text(KAFKA_VERSION)
    return f"{libs}/*"


@dataclass(frozen=True)
class BrokerExtras:
    """What a broker has beyond `weir local up`'s: more listeners (TLS, SASL), more
    configuration and more storage-format arguments (SCRAM users). Tests of secured
    connections use it; the PLAINTEXT listener stays (health checks use it)."""

    listeners: Mapping[str, str] = field(default_factory=dict)
    """Listener name -> security protocol, e.g. {"SASL_SSL": "SASL_SSL"}; each listens on a
    free port of 127.0.0.1 (`LocalKafka.listener` tells which)."""
    config: Mapping[str, str] = field(default_factory=dict)
    """More server.properties entries (listener.name.<name>.* settings, TLS files, ...)."""
    format_args: Sequence[str] = ()
    """More arguments of the storage format (e.g. "--add-scram", "SCRAM-SHA-512=[...]");
    they apply when the data folder is formatted, on the first `up`."""


class LocalKafka:
    """A KRaft broker whose data, config, log and pid live in `root`.

    Contract: `up` is idempotent (a running broker is reused) and returns only once the broker
    answers a metadata request; on failure it stops what it started and raises LocalStartError
    with the last log lines. `down` stops only the pid that `up` recorded. `extras` add
    listeners and configuration; every listener binds 127.0.0.1.
    """

    def __init__(self, root: Path, extras: BrokerExtras | None = None) -> None:
        self.root = root
        self.extras = extras or BrokerExtras()
        self.pid_file = root / "kafka.pid"
        self.log_file = root / "kafka.log"
        self.info_file = root / "kafka.json"

    def _info(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.info_file.read_text()))
        except (OSError, ValueError):
            return None

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def bootstrap(self) -> str:
        """The broker's address; valid once `up` has run."""
        info = self._info()
        if info is None:
            raise LocalStartError("local Kafka was never started here")
        return f"127.0.0.1:{info['port']}"

    def listener(self, name: str) -> str:
        """The address of the extra listener `name`; valid once `up` has run."""
        info = self._info()
        ports = (info or {}).get("listeners", {})
        if name not in ports:
            raise LocalStartError(f"local Kafka has no listener {name} (yet)")
        return f"127.0.0.1:{ports[name]}"

    def up(self) -> str:
        """Start (or reuse) the broker and return its bootstrap address."""
        if self._pid() is not None and self._answers():
            return self.bootstrap()
        self.root.mkdir(parents=True, exist_ok=True)
        classpath = kafka_classpath()
        info = self._info()
        port = free_port(info["port"] if info else 9092)
        taken = {port}
        controller = _distinct(info["controller"] if info else 9093, taken)
        recorded = (info or {}).get("listeners", {})
        extra = {name: _distinct(recorded.get(name), taken) for name in self.extras.listeners}
        self.info_file.write_text(
            json.dumps({"port": port, "controller": controller, "listeners": extra})
        )
        data = self.root / "data"
        props = self.root / "server.properties"
        listeners = {name: (self.extras.listeners[name], p) for name, p in extra.items()}
        props.write_text(_server_properties(port, controller, data, listeners, self.extras.config))
        java = shutil.which("java")
        if java is None:
            raise LocalStartError("java is not on PATH; Java 17 is needed to run Kafka")
        if not (data / "meta.properties").exists():
            shutil.rmtree(data, ignore_errors=True)
            cluster_id = _cluster_id()
            fmt = subprocess.run(
                [
                    *(java, "-cp", classpath, "kafka.tools.StorageTool", "format"),
                    *("-t", cluster_id, "-c", str(props), "--ignore-formatted"),
                    *self.extras.format_args,
                ],
                capture_output=True,
                text=True,
            )
            if fmt.returncode != 0:
                raise LocalStartError("Kafka storage format failed:\n" + fmt.stdout + fmt.stderr)
        log4j = resources.files("weir.service.local").joinpath("log4j2.properties")
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                [
                    java,
                    "-Xms256m",
                    "-Xmx1g",
                    "-XX:+UseG1GC",
                    f"-Dlog4j2.configurationFile={log4j}",
                    "-Dkafka.logs.dir=" + str(self.root / "logs"),
                    "-cp",
                    classpath,
                    "kafka.Kafka",
                    str(props),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LocalStartError(
                    f"Kafka exited with code {proc.returncode}; last lines of {self.log_file}:\n"
                    + tail(self.log_file)
                )
            if self._answers():
                return self.bootstrap()
            time.sleep(0.5)
        stop_pid(proc.pid)
        raise LocalStartError(
            f"Kafka did not answer within {START_TIMEOUT_S:.0f}s; last lines of {self.log_file}:\n"
            + tail(self.log_file)
        )

    def _answers(self) -> bool:
        try:
            return asyncio.run(_metadata_ok(self.bootstrap()))
        except LocalStartError:
            return False

    def down(self) -> None:
        """Stop the broker that `up` started here, if it runs."""
        pid = self._pid()
        if pid is not None:
            stop_pid(pid, timeout=30)
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> str:
        """A one-line status."""
        pid = self._pid()
        if pid is None:
            return "stopped"
        return f"running pid {pid} at {self.bootstrap()}" + (
            "" if self._answers() else " (not answering)"
        )


def _cluster_id() -> str:
    """A KRaft cluster id: a base64url-encoded UUID without padding (22 characters) that does
    not start with "-" (the storage tool would read it as an option; one id in 64 does)."""
    import base64

    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _distinct(preferred: int | None, taken: set[int]) -> int:
    """A free port, `preferred` when possible, not in `taken` (which it joins)."""
    port = free_port(preferred)
    while port in taken:
        port = free_port()
    taken.add(port)
    return port


def _server_properties(
    port: int,
    controller: int,
    data: Path,
    extra_listeners: Mapping[str, tuple[str, int]] | None = None,
    extra_config: Mapping[str, str] | None = None,
) -> str:
    """The broker's server.properties: PLAINTEXT and CONTROLLER listeners on 127.0.0.1, plus
    `extra_listeners` (name -> (security protocol, port)) and `extra_config` entries."""
    extra = dict(extra_listeners or {})
    listeners = "".join(f",{n}://127.0.0.1:{p}" for n, (_proto, p) in extra.items())
    protocols = "".join(f",{n}:{proto}" for n, (proto, _p) in extra.items())
    more = "".join(f"{k}={v}\n" for k, v in (extra_config or {}).items())
    return (
        f"""# Written by `weir local up`: a single-node KRaft broker on loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}{listeners}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}{listeners}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{protocols}
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.flush.interval.messages=9223372036854775807
"""
        + more
    )


async def _metadata_ok(bootstrap: str) -> bool:
    import logging

    from weir.service.connection import KafkaConnection

    # Connection errors while the broker boots are expected; keep them out of the user's view.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    admin = KafkaConnection(bootstrap).admin(request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        await asyncio.wait_for(admin.describe_cluster(), 5)
        return True
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
        logging.getLogger("aiokafka").setLevel(logging.NOTSET)
