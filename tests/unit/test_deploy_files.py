"""The deployment files parse, pass their schemas, and keep qfleet's operating rules.

No container engine or cluster runs here, so every check is offline: yamllint, the Compose
specification's JSON schema, Kubernetes' own schemas (kubernetes-validate), and rules of ours —
images pinned, healthchecks everywhere, secrets never inlined, published ports on loopback, and
alerts and dashboard panels that only name metrics the workers and the exporter really export.
"""

from __future__ import annotations

import configparser
import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from ops.localfleet import REPO_ROOT
from qfleet.tasks.constants import (
    ALL_QUEUES,
    PRIORITY_BULK,
    PRIORITY_SEPARATOR,
    QUEUE_GENERATE,
)
from qfleet.tasks.settings import Settings

DEPLOY = REPO_ROOT / "ops" / "deploy"
K8S_VERSION = "1.33"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY", re.IGNORECASE)
METRIC_NAME = re.compile(r"\b(qfleet_[a-z0-9_]+)\b")
HARD_TIME_LIMIT_S = Settings().task_time_limit_s


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def k8s_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, doc in k8s_documents():
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            yield name, doc["spec"]["template"]["spec"]


def assert_pinned(image: str) -> None:
    """A pinned image names a version tag (with a digit) or a digest; never `latest`."""
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    assert "@sha256:" in image or (re.search(r"\d", tag) and "latest" not in tag), image


