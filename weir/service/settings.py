"""Worker settings: frozen, from keyword arguments or `WEIR_*` environment variables."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ByteSize,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from weir.tables.timeutil import parse_duration

ProcessingGuarantee = Literal["at_least_once", "exactly_once"]
StoreKind = Literal["rocksdb", "memory"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class AgentSettings(BaseModel):
    """Settings one agent (query) overrides: `WEIR_AGENTS__<agent>__MAX_RECORDS_PER_TRIGGER`
    (Spark's maxOffsetsPerTrigger is per query), or `agents={"clicks": {...}}` in App."""

    model_config = {"extra": "forbid", "frozen": True}

    max_records_per_trigger: int | None = Field(default=None, gt=0)
    """This agent's bound of records per micro-batch (None: the app's)."""


class Settings(BaseSettings):
    """Settings of an App and its workers. Environment variables `WEIR_<NAME>` override
    defaults; keyword arguments override both; with `WEIR_SECRETS_DIR`, a file named
    `WEIR_<NAME>` there (a mounted Kubernetes secret) gives a setting too. Durations accept
    "200 ms" or timedeltas and are held in milliseconds."""

    model_config = SettingsConfigDict(
        env_prefix="WEIR_",
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
        env_nested_delimiter="__",
    )

    def __init__(self, **values: Any) -> None:
        secrets = os.environ.get("WEIR_SECRETS_DIR")
        if secrets and "_secrets_dir" not in values:
            values["_secrets_dir"] = secrets
        super().__init__(**values)

    """hide_input_in_errors: a validation error names the setting, never its value (which may
    be a password)."""

    bootstrap_servers: str | None = None
    """Kafka bootstrap servers; None: the broker recorded by `weir local up`."""
    processing_guarantee: ProcessingGuarantee = "exactly_once"
    """exactly_once: outputs, changelog and offsets in one Kafka transaction per checkpoint."""
    commit_interval_ms: int = 200
    """Checkpoint interval: how long a micro-batch gathers input before it runs and commits."""
    max_records_per_trigger: int = Field(default=50_000, gt=0)
    """Upper bound of records taken into one micro-batch (Spark's maxOffsetsPerTrigger)."""
    agents: dict[str, AgentSettings] = Field(default_factory=dict)
    """Per-agent overrides, by agent name (case-insensitive), e.g.
    `WEIR_AGENTS__CLICKS__MAX_RECORDS_PER_TRIGGER=500`."""
    state_dir: Path = Field(default_factory=lambda: local_home() / "state")
    """Where RocksDB stores live, one folder per agent and partition: `$WEIR_HOME/state`
    (WEIR_HOME defaults to `.weir` in the current directory)."""
    store: StoreKind = "rocksdb"
    """State store kind; memory loses state on restart (it is restored from the changelog)."""
    rocksdb_block_cache_bytes: ByteSize = Field(default=ByteSize(64 << 20), ge=1 << 20)
    """One LRU cache of RocksDB blocks shared by all the worker's tasks, their index and
    filter blocks included ("64 MiB", or bytes)."""
    rocksdb_write_buffer_bytes: ByteSize = Field(default=ByteSize(64 << 20), ge=1 << 20)
    """The bound on all the worker's RocksDB memtables together; a task's own memtable is at
    most 16 MiB ("64 MiB", or bytes). RocksDB's memory is about these two settings."""
    starting_offsets: Literal["earliest", "latest"] = "earliest"
    """Where a query with no committed offsets starts (first start only)."""
    fail_on_data_loss: bool = True
    """Committed offsets fell out of retention: stop with an error (True) or reset and warn."""
    no_data_batches: bool = True
    """Run a batch without input when the watermark moves, so quiet streams still emit."""
    idle_timeout_ms: int | None = None
    """An input partition idle this long stops holding the watermark back (None: never)."""
    transaction_timeout_ms: int = 60_000
    """Kafka transaction timeout for exactly_once producers."""
    shutdown_timeout_ms: int = 30_000
    """After SIGTERM, how long the micro-batch in flight may take to commit. Past it the
    batch is aborted (its input is read again after the restart) and the worker leaves its
    groups; a worker still running 15 s after that (user code blocking the event loop) exits
    at once with code 1. Keep a pod's termination grace period above this plus 15 s."""
    max_event_time_skew_ms: int | None = None
    """Event-time guard: a row whose event time is more than this ahead of processing time
    goes to the dead letters and never moves the watermark (None: off, as in Spark)."""
    watermark_jump_warn_ms: int | None = 86_400_000
    """A watermark moving more than this in one batch is logged and counted in
    `weir_watermark_jumps_total` (None: never)."""
    max_batch_retries: int = 5
    """A micro-batch that fails (user code, a sink, a refused record) is retried this many
    times with backoff before `on_batch_failure` applies; failures Kafka may get over (a
    broker away) are retried without limit."""
    on_batch_failure: Literal["fail", "dead_letter"] = "fail"
    """After the retries: stop the worker with one line (fail), or send the batch's records
    to the dead-letter topic and go on (dead_letter)."""
    max_state_rows: int | None = None
    """Per-task limit of state keys (exact: groups, buffered join rows, remembered dedup
    keys, across the task's operators; the eviction indexes kept beside them are not
    counted). A task over it stops the worker with one line naming the agent, the partition
    and the count; the batch that crossed it is committed, so a restart with a higher limit
    goes on exactly (None: no limit)."""
    web_port: int | None = None
    """HTTP port for /metrics, /progress, /healthz and /readyz (None: no HTTP server; 0: any
    port)."""
    log_format: Literal["auto", "json", "text"] = "auto"
    """`weir worker`'s log lines: JSON objects (json), readable text (text), or text on a
    terminal and JSON otherwise (auto); see weir.service.logs."""
    web_host: str = "127.0.0.1"
    """Address the HTTP endpoints bind: loopback unless set (a container sets 0.0.0.0 so that
    probes and Prometheus reach the pod IP)."""

    # -- Kafka security: every Kafka client Weir creates (consumers, transactional producers,
    # admin clients, restore readers, `weir produce`) connects with these. --------------------
    security_protocol: SecurityProtocol = "PLAINTEXT"
    """How to talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (a SASL
    login over TLS). SSL and SASL_SSL verify the broker's certificate and host name."""
    sasl_mechanism: SaslMechanism | None = None
    """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with SASL_PLAINTEXT and SASL_SSL."""
    sasl_username: str | None = None
    """The SASL user; required with SASL_PLAINTEXT and SASL_SSL."""
    sasl_password: SecretStr | None = None
    """The SASL password; required with SASL_*. Never printed: repr, dumps, logs and error
    messages show `**********`."""
    ssl_cafile: Path | None = None
    """PEM file of the CA(s) that signed the brokers' certificates (None: the system's
    trusted CAs). Used with SSL and SASL_SSL."""
    ssl_certfile: Path | None = None
    """PEM client certificate (chain) for brokers that require TLS client authentication."""
    ssl_keyfile: Path | None = None
    """PEM private key of `ssl_certfile` (None: the key is in `ssl_certfile`)."""
    ssl_key_password: SecretStr | None = None
    """Password of an encrypted `ssl_keyfile`; never printed."""
    kafka_connect_timeout_ms: int = 10_000
    """Bound on one connection attempt to a broker (TCP, TLS handshake, SASL login) when the
    worker checks why Kafka is unreachable: a refused login or an untrusted certificate stops
    `weir worker` within about this time; a broker merely down is waited for."""

    @field_validator(
        "commit_interval_ms",
        "transaction_timeout_ms",
        "kafka_connect_timeout_ms",
        "shutdown_timeout_ms",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: object) -> int:
        if isinstance(value, str) and value.strip().isdigit():  # WEIR_..._MS=1000: ms
            return int(value)
        if isinstance(value, str | timedelta | int) and not isinstance(value, bool):
            return parse_duration(value)
        raise ValueError(f"not a duration: {value!r}")

    @field_validator(
        "idle_timeout_ms", "max_event_time_skew_ms", "watermark_jump_warn_ms", mode="before"
    )
    @classmethod
    def _opt_duration(cls, value: object) -> int | None:
        return None if value is None else cls._duration(value)

    @model_validator(mode="after")
    def _security(self) -> Settings:
        """SASL protocols need a mechanism, a user and a password; a key without a
        certificate is a mistake. Messages name settings, never values of secrets."""
        if self.security_protocol.startswith("SASL_"):
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs {', '.join(missing)}"
                )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile is set but ssl_certfile is not")
        if self.kafka_connect_timeout_ms <= 0:
            raise ValueError("kafka_connect_timeout_ms must be positive")
        return self


