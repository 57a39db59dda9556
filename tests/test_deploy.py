"""deploy/ as operators use it, checked offline (no cluster, no broker, no Docker engine).

Every manifest validates: core kinds against the Kubernetes schemas that `kubernetes-validate`
ships, Strimzi and prometheus-operator resources against their CRDs (vendored in
tests/schemas/), the compose file against the Compose specification, and each kustomize
overlay as `kubectl kustomize` renders it. Then what the parts must agree on: the web port and
probes, a non-root uid, the grace period against the worker's own stop bound, the
Kafka login from the KafkaUser's Secret, the topics and ACLs of the word-count app, and metric
names in alerts and dashboard that the worker really exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.deploy_checks import (
    DEPLOY,
    K8S_VERSION,
    SCHEMAS,
    by_kind,
    check_worker,
    docs_of,
    exposed_metric_families,
    promql_metric_names,
    strimzi_crds,
    validate,
)
from weir.agents.word_count import app as word_count_app
from weir.service.runtime.topics import REPARTITION_CONFIG

OVERLAYS = {
    # overlay: (replicas, processing guarantee, state volume size)
    "dev": (1, "at_least_once", "1Gi"),
    "prod": (3, "exactly_once", "20Gi"),
}


def test_every_yaml_and_json_file_under_deploy_parses() -> None:
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml", ".json"})
    assert len(files) >= 20, files
    for path in files:
        docs = [json.loads(path.read_text())] if path.suffix == ".json" else docs_of(path)
        assert docs and all(isinstance(d, dict) and d for d in docs), path


def test_strimzi_1_0_crds_serve_v1_only() -> None:
    crds = strimzi_crds()
    assert set(crds) == {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
    for kind, crd in crds.items():
        versions = [(v["name"], v["served"], v["storage"]) for v in crd["spec"]["versions"]]
        assert versions == [("v1", True, True)], kind  # v1beta2 is gone in Strimzi 1.0


def test_every_manifest_validates_against_its_schema() -> None:
    """Each resource of deploy/ (not kustomize patches, which are partial): core kinds against
    Kubernetes K8S_VERSION, custom resources against their CRD's openAPIV3Schema."""
    patches = {
        (k.parent / p["path"]).resolve()
        for k in DEPLOY.rglob("kustomization.yaml")
        for p in yaml.safe_load(k.read_text()).get("patches", [])
    }
    kinds: set[str] = set()
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.resolve() in patches or path.parent.name in {"datasources", "dashboards"}:
            continue
        for doc in docs_of(path):
            if "kind" in doc and doc["kind"] != "Kustomization":
                validate(doc, f"{path.relative_to(DEPLOY)}")
                kinds.add(doc["kind"])
    assert kinds == {
        "ServiceAccount", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget",
        "Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "PodMonitor", "PrometheusRule",
    }  # fmt: skip


def test_a_typo_in_a_custom_resource_is_refused() -> None:
    """The validation can fail: an unknown field and a wrong type are both reported."""
    user = by_kind(docs_of(DEPLOY / "strimzi" / "user.yaml"))["KafkaUser"]
    acl = user["spec"]["authorization"]["acls"][0]
    bad = {**user, "spec": {**user["spec"], "authorization": {"type": "simple", "acls": [
        {"resource": acl["resource"], "operation": "Read", "operations": ["Read"]}]}}}  # fmt: skip
    with pytest.raises(AssertionError, match="operation"):
        validate(bad, "user")
    pdb = by_kind(docs_of(DEPLOY / "kubernetes" / "base" / "pdb.yaml"))["PodDisruptionBudget"]
    with pytest.raises(AssertionError, match="maxUnavailable"):
        validate({**pdb, "spec": {**pdb["spec"], "maxUnavailable": [1]}}, "pdb")


