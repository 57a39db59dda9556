"""The pod's settings from deploy/ on a real broker: the prod overlay's ConfigMap and container
environment, its SASL password read from a secrets folder laid out as kubelet mounts a Secret,
run the word count over SASL_SSL with SCRAM-SHA-512 (tests/secure_broker.py), become ready,
count exactly and stop on SIGTERM well within the pod's termination grace period.

Only addresses change (broker, CA file, state folder, a free port on 127.0.0.1): the values an
operator sets are the rendered manifests' own."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.deploy_checks import DEPLOY, by_kind
from tests.secure_broker import SCRAM_USER, SecureBroker
from tests.workers import WorkerProcess, wait_for
from weir.service.local import LocalStartError
from weir.service.local.proc import free_port

pytestmark = pytest.mark.broker


def _pod_env() -> tuple[dict[str, str], int]:
    """The prod overlay's worker environment and termination grace period, as rendered."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the overlay is rendered with `kubectl kustomize`")
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "kubernetes" / "overlays" / "prod")],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    docs = by_kind([d for d in yaml.safe_load_all(out) if d])
    pod = docs["StatefulSet"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {**docs["ConfigMap"]["data"], **{e["name"]: e["value"] for e in container["env"]}}
    return env, pod["terminationGracePeriodSeconds"]


def _mounted_secret(folder: Path, files: dict[str, str]) -> Path:
    """`files` laid out as kubelet mounts a Secret: `..data` links to a timestamped folder and
    each file is a link through it."""
    data = folder / "..2026_01_01_00_00_00.000000000"
    data.mkdir(parents=True)
    os.symlink(data.name, folder / "..data")
    for name, text in files.items():
        (data / name).write_text(text)
        os.symlink(f"..data/{name}", folder / name)
    return folder


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_the_prod_pod_settings_run_the_word_count_on_a_scram_broker(tmp_path: Path) -> None:
    env, grace = _pod_env()
    assert env["WEIR_SECURITY_PROTOCOL"] == "SASL_SSL" and "WEIR_SASL_PASSWORD" not in env
    broker = SecureBroker(tmp_path, f"s3cr3t-{uuid.uuid4().hex}")
    try:
        broker.up()
    except LocalStartError as exc:
        broker.down()
        pytest.fail(f"the secured test broker did not start: {exc}", pytrace=False)
    try:
        secrets = _mounted_secret(tmp_path / "secrets", {"WEIR_SASL_PASSWORD": broker.password})
        port = free_port()
        env.update(
            WEIR_BOOTSTRAP_SERVERS=broker.address("SASL_SSL"),
            WEIR_SASL_USERNAME=SCRAM_USER,
            WEIR_SSL_CAFILE=str(broker.pki.ca),
            WEIR_STATE_DIR=str(tmp_path / "state"),
            WEIR_SECRETS_DIR=str(secrets),
            WEIR_WEB_PORT=str(port),
            WEIR_WEB_HOST="127.0.0.1",  # the pod's 0.0.0.0 is tested in test_security_settings
        )

        async def produce() -> None:
            helper = broker.helper("SASL_SSL")
            admin = AIOKafkaAdminClient(bootstrap_servers=helper.bootstrap, **helper.options)
            await admin.start()
            try:  # as topics.yaml declares it: the word count runs as two stages
                await admin.create_topics([NewTopic("lines", 6, 1)])
            finally:
                await admin.close()
            await helper.produce("lines", [{"value": "a b a"}, {"value": "b c"}] * 500)
            await helper.close()

        async def counts() -> dict[str, int]:
            helper = broker.helper("SASL_SSL")
            try:
                rows = await helper.read_json("word-counts", expect=3, idle_s=3)
            finally:
                await helper.close()
            return {r["word"]: r["count"] for r in rows}  # the last count of each word wins

        asyncio.run(produce())
        worker = WorkerProcess("weir.agents.word_count:app", env, tmp_path / "worker.log")
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: _status(f"{base}/healthz") == 200, 60, "/healthz")
            wait_for(lambda: _status(f"{base}/readyz") == 200, 120, "/readyz")
            assert asyncio.run(counts()) == {"a": 1000, "b": 1000, "c": 500}, worker.tail()
            with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
                assert b"weir_batches_total{" in r.read()
            started = time.monotonic()
            assert worker.terminate(grace) == 0, worker.tail()
            assert time.monotonic() - started < grace / 3, worker.tail()
        finally:
            if worker.proc.poll() is None:
                worker.kill()
        assert broker.password not in (tmp_path / "worker.log").read_text()
    finally:
        broker.down()