def for_agent(settings: Settings, agent: str) -> Settings:
    """`settings` with the overrides of `agent` applied (also for its repartition stage,
    named `<agent>-repartition-<input>`)."""
    name = agent.lower()
    for key, override in settings.agents.items():
        k = key.lower()
        if name == k or name.startswith(k + "-repartition-"):
            given = {f: v for f, v in override.model_dump().items() if v is not None}
            return settings.model_copy(update=given)
    return settings


def settings_table() -> str:
    """The README's settings table (a test keeps the README's copy equal to it)."""
    rows = ["| variable (App keyword) | default | what it does |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = "see text" if field.default_factory is not None else f"`{field.default!r}`"
        about = _described(name).replace("|", "\\|")
        rows.append(f"| `WEIR_{name.upper()}` (`{name}`) | {default} | {about} |")
    return "\n".join(rows)


def local_home() -> Path:
    """Weir's local folder: `WEIR_HOME`, else `.weir` under the current directory (the local
    broker and PostgreSQL, worker state, the demo's outputs)."""
    return Path(os.environ.get("WEIR_HOME", ".weir")).resolve()


def settings_error(exc: ValidationError) -> str:
    """One line naming each invalid setting (as its `WEIR_*` variable) and what is wrong;
    a secret's value never appears (the model hides inputs in its errors)."""
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if not isinstance(x, int)]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "not a setting of Weir"
        env = "WEIR_" + "__".join(x.upper() for x in loc)
        parts.append(f"{env} ({'.'.join(loc)}): {msg}" if loc else msg)
    return "invalid settings: " + "; ".join(parts)


def settings_help() -> str:
    """The settings as `weir worker --help` lists them: each WEIR_* variable, its default and
    the first sentence of its description."""
    lines = ["settings (environment variables, or keyword arguments of App):"]
    for name, field in Settings.model_fields.items():
        default = "computed" if field.default_factory is not None else repr(field.default)
        about = _described(name).split(". ")[0].rstrip(".")
        lines.append(f"  WEIR_{name.upper():<28} {about} (default {default})")
    return "\n".join(lines)


def _described(name: str) -> str:
    """A setting's docstring as one line (the README table and `--help` show it)."""
    return " ".join((Settings.model_fields[name].description or "").split())
