"""Security settings without a broker: secrets stay masked, the Kafka client options follow
the settings, the HTTP endpoints of a real `weir worker` listen on loopback only unless
`WEIR_WEB_HOST` says otherwise. (tests/test_security_kafka.py checks the same settings against
a real secured broker; tests/test_deploy.py that the image and the manifests run non-root.)"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from tests.workers import WorkerProcess, wait_for
from weir.service.connection import KafkaConnection
from weir.service.local.proc import free_port
from weir.service.settings import Settings

SECRET = "s3cr3t-settings-7d1f"


def test_passwords_are_secret_in_repr_str_and_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIR_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("WEIR_SSL_KEY_PASSWORD", SECRET + "-key")
    s = Settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="u")
    assert isinstance(s.sasl_password, SecretStr)
    assert s.sasl_password.get_secret_value() == SECRET
    assert s.ssl_key_password is not None
    assert s.ssl_key_password.get_secret_value() == SECRET + "-key"
    kafka = KafkaConnection.from_settings(s, "127.0.0.1:9093")
    for text in (
        repr(s),
        str(s),
        s.model_dump_json(),
        str(s.model_dump()),
        repr(kafka),
        kafka.describe(),
    ):
        assert SECRET not in text
    assert "**********" in repr(s)
    assert kafka.describe() == "127.0.0.1:9093 over SASL_SSL (SCRAM-SHA-512 as u)"


def test_sasl_needs_a_mechanism_user_and_password_and_says_which() -> None:
    with pytest.raises(ValidationError, match="needs sasl_mechanism, sasl_username"):
        Settings(security_protocol="SASL_SSL", sasl_password=SECRET)
    with pytest.raises(ValidationError) as err:
        Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u")
    assert "needs sasl_password" in str(err.value)
    with pytest.raises(ValidationError):
        Settings(sasl_mechanism="GSSAPI")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="ssl_certfile"):
        Settings(ssl_keyfile="client.key")  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as err:
        Settings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_password=SECRET)
    assert SECRET not in str(err.value)


@pytest.mark.asyncio
async def test_connection_options_follow_the_settings() -> None:
    plain = KafkaConnection.from_settings(Settings(), "a:1,[::1]:2, b")
    assert plain.options() == {
        "bootstrap_servers": "a:1,[::1]:2, b",
        "security_protocol": "PLAINTEXT",
    }
    assert plain.hosts() == [("a", 1), ("::1", 2), ("b", 9092)]
    with pytest.raises(ValueError, match="no Kafka"):
        KafkaConnection.from_settings(Settings())

    tls = KafkaConnection.from_settings(
        Settings(bootstrap_servers="k:9093", security_protocol="SSL", kafka_connect_timeout_ms=2000)
    )
    opts = tls.options()
    ctx = opts["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert "sasl_plain_password" not in opts
    assert tls.connect_timeout_ms == 2000

    scram = KafkaConnection.from_settings(
        Settings(
            bootstrap_servers="k:9094",
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username="u",
            sasl_password=SECRET,
        )
    )
    opts = scram.options()
    assert opts["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (opts["sasl_plain_username"], opts["sasl_plain_password"]) == ("u", SECRET)
    assert "ssl_context" not in opts
    # Every client kind takes the options: aiokafka keeps them on its client.
    for client in (scram.consumer(), scram.producer(), scram.admin()):
        inner: Any = getattr(client, "_client", None) or client.client  # type: ignore[union-attr]
        assert inner._security_protocol == "SASL_PLAINTEXT"
        assert inner._sasl_mechanism == "SCRAM-SHA-256"
        await (client.close() if hasattr(client, "close") else client.stop())


def test_web_host_is_a_setting_that_defaults_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEIR_WEB_HOST", raising=False)
    assert Settings().web_host == "127.0.0.1"
    monkeypatch.setenv("WEIR_WEB_HOST", "0.0.0.0")
    assert Settings().web_host == "0.0.0.0"


def _listen_addresses(port: int) -> set[str]:
    """The local addresses listening on TCP `port`, from /proc/net/tcp{,6} (what `ss -ltn`
    shows)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, port_hex = fields[1].split(":")
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(addr)
                if len(raw) == 4:
                    out.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    out.add(socket.inet_ntop(socket.AF_INET6, words))
    return out


def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
            addr = str(s.getsockname()[0])
        except OSError:
            return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.mark.parametrize("host", [None, "0.0.0.0"])
def test_a_worker_serves_http_on_loopback_unless_told(tmp_path: Path, host: str | None) -> None:
    """A real `weir worker` with a web port (Kafka unreachable: it waits, serving /readyz):
    by default only 127.0.0.1 listens; WEIR_WEB_HOST=0.0.0.0 widens it explicitly."""
    port = free_port()
    env = {
        "WEIR_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "WEIR_WEB_PORT": str(port),
        "WEIR_STATE_DIR": str(tmp_path / "state"),
    }
    if host is not None:
        env["WEIR_WEB_HOST"] = host
    worker = WorkerProcess("tests.apps.counting:app", env, tmp_path / "worker.log")
    try:
        wait_for(lambda: _healthy(port) or worker.proc.poll() is not None, 60, "/healthz")
        assert worker.proc.poll() is None, worker.tail()
        assert _listen_addresses(port) == {host or "127.0.0.1"}
        other = _non_loopback_address()
        if other is not None:
            with socket.socket() as s:
                s.settimeout(2)
                reached = s.connect_ex((other, port)) == 0
            assert reached == (host == "0.0.0.0"), (other, host)
        assert worker.terminate(60) == 0, worker.tail()
    finally:
        if worker.proc.poll() is None:
            worker.kill()


def test_a_settings_error_names_the_setting_and_never_the_password() -> None:
    """`weir worker` with SASL but no mechanism or user: it stops naming what is missing,
    without a traceback, and without showing the password it was given."""
    env = {"WEIR_SECURITY_PROTOCOL": "SASL_SSL", "WEIR_SASL_PASSWORD": SECRET}
    proc = subprocess.run(
        [sys.executable, "-m", "weir.service.cli", "worker", "tests.apps.counting:app"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert SECRET not in proc.stderr + proc.stdout
    assert "needs sasl_mechanism, sasl_username" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
