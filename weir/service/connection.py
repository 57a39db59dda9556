"""How Weir connects to Kafka: the one place that turns settings into aiokafka clients.

Every Kafka client Weir creates (group consumers, transactional and idempotent producers,
admin clients, restore readers, `weir produce`, the demo) is made by a `KafkaConnection`, so
the brokers' address and the security settings (TLS, SASL) apply to all of them alike.

`check_access` tells a broker that refuses Weir (wrong SASL credentials, a TLS certificate
that is not trusted) from one that is merely unreachable: aiokafka reports both as "Unable to
bootstrap", and only the first is hopeless.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from pydantic import SecretStr

from weir.service.settings import SaslMechanism, SecurityProtocol, Settings

_AUTH_ERRORS = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
)


class KafkaAccessError(RuntimeError):
    """A broker refused Weir's SASL login, or its TLS certificate is not trusted: retrying
    cannot help (unlike a broker that is down), so the worker stops with this one line. The
    message names the broker and the cause, never a password."""

    transient = False


@dataclass(frozen=True)
class KafkaConnection:
    """The brokers and how to reach them; makes aiokafka clients that all use it.

    Contract: `consumer`, `producer` and `admin` pass `options()` plus the caller's keyword
    arguments to aiokafka (the caller's win only for non-connection options). Secrets stay
    `SecretStr`: the repr shows `**********`; only `options()` holds them in clear, for
    aiokafka, and must never be logged.
    """

    bootstrap_servers: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: SecretStr | None = None
    connect_timeout_ms: int = 10_000

    @classmethod
    def from_settings(cls, settings: Settings, bootstrap: str | None = None) -> KafkaConnection:
        """The connection `settings` describe; `bootstrap` (else `bootstrap_servers`) names
        the brokers. Raises ValueError when neither does."""
        found = bootstrap or settings.bootstrap_servers
        if not found:
            raise ValueError("no Kafka: set bootstrap_servers (WEIR_BOOTSTRAP_SERVERS)")
        return cls(
            bootstrap_servers=found,
            security_protocol=settings.security_protocol,
            sasl_mechanism=settings.sasl_mechanism,
            sasl_username=settings.sasl_username,
            sasl_password=settings.sasl_password,
            ssl_cafile=_path(settings.ssl_cafile),
            ssl_certfile=_path(settings.ssl_certfile),
            ssl_keyfile=_path(settings.ssl_keyfile),
            ssl_key_password=settings.ssl_key_password,
            connect_timeout_ms=settings.kafka_connect_timeout_ms,
        )

    @property
    def uses_tls(self) -> bool:
        """True for SSL and SASL_SSL."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of SSL and SASL_SSL (None otherwise): verifies the broker's
        certificate against `ssl_cafile` (else the system's CAs) and its host name, and
        presents `ssl_certfile` when set. Raises OSError/ssl.SSLError for unreadable files."""
        if not self.uses_tls:
            return None
        return create_ssl_context(
            cafile=self.ssl_cafile,
            certfile=self.ssl_certfile,
            keyfile=self.ssl_keyfile,
            password=_reveal(self.ssl_key_password),
        )

    def options(self) -> dict[str, Any]:
        """The keyword arguments every aiokafka client gets: bootstrap servers, security
        protocol, TLS context and SASL login. Holds the password in clear: never log it."""
        opts: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            opts["ssl_context"] = self.ssl_context
        if self.security_protocol.startswith("SASL_"):
            opts["sasl_mechanism"] = self.sasl_mechanism
            opts["sasl_plain_username"] = self.sasl_username
            opts["sasl_plain_password"] = _reveal(self.sasl_password)
        return opts

    def consumer(self, **kwargs: Any) -> AIOKafkaConsumer:
        """An AIOKafkaConsumer on this connection (not started)."""
        return AIOKafkaConsumer(**kwargs, **self.options())

    def producer(self, **kwargs: Any) -> AIOKafkaProducer:
        """An AIOKafkaProducer on this connection (not started)."""
        return AIOKafkaProducer(**kwargs, **self.options())

    def admin(self, **kwargs: Any) -> AIOKafkaAdminClient:
        """An AIOKafkaAdminClient on this connection (not started)."""
        return AIOKafkaAdminClient(**kwargs, **self.options())

    def hosts(self) -> list[tuple[str, int]]:
        """The bootstrap servers as (host, port); port 9092 when not given."""
        out = []
        for item in self.bootstrap_servers.split(","):
            item = item.strip()
            if not item:
                continue
            host, sep, port = item.rpartition(":")
            if not sep or not port.isdigit():
                host, port = item, "9092"
            out.append((host.strip("[]"), int(port)))
        return out

    def describe(self) -> str:
        """A one-line description for logs: brokers, protocol and SASL user (no secret)."""
        text = f"{self.bootstrap_servers} over {self.security_protocol}"
        if self.security_protocol.startswith("SASL_"):
            text += f" ({self.sasl_mechanism} as {self.sasl_username})"
        return text


async def check_access(kafka: KafkaConnection) -> None:
    """Connect once to each bootstrap server (TCP, TLS handshake, SASL login), each attempt
    bounded by `connect_timeout_ms`.

    Raises KafkaAccessError at the first broker that refuses the login or presents a
    certificate that is not trusted; returns quietly otherwise, whether the brokers answered
    or not (a broker down, unreachable or slow is for the caller to wait for). Raises
    KafkaAccessError too when the local TLS files cannot be read.
    """
    try:
        ctx = kafka.ssl_context
    except (OSError, ValueError) as exc:
        raise KafkaAccessError(f"TLS files of the Kafka connection unusable: {exc}") from None
    opts = kafka.options()
    timeout_s = kafka.connect_timeout_ms / 1000
    for host, port in kafka.hosts():
        where = f"{host}:{port}"
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    port,
                    client_id="weir-access-check",
                    request_timeout_ms=kafka.connect_timeout_ms,
                    ssl_context=ctx,
                    security_protocol=kafka.security_protocol,
                    sasl_mechanism=opts.get("sasl_mechanism"),
                    sasl_plain_username=opts.get("sasl_plain_username"),
                    sasl_plain_password=opts.get("sasl_plain_password"),
                ),
                timeout_s,
            )
        except _AUTH_ERRORS as exc:
            raise KafkaAccessError(
                f"Kafka authentication failed at {where}: {_clean(exc, kafka)}"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise KafkaAccessError(
                f"TLS certificate of {where} not trusted: {_clean(exc, kafka)}"
            ) from None
        except Exception:
            continue  # down, unreachable, slow or answering oddly: not a refusal
        conn.close()


def _clean(exc: BaseException, kafka: KafkaConnection) -> str:
    """`exc` as one line, with any secret of `kafka` masked (belt and braces)."""
    text = " ".join(str(getattr(exc, "verify_message", "") or exc).split()) or type(exc).__name__
    for secret in (kafka.sasl_password, kafka.ssl_key_password):
        value = _reveal(secret)
        if value:
            text = text.replace(value, "**********")
    return text


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def _path(value: object) -> str | None:
    return None if value is None else str(value)