def test_the_base_manifests_agree_with_each_other() -> None:
    docs = by_kind(docs_of(*sorted((DEPLOY / "kubernetes" / "base").glob("*.yaml"))))
    check_worker(docs)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_each_overlay_renders_and_validates(overlay: str) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the overlays are rendered with `kubectl kustomize`")
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "kubernetes" / "overlays" / overlay)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    for doc in rendered:
        validate(doc, f"overlays/{overlay}")
        assert doc["metadata"]["namespace"] == "weir", doc["kind"]
    docs = by_kind(rendered)
    assert set(docs) == {
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
    }
    replicas, guarantee, size = OVERLAYS[overlay]
    sts = docs["StatefulSet"]
    assert sts["spec"]["replicas"] == replicas
    assert docs["ConfigMap"]["data"]["WEIR_PROCESSING_GUARANTEE"] == guarantee
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == size
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    check_worker(docs)


def test_the_topics_and_acls_are_the_word_count_apps() -> None:
    """topics.yaml declares exactly the topics the worker would otherwise create, with the
    configs it expects; the KafkaUser's ACLs cover every topic, group and transactional id."""
    (agent,) = word_count_app.agents.values()
    (source,) = agent.inputs
    assert agent.sink is not None
    group = agent.group_id
    stage1 = f"{group}-repartition-{source.name}"  # weir.service.runtime.topology._split
    topics = {
        t["spec"].get("topicName", t["metadata"]["name"]): t["spec"]
        for t in docs_of(DEPLOY / "strimzi" / "topics.yaml")
    }
    assert set(topics) == {
        source.name, agent.sink.name, agent.changelog_topic, agent.dead_letter_topic,
        stage1, f"{stage1}-changelog",
    }  # fmt: skip
    n = topics[source.name]["partitions"]
    assert n > 1  # so the word count runs as two stages through `stage1`
    for name in (agent.changelog_topic, stage1, f"{stage1}-changelog"):
        assert topics[name]["partitions"] == n, name
    for name in (agent.changelog_topic, f"{stage1}-changelog"):
        assert topics[name]["config"]["cleanup.policy"] == "compact", name
    assert topics[agent.sink.name]["config"] == agent.sink.config
    assert {k: str(v) for k, v in topics[stage1]["config"].items()} == REPARTITION_CONFIG
    for spec in topics.values():
        assert spec["replicas"] == 3

    user = by_kind(docs_of(DEPLOY / "strimzi" / "user.yaml"))["KafkaUser"]
    acls = user["spec"]["authorization"]["acls"]

    def allowed(kind: str, name: str) -> set[str]:
        ops: set[str] = set()
        for acl in acls:
            r = acl["resource"]
            prefix = r.get("patternType") == "prefix"
            if r["type"] == kind and (name.startswith(r["name"]) if prefix else name == r["name"]):
                ops |= set(acl["operations"])
        return ops

    assert {"Read", "Describe"} <= allowed("topic", source.name)
    assert {"Write", "Describe"} <= allowed("topic", agent.sink.name)
    for name in (agent.changelog_topic, agent.dead_letter_topic, stage1, f"{stage1}-changelog"):
        assert {"Read", "Write", "Describe", "Delete"} <= allowed("topic", name), name
    assert "Write" not in allowed("topic", source.name)
    for g in (group, stage1):
        assert {"Read", "Describe"} <= allowed("group", g), g
        assert {"Write", "Describe"} <= allowed("transactionalId", f"{g}-0"), g


def test_alerts_and_dashboard_name_only_metrics_the_worker_exposes() -> None:
    exposed = exposed_metric_families()
    rule = by_kind(docs_of(DEPLOY / "monitoring" / "prometheusrule.yaml"))["PrometheusRule"]
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} == {
        "WeirConsumerLagGrowing", "WeirDeadLetters", "WeirCheckpointAborts",
        "WeirRestoreStuck", "WeirWatermarkStalled",
    }  # fmt: skip
    dashboard = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    exprs = {f"alert {r['alert']}": r["expr"] for r in rules}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            exprs[f"variable {var['name']}"] = var["query"]["query"]
    assert len(exprs) >= 30
    used: set[str] = set()
    for where, expr in exprs.items():
        names = promql_metric_names(expr)
        assert names, f"{where}: names no metric: {expr}"
        assert names <= exposed, f"{where}: {sorted(names - exposed)} not exposed by the worker"
        used |= names
    # The dashboard shows every family (one series of each histogram).
    bases = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    assert {re.sub(r"_(bucket|sum|count)$", "", n) for n in exposed} <= bases