def known_metric_names() -> set[str]:
    """Every series name the worker exporters and the queue exporter can produce."""
    from prometheus_client import REGISTRY

    import qfleet.workers.metrics  # noqa: F401  (registers the worker metrics)
    from qfleet.producer.exporter import EXPORTER_METRICS

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    names = set(EXPORTER_METRICS)
    for family in REGISTRY.collect():
        if family.name.startswith("qfleet_"):
            names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def referenced_metrics(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


# --- YAML, all of it --------------------------------------------------------------------------


def test_every_yaml_file_passes_yamllint() -> None:
    config = YamlLintConfig(file=str(DEPLOY / ".yamllint"))
    paths = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert len(paths) >= 10
    problems = [
        f"{path.relative_to(REPO_ROOT)}:{p.line}: {p.desc}"
        for path in paths
        for p in linter.run(path.read_text(), config, str(path))
    ]
    assert problems == []


# --- compose ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(load_yaml(DEPLOY / "compose.yaml"))


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(compose)


def test_compose_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    expected = {"redis", "qdrant", "worker", "worker-gpu", "flower", "flower-proxy", "exporter"}
    expected |= {"gateway", "batch-runner"}
    assert expected | {"prometheus", "grafana"} <= set(compose["services"])
    gpu = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu == [{"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]


def test_compose_services_are_pinned_and_health_checked(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        assert_pinned(service["image"])


def test_compose_publishes_ports_on_loopback_only(compose: dict[str, Any]) -> None:
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    for name, ports in published.items():
        assert all(str(p).startswith("127.0.0.1:") for p in ports), (name, ports)
    # Flower's /metrics answers without auth: Flower is reached only through the proxy.
    assert published["flower"] == []
    assert published["flower-proxy"] == ["127.0.0.1:5555:8080"]
    proxy = (DEPLOY / "nginx" / "flower.conf").read_text()
    assert "location = /metrics     { return 403; }" in proxy


def test_compose_inlines_no_secret(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert key.endswith("__FILE"), name
                assert str(value).startswith("/run/secrets/"), name
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    assert (DEPLOY / "secrets" / ".gitignore").read_text().splitlines()[-2:] == ["*", "!.gitignore"]
    settings_lines = [
        line
        for line in (DEPLOY / "env" / "qfleet.env").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert settings_lines
    assert not [line for line in settings_lines if SECRET_NAME.search(line.split("=")[0])]


def test_compose_redis_keeps_an_append_only_file_behind_a_password(
    compose: dict[str, Any],
) -> None:
    command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "requirepass" in command
    assert "/run/secrets/redis_password" in command


def test_compose_mounts_files_that_exist(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for env_file in service.get("env_file", []):
            assert (DEPLOY / env_file).is_file(), env_file
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), source


# --- Dockerfiles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfile_is_pinned_unprivileged_and_health_checked(name: str) -> None:
    lines = (DEPLOY / name).read_text().splitlines()
    instructions = [line.split(maxsplit=1) for line in lines if line and not line[0].isspace()]
    instructions = [parts for parts in instructions if not parts[0].startswith("#")]
    by_name: dict[str, list[str]] = {}
    for parts in instructions:
        by_name.setdefault(parts[0], []).append(parts[1] if len(parts) > 1 else "")
    [base] = by_name["FROM"]
    assert_pinned(base)
    assert by_name["USER"] == ["qfleet"]
    assert "HEALTHCHECK" in by_name
    assert "ENTRYPOINT" in by_name
    assert not any(SECRET_NAME.search(value) for value in by_name.get("ENV", []))
    if name == "Dockerfile.gpu":
        assert base.startswith("nvidia/cuda:")
        assert "cudnn" in base


# --- Kubernetes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "doc"), list(k8s_documents()), ids=lambda v: str(v)[:60])
def test_kubernetes_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        assert doc["kind"] in {"ScaledObject", "TriggerAuthentication"}, name
        return  # a CRD: checked by test_keda_scales_the_worker_deployment_on_a_queue
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert doc["kind"] != "Secret", "secrets are created with kubectl, never committed"
    if doc["kind"] == "Service":
        assert doc["spec"]["type"] == "ClusterIP", name


def test_kubernetes_manifests_cover_the_fleet() -> None:
    kinds = {name.split(":")[1] for name, _ in k8s_documents()}
    assert {
        "Deployment/qfleet-worker",
        "StatefulSet/qfleet-redis",
        "StatefulSet/qfleet-qdrant",
        "Deployment/qfleet-flower",
        "Deployment/qfleet-exporter",
        "ScaledObject/qfleet-worker",
        "NetworkPolicy/qfleet-flower",
        "Deployment/qfleet-gateway",
        "Service/qfleet-gateway",
        "Deployment/qfleet-batch-runner",
    } <= kinds


def test_kubernetes_containers_are_pinned_probed_and_get_secrets_by_reference() -> None:
    for name, spec in pod_specs():
        for container in spec["containers"]:
            assert_pinned(container["image"])
            assert "livenessProbe" in container, name
            assert {"readinessProbe", "startupProbe"} & set(container), name
            assert container["resources"]["limits"]["memory"], name
            for env in container.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "secretKeyRef" in env["valueFrom"], (name, env["name"])


def test_kubernetes_worker_holds_one_gpu_and_drains_warmly() -> None:
    [worker] = [doc for name, doc in k8s_documents() if name.endswith("Deployment/qfleet-worker")]
    spec = worker["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["terminationGracePeriodSeconds"] > HARD_TIME_LIMIT_S


def test_keda_scales_the_worker_deployment_on_a_queue() -> None:
    docs = {name.split(":")[1]: doc for name, doc in k8s_documents()}
    scaled = docs["ScaledObject/qfleet-worker"]["spec"]
    assert f"Deployment/{scaled['scaleTargetRef']['name']}" in docs
    assert 1 <= scaled["minReplicaCount"] < scaled["maxReplicaCount"]
    # Interactive jobs wait in the queue's list, bulk jobs (batches, runs) in its bulk sub-list.
    bulk = QUEUE_GENERATE + PRIORITY_SEPARATOR + str(PRIORITY_BULK)
    lists = {trigger["metadata"]["listName"] for trigger in scaled["triggers"]}
    assert {QUEUE_GENERATE, bulk} <= lists
    for trigger in scaled["triggers"]:
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["listName"].split(PRIORITY_SEPARATOR)[0] in ALL_QUEUES
        assert int(trigger["metadata"]["listLength"]) >= 1
        assert f"TriggerAuthentication/{trigger['authenticationRef']['name']}" in docs
        assert "password" not in trigger["metadata"]


# --- systemd -------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=str)
def test_systemd_unit_is_complete_and_safe(unit: Path) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    service = parser["Service"]
    assert service["User"] == "qfleet"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert "/etc/qfleet/secrets.env" in unit.read_text()
    assert not re.search(r"(PASSWORD|API_KEY)=", unit.read_text())
    if unit.name.startswith("qfleet-worker"):
        assert int(service["TimeoutStopSec"]) > HARD_TIME_LIMIT_S
    else:
        assert "--address 127.0.0.1" in service["ExecStart"]


# --- Prometheus and Grafana -----------------------------------------------------------------------


def test_alert_rules_cover_backlog_errors_and_missing_workers() -> None:
    [group] = load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"]
    rules = {rule["alert"]: rule for rule in group["rules"]}
    assert {"QfleetBacklogAging", "QfleetJobErrorRate", "QfleetNoWorkers"} <= set(rules)
    known = known_metric_names()
    runbook = (REPO_ROOT / "docs" / "operations.md").read_text()
    scrape_jobs = {
        job["job_name"]
        for job in load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
    }
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["for"]
        assert rule["annotations"]["summary"]
        used = referenced_metrics(rule["expr"])
        assert used, name
        assert used <= known, (name, used - known)
        assert set(re.findall(r'job="([^"]+)"', rule["expr"])) <= scrape_jobs
        anchor = rule["annotations"]["runbook"].partition("#")[2]
        assert f"### {name}" in runbook
        assert anchor == name.lower()


def test_prometheus_scrapes_workers_exporter_and_flower() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"qfleet-workers", "qfleet-exporter", "flower"} <= jobs


def test_grafana_dashboard_charts_only_metrics_that_exist() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "qfleet.json").read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    known = known_metric_names()
    charted: set[str] = set()
    for panel in panels:
        assert panel["targets"]
        assert panel["gridPos"]["w"] > 0
        for target in panel["targets"]:
            used = referenced_metrics(target["expr"])
            assert used <= known, (panel["title"], used - known)
            charted |= used
    # Every kind of fleet metric the issue asks for is on the dashboard.
    for needed in (
        "qfleet_queue_depth",
        "qfleet_queue_oldest_age_seconds",
        "qfleet_jobs_total",
        "qfleet_job_duration_seconds_bucket",
        "qfleet_tokens_generated_total",
        "qfleet_batch_size_bucket",
        "qfleet_cache_hits_total",
        "qfleet_model_load_seconds",
        "qfleet_worker_rss_bytes",
    ):
        assert needed in charted
