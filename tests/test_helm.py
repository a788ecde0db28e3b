"""The Helm chart: `helm lint`, then `helm template` validated by kubeconform against the
Kubernetes schemas (strict: unknown fields refused), and the shape operators rely on."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet

from backstop.settings import PORTS, SERVICES, Settings
from tests.k8s_schemas import KUBERNETES, kubernetes_schemas
from tests.support import ROOT
from tests.tools import go_tool

CHART = ROOT / "deploy" / "helm" / "backstop"
SERVICE_MONITOR = "monitoring.coreos.com/v1/ServiceMonitor"


def helm(*args: str) -> str:
    result = subprocess.run(
        [str(go_tool("helm")), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def render(*args: str) -> str:
    return helm("template", "backstop", str(CHART), "--kube-version", KUBERNETES, *args)


def objects(rendered: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered) if d]


def test_helm_lint() -> None:
    out = helm("lint", str(CHART), "--strict", "--kube-version", KUBERNETES)
    assert "0 chart(s) failed" in out


def kubeconform(rendered: str) -> subprocess.CompletedProcess[str]:
    """Strict: a field Kubernetes does not know is an error, and no kind goes unchecked."""
    template = f"{kubernetes_schemas()}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"
    return subprocess.run(
        [str(go_tool("kubeconform")), "-strict", "-summary", "-schema-location", template, "-"],
        input=rendered, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_rendered_manifests_are_valid_kubernetes() -> None:
    for extra in ([], ["--set", "kafka.securityProtocol=PLAINTEXT,postgresql.sslmode=disable"],
                  ["--set", "kafka.caSecret=kafka-ca,otel.endpoint=http://otel:4318"]):  # fmt: skip
        result = kubeconform(render(*extra))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout
    # kubeconform does refuse what is not valid: a field Kubernetes does not know.
    broken = render().replace("terminationGracePeriodSeconds: 30", "terminationGraceSeconds: 30")
    result = kubeconform(broken)
    assert result.returncode != 0 and "terminationGraceSeconds" in result.stdout


def test_per_service_api_and_worker_probes_hook_secrets_hpa_pdb() -> None:
    docs = objects(render())
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    deployments = {d["metadata"]["name"]: d for d in by_kind["Deployment"]}
    for service in SERVICES:
        for role in ("api", "worker"):
            pod = deployments[f"backstop-{service}-{role}"]["spec"]["template"]["spec"]
            container = pod["containers"][0]
            env = {e["name"]: e for e in container["env"]}
            assert env["BACKSTOP_ROLE"]["value"] == role
            assert env["BACKSTOP_SERVICE"]["value"] == service
            assert container["ports"][0]["containerPort"] == PORTS[service]
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            # Secrets only by reference to existing Secrets, never as plain values.
            for name in ("BACKSTOP_JWT_SECRET", "BACKSTOP_PII_KEY", "BACKSTOP_SECRETS_KEY",
                         "PGPASSWORD", "KAFKA_SASL_PASSWORD"):  # fmt: skip
                assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"]
            assert env["KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
            assert container["resources"]["requests"]
    assert "Secret" not in by_kind  # the chart creates none
    (job,) = by_kind["Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "backstop.migrate" in " ".join(
        job["spec"]["template"]["spec"]["containers"][0]["command"]
    )
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind["HorizontalPodAutoscaler"]}
    assert hpas == {f"backstop-{s}-api" for s in SERVICES}
    assert {p["metadata"]["name"] for p in by_kind["PodDisruptionBudget"]} == set(deployments)


def test_service_monitor_only_where_the_prometheus_operator_is() -> None:
    assert not [d for d in objects(render()) if d["kind"] == "ServiceMonitor"]
    with_operator = objects(render("--api-versions", SERVICE_MONITOR))
    (monitor,) = [d for d in with_operator if d["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_plaintext_kafka_gets_no_sasl_settings() -> None:
    docs = objects(render("--set", "kafka.securityProtocol=PLAINTEXT"))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    names = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "KAFKA_SASL_PASSWORD" not in names and "KAFKA_SSL_CAFILE" not in names


def test_the_pods_environment_is_enough_for_production_settings() -> None:
    """What the chart sets, with the Secrets' values filled in, passes the settings'
    production checks (no default secret, SASL credentials present)."""
    deployment = next(d for d in objects(render()) if d["kind"] == "Deployment")
    env: dict[str, str] = {}
    for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        env[e["name"]] = e["value"] if "value" in e else "s3cret-" + "x" * 40
    env["BACKSTOP_SECRETS_KEY"] = Fernet.generate_key().decode()
    settings = Settings(**env)  # type: ignore[arg-type]
    assert settings.environment == "production" and settings.kafka_sasl_password
    del env["BACKSTOP_PII_KEY"]
    with pytest.raises(ValueError, match="BACKSTOP_PII_KEY"):
        Settings(**env)  # type: ignore[arg-type]