def test_metric_names_are_read_out_of_promql() -> None:
    """The reader the previous test relies on: names, never functions, labels or keywords."""
    expr = (
        'sum by (app, query) (rate(weir_a_total{app=~"$app", x="y z"}[$__rate_interval])) > 0'
        " and on (app) up unless histogram_quantile(0.9, sum by (le) (rate(b_bucket[5m])))"
    )
    assert promql_metric_names(expr) == {"weir_a_total", "up", "b_bucket"}
    assert promql_metric_names('label_values(weir_b_total{app=~"$app"}, query)') == {"weir_b_total"}


def test_the_compose_file_runs_the_stack_and_prometheus_scrapes_the_worker() -> None:
    import jsonschema  # test dependency (kubernetes-validate needs it)

    path = DEPLOY / "compose" / "compose.yaml"
    compose = yaml.safe_load(path.read_text())
    spec = json.loads((SCHEMAS / "compose-spec.json").read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(spec).iter_errors(compose)]
    assert not errors, errors
    services = compose["services"]
    assert {"kafka", "postgres", "worker", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    assert services["postgres"]["image"] == "postgres:18"
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"

    worker = services["worker"]
    build = path.parent / worker["build"]["context"]
    assert (build / worker["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    env = worker["environment"]
    assert env["WEIR_WEB_HOST"] == "0.0.0.0"
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"PLAINTEXT://{env['WEIR_BOOTSTRAP_SERVERS']}" in advertised.split(",")
    assert int(worker["stop_grace_period"].removesuffix("s")) >= 61

    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if ":/" in v)
    prom = yaml.safe_load((path.parent / next(k for k, v in mounts.items() if v.endswith(
        "prometheus.yml"))).read_text())  # fmt: skip
    (job,) = prom["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"worker:{env['WEIR_WEB_PORT']}"]

    grafana = dict(v.split(":")[:2] for v in services["grafana"]["volumes"] if ":/" in v)
    board = next(k for k, v in grafana.items() if v.endswith("grafana-dashboard.json"))
    assert (path.parent / board).resolve() == DEPLOY / "monitoring" / "grafana-dashboard.json"
    provisioning = path.parent / next(k for k, v in grafana.items() if v.endswith("provisioning"))
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "weir.yaml").read_text())[
        "providers"
    ]
    assert grafana[board].startswith(provider["options"]["path"] + "/")
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"


def test_the_dockerfile_builds_a_slim_non_root_worker() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms[-1] == "python:3.11-slim"
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) == 10001, f"USER {users[-1]}: a numeric non-root uid"
    sts = by_kind(docs_of(DEPLOY / "kubernetes" / "base" / "statefulset.yaml"))["StatefulSet"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    (web,) = (p["containerPort"] for p in container["ports"] if p["name"] == "web")
    assert re.search(rf"^EXPOSE {web}$", text, re.M)
    assert f"WEIR_WEB_PORT={web}" in text
    assert "WEIR_WEB_HOST=0.0.0.0" in text
    assert '\nENTRYPOINT ["weir", "worker"]\n' in text
    assert sts["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)
    text = (DEPLOY / "Dockerfile.dockerignore").read_text()
    ignore = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert ignore[0] == "**" and "!weir/**" in ignore  # only the project goes in the context


def test_kubernetes_validate_ships_the_pinned_version() -> None:
    import kubernetes_validate

    assert K8S_VERSION in kubernetes_validate.utils.all_versions()
