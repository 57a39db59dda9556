"""Where Kafka and PostgreSQL are: named by `WEIR_BOOTSTRAP_SERVERS` / `WEIR_POSTGRES_DSN`,
else the servers that `weir local up` started and recorded in the state folder."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from weir.service.settings import local_home

ENDPOINTS_FILE = "endpoints.json"
"""In the state folder: the endpoints of the servers `weir local up` started."""


class NotConfiguredError(RuntimeError):
    """No server is named and none was started locally (one readable line)."""


def state_dir() -> Path:
    """The local state folder: `WEIR_HOME`, else `.weir` under the current directory."""
    return local_home()


@dataclass
class Endpoints:
    """Where the local (or configured) servers are."""

    bootstrap_servers: str
    postgres_dsn: str


def _configured(env: str, field: str, what: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    path = state_dir() / ENDPOINTS_FILE
    if path.exists():
        return str(json.loads(path.read_text())[field])
    raise NotConfiguredError(f"no {what}: set {env} or run `weir local up` first")


def configured_bootstrap() -> str:
    """Bootstrap servers for workers and tools: `WEIR_BOOTSTRAP_SERVERS`, else the local broker
    recorded by `weir local up`. Raises NotConfiguredError when neither exists."""
    return _configured("WEIR_BOOTSTRAP_SERVERS", "bootstrap_servers", "Kafka")


def configured_postgres_dsn() -> str:
    """PostgreSQL DSN: `WEIR_POSTGRES_DSN`, else the local server recorded by `weir local up`.
    Raises NotConfiguredError when neither exists."""
    return _configured("WEIR_POSTGRES_DSN", "postgres_dsn", "PostgreSQL")
