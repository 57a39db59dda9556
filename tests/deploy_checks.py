"""Helpers of tests/test_deploy.py: schema validation of manifests and the checks a worker's
StatefulSet must pass in the base and in every rendered overlay."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from weir.service.commands import STOP_GRACE_S
from weir.service.metrics import REGISTRY
from weir.service.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
SCHEMAS = REPO / "tests" / "schemas"
K8S_VERSION = "1.35.0"
"""The Kubernetes version whose schemas (shipped by kubernetes-validate) the manifests meet."""

# Kubernetes' margin beyond the worker's own stop bound (its watchdog): the process exiting.
STOP_MARGIN_S = 5


def docs_of(*paths: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of `paths`, in order."""
    return [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One document per kind (the worker's manifests hold at most one of each)."""
    out: dict[str, dict[str, Any]] = {}
    for doc in docs:
        assert doc["kind"] not in out, f"two {doc['kind']}s"
        out[doc["kind"]] = doc
    return out


@functools.cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path in sorted(SCHEMAS.glob("*.yaml")):
        (crd,) = docs_of(path)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version["served"]:
                schema = _closed(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                out[(f"{group}/{version['name']}", kind)] = schema
    return out


def strimzi_crds() -> dict[str, dict[str, Any]]:
    """The vendored Strimzi CRDs by kind."""
    crds = docs_of(*sorted(SCHEMAS.glob("strimzi-*.yaml")))
    return {c["spec"]["names"]["kind"]: c for c in crds}


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` refusing unknown fields, as the API server prunes (drops) them: a misspelt
    field would otherwise pass here and be silently ignored in the cluster."""
    props = schema.get("properties")
    if props is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema.setdefault("additionalProperties", False)
    for sub in (props or {}).values():
        _closed(sub)
    if isinstance(schema.get("items"), dict):
        _closed(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        _closed(schema["additionalProperties"])
    return schema


def validate(doc: dict[str, Any], where: str) -> None:
    """Fails (AssertionError naming `where`, the kind and each error) unless `doc` is valid:
    custom resources against their vendored CRD, other kinds against Kubernetes K8S_VERSION."""
    key = (doc["apiVersion"], doc["kind"])
    schema = _crd_schemas().get(key)
    if schema is not None:
        errors = [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft4Validator(schema).iter_errors(doc)
        ]
        assert not errors, f"{where}: {doc['kind']}: {errors}"
        return
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise AssertionError(f"{where}: no schema for {key}") from exc
    except kubernetes_validate.ValidationError as exc:
        at = ".".join(map(str, exc.absolute_path))
        raise AssertionError(f"{where}: {doc['kind']}: {at}: {exc.message}") from exc


def exposed_metric_families() -> set[str]:
    """The sample names `weir.service.metrics.REGISTRY` exposes: a counter `x` as `x_total`,
    a histogram as `x_bucket`, `x_sum` and `x_count`, others as named."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
_PROMQL_WORDS |= {"unless", "bool", "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression (or a Grafana `label_values(...)` query) selects:
    identifiers outside strings, label matchers, ranges and label lists that are neither
    function names nor keywords."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"label_values\(([^,()]*),[^)]*\)", r"\1", text)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        if m.group(2) is None and m.group(1).lower() not in _PROMQL_WORDS:
            names.add(m.group(1))
    return names


def check_worker(docs: dict[str, dict[str, Any]]) -> None:
    """What the worker's StatefulSet, ConfigMap, Service and PDB (base or rendered overlay)
    must agree on with each other, the image, the Strimzi manifests and the PodMonitor."""
    sts, config = docs["StatefulSet"], docs["ConfigMap"]["data"]
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config_ref = {"configMapRef": {"name": docs["ConfigMap"]["metadata"]["name"]}}
    assert container["envFrom"] == [config_ref]
    env = {**config, **{e["name"]: e["value"] for e in container["env"]}}
    for name in env:
        field = name.removeprefix("WEIR_").lower()
        assert name == "WEIR_SECRETS_DIR" or field in Settings.model_fields, f"{name}: unknown"
    settings = Settings(
        **{k.removeprefix("WEIR_").lower(): v for k, v in env.items() if k != "WEIR_SECRETS_DIR"},
        sasl_password="from-the-secret",
    )

    # HTTP: bound beyond loopback, one port for the container, probes, Service and PodMonitor.
    assert env["WEIR_WEB_HOST"] == "0.0.0.0"  # kubelet and Prometheus use the pod IP
    (web,) = (p for p in container["ports"] if p["name"] == "web")
    assert web["containerPort"] == settings.web_port == 8000
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "web"}
    (svc_port,) = docs["Service"]["spec"]["ports"]
    assert (svc_port["name"], svc_port["targetPort"]) == ("web", "web")
    assert docs["Service"]["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == docs["Service"]["metadata"]["name"]
    monitoring = by_kind(docs_of(DEPLOY / "monitoring" / "podmonitor.yaml"))["PodMonitor"]
    assert monitoring["spec"]["podMetricsEndpoints"][0]["port"] == "web"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    for selector in (
        sts["spec"]["selector"]["matchLabels"],
        docs["Service"]["spec"]["selector"],
        docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        monitoring["spec"]["selector"]["matchLabels"],
    ):
        assert selector and selector.items() <= labels.items()
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]

    # Non-root with a numeric uid, no privilege escalation, a read-only root.
    ctx = {**pod["securityContext"], **container["securityContext"]}
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 10001
    assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True

    # A stop commits the micro-batch in flight, or aborts it after shutdown_timeout_ms, and
    # the worker's own watchdog ends it STOP_GRACE_S later: all before Kubernetes kills it.
    bound = settings.commit_interval_ms / 1000 + settings.shutdown_timeout_ms / 1000
    assert pod["terminationGracePeriodSeconds"] >= bound + STOP_GRACE_S + STOP_MARGIN_S

    # State on the pod's own volume claim; secrets as files; the login is the KafkaUser's.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    def volume_of(path: str) -> str:
        return mounts[max((m for m in mounts if path.startswith(m)), key=len)]

    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    assert volume_of(str(settings.state_dir)) in claims
    strimzi = by_kind(docs_of(DEPLOY / "strimzi" / "kafka.yaml", DEPLOY / "strimzi" / "user.yaml"))
    user = strimzi["KafkaUser"]
    secret = volumes[mounts[env["WEIR_SECRETS_DIR"]]]["secret"]
    assert secret["secretName"] == user["metadata"]["name"] == settings.sasl_username
    assert secret["items"] == [{"key": "password", "path": "WEIR_SASL_PASSWORD"}]
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    assert settings.sasl_mechanism == "SCRAM-SHA-512"
    kafka = strimzi["Kafka"]
    (listener,) = (
        x
        for x in kafka["spec"]["kafka"]["listeners"]
        if x.get("authentication", {}).get("type") == "scram-sha-512"
    )
    name, ns = kafka["metadata"]["name"], kafka["metadata"]["namespace"]
    assert settings.bootstrap_servers == f"{name}-kafka-bootstrap.{ns}.svc:{listener['port']}"
    assert settings.security_protocol == ("SASL_SSL" if listener["tls"] else "SASL_PLAINTEXT")
    assert settings.ssl_cafile is not None
    ca = volumes[volume_of(str(settings.ssl_cafile))]["secret"]
    assert ca["secretName"] == f"{name}-cluster-ca-cert"
    assert ca["items"] == [{"key": "ca.crt", "path": settings.ssl_cafile.name}]
