"""Kafka security on a real broker with TLS and SCRAM listeners (tests/secure_broker.py).

A worker runs exactly_once over TLS with client certificates and over SASL_SSL with
SCRAM-SHA-512, restores its state from the changelog over the same connection, and a
read_committed client of its own (also over TLS) reads back exact counts. `weir produce`
connects the same way. A wrong password or an untrusted broker certificate stops the worker at
once with one readable line. A worker's passwords appear in no log, HTTP response, dead letter,
state file or settings dump.

This module runs its own broker (two extra listeners), once for all its tests.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.checks import check_exact, counting_env, rows, until_exact
from tests.secure_broker import SecureBroker
from tests.workers import WorkerProcess, run_counting_to_end
from weir.service.connection import KafkaConnection
from weir.service.local import LocalStartError
from weir.service.local.proc import free_port
from weir.service.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

CONNECT_TIMEOUT_S = 3.0
STARTUP_BOUND_S = 20.0
"""Python start and imports of a `weir worker` process on a busy machine, at most."""


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    broker = SecureBroker(tmp_path_factory.mktemp("secure"), f"s3cr3t-{uuid.uuid4().hex}")
    try:
        broker.up()
    except LocalStartError as exc:
        broker.down()
        pytest.fail(f"the secured test broker did not start: {exc}", pytrace=False)
    yield broker
    broker.down()


def _weir(args: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str, float]:
    """Run `python -m weir.service.cli <args>`; (exit code, stdout, stderr, seconds)."""
    import os

    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "weir.service.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


@pytest.mark.parametrize("listener", ["SSL", "SASL_SSL"])
async def test_exactly_once_counts_and_restore_over_a_secured_listener(
    secure: SecureBroker, tmp_path: Path, listener: str
) -> None:
    kafka = secure.helper(listener)
    src = await kafka.topic("sec-in", partitions=2)
    dst = await kafka.topic("sec-out", partitions=2)
    state = tmp_path / "state"
    env = {
        **counting_env(kafka, src, dst, "sec", 500),
        **secure.env(listener),
        "WEIR_STATE_DIR": str(state),
        "WEIR_COMMIT_INTERVAL_MS": "100 ms",
    }
    assert env["WEIR_BOOTSTRAP_SERVERS"] == secure.address(listener)
    log = tmp_path / "worker.log"
    produced = rows(0, 3000)
    await kafka.produce(src, produced, key="k")
    await run_counting_to_end(env, log)
    check_exact(await kafka.read(dst, idle_s=1.5), produced)

    # No local state: the changelog restores it, read over the same secured listener.
    shutil.rmtree(state)
    more = rows(3000, 1000)
    produced += more
    await kafka.produce(src, more, key="k")
    await run_counting_to_end(env, log)
    check_exact(await kafka.read(dst, idle_s=1.5), produced)
    text = log.read_text()
    assert "restoring" in text
    assert f"Kafka at {secure.address(listener)} over {listener}" in text
    await kafka.close()


async def test_weir_produce_connects_over_scram(secure: SecureBroker, tmp_path: Path) -> None:
    args = ["produce", "word_count", "--count", "200", "--rate", "5000"]
    rc, _out, err, _secs = await asyncio.to_thread(_weir, args, secure.env("SASL_SSL"), 120)
    assert rc == 0, err
    kafka = secure.helper("SASL_SSL")
    assert len(await kafka.read("lines", expect=200, idle_s=1.0)) == 200
    await kafka.close()
    rc, _out, err, _secs = await asyncio.to_thread(
        _weir, args, secure.env("SASL_SSL", password="wrong"), 120
    )
    assert rc == 1
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"weir: Kafka authentication failed at {secure.address('SASL_SSL')}: ")
    ), err


def _refused_env(secure: SecureBroker, case: str) -> dict[str, str]:
    if case == "wrong password":
        env = secure.env("SASL_SSL", password=f"wrong-{uuid.uuid4().hex}")
    else:  # the broker's certificate is signed by a CA the worker does not trust
        env = {**secure.env("SSL"), "WEIR_SSL_CAFILE": str(secure.pki.rogue_ca)}
    return {**env, "WEIR_KAFKA_CONNECT_TIMEOUT_MS": f"{CONNECT_TIMEOUT_S} s"}


@pytest.mark.parametrize("case", ["wrong password", "untrusted CA"])
async def test_a_refused_connection_stops_the_worker_with_one_line(
    secure: SecureBroker, tmp_path: Path, case: str
) -> None:
    env = {
        **_refused_env(secure, case),
        "WEIR_TEST_APP": f"refused-{uuid.uuid4().hex[:8]}",
        "WEIR_STATE_DIR": str(tmp_path / "state"),
    }
    args = ["worker", "tests.apps.counting:app"]
    rc, _out, err, secs = await asyncio.to_thread(_weir, args, env, 120)
    assert rc == 1, err
    assert secs < CONNECT_TIMEOUT_S + STARTUP_BOUND_S, f"took {secs:.1f}s:\n{err}"
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    if case == "wrong password":
        where = secure.address("SASL_SSL")
        assert last.startswith(f"weir: Kafka authentication failed at {where}: "), err
        assert "SCRAM-SHA-512" in last
    else:
        where = secure.address("SSL")
        assert last.startswith(f"weir: TLS certificate of {where} not trusted: "), err
    assert "waiting for Kafka" not in err and "retrying" not in err, err


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return bytes(r.read())


async def test_passwords_appear_nowhere(secure: SecureBroker, tmp_path: Path) -> None:
    """A worker with a SCRAM password and an encrypted client key: neither password, nor a
    wrong password tried later, shows in logs, HTTP responses, dead letters, state files or
    settings dumps."""
    kafka = secure.helper("SASL_SSL")
    src = await kafka.topic("leak-in")
    dst = await kafka.topic("leak-out")
    web_port = free_port()
    state = tmp_path / "state"
    env = {
        **counting_env(kafka, src, dst, "leak", 500),
        **secure.env("SASL_SSL"),
        # A client certificate too (the SASL_SSL listener does not ask for it): its key's
        # password is a secret as well.
        "WEIR_SSL_CERTFILE": str(secure.pki.client_cert),
        "WEIR_SSL_KEYFILE": str(secure.pki.client_key),
        "WEIR_SSL_KEY_PASSWORD": secure.pki.client_key_password,
        "WEIR_STATE_DIR": str(state),
        "WEIR_WEB_PORT": str(web_port),
        "WEIR_COMMIT_INTERVAL_MS": "100 ms",
    }
    produced = rows(0, 400)
    await kafka.produce(src, [*produced[:200], b"{poison, not JSON", *produced[200:]], key="k")
    log = tmp_path / "worker.log"
    worker = WorkerProcess("tests.apps.counting:app", env, log)
    try:
        await until_exact(kafka, dst, produced, 120, [worker])
        base = f"http://127.0.0.1:{web_port}"
        progress = await asyncio.to_thread(_get, base + "/progress?n=100")
        metrics = await asyncio.to_thread(_get, base + "/metrics")
        assert b"running_count" in progress and b"weir_" in metrics
        assert await asyncio.to_thread(worker.terminate, 60) == 0, worker.tail()
    finally:
        if worker.proc.poll() is None:
            worker.kill()
    dead_topic = f"{env['WEIR_TEST_APP']}-running_count-dead-letters"
    dead = await kafka.read(dead_topic, expect=1, idle_s=1.0)
    assert [r.value for r in dead] == [b"{poison, not JSON"], dead
    await kafka.close()

    # A run with a wrong password: its error line must not show the password it tried.
    wrong = f"s3cr3t-{uuid.uuid4().hex}-wrong"
    wrong_env = {**env, **secure.env("SASL_SSL", password=wrong), "WEIR_WEB_PORT": "0"}
    rc, out, err, _secs = await asyncio.to_thread(
        _weir, ["worker", "tests.apps.counting:app", "--log-level", "debug"], wrong_env, 120
    )
    assert rc == 1 and "Kafka authentication failed" in err, err

    settings = Settings(
        bootstrap_servers=secure.address("SASL_SSL"),
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="weir-test",
        sasl_password=secure.password,
        ssl_key_password=secure.pki.client_key_password,
    )
    haystack: dict[str, bytes] = {
        "worker log": log.read_bytes(),
        "wrong-password run stdout": out.encode(),
        "wrong-password run stderr": err.encode(),
        "/progress": progress,
        "/metrics": metrics,
        "settings repr": repr(settings).encode() + str(settings).encode(),
        "settings dump": settings.model_dump_json().encode() + str(settings.model_dump()).encode(),
        "connection repr": repr(KafkaConnection.from_settings(settings)).encode(),
    }
    for r in dead:
        haystack[f"dead letter {r.offset}"] = b"".join(
            [r.key or b"", r.value or b"", *(k.encode() + v for k, v in r.headers)]
        )
    for path in state.rglob("*"):
        if path.is_file():
            haystack[f"state file {path.relative_to(state)}"] = path.read_bytes()
    assert any(k.startswith("state file") for k in haystack), "the worker kept state files"
    secrets = [secure.password, wrong, secure.pki.client_key_password]
    leaks = [where for where, data in haystack.items() for s in secrets if s.encode() in data]
    assert leaks == [], "a password shows in these (not repeated here)"
    assert b"**********" in haystack["settings repr"]
