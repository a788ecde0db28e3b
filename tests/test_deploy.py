"""The deployment files agree with the code: docker-compose runs every service on its port,
Prometheus scrapes every /metrics, and `docker compose config` accepts the file where the
docker CLI has its compose plugin."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from backstop.settings import PORTS, SERVICES, Settings
from tests.support import ROOT


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_every_service_kafka_postgres_and_prometheus() -> None:
    services = compose()["services"]
    assert {"kafka", "postgres", "migrate", "prometheus", *SERVICES} <= services.keys()
    for name in SERVICES:
        command = services[name]["command"]
        assert f"services.{name}.app:create" in command and str(PORTS[name]) in command
        env = services[name]["environment"]
        assert env["BACKSTOP_SERVICE"] == name and env["DATABASE_URL"].endswith(f"/backstop_{name}")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_prometheus_scrapes_every_service() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(targets) == sorted(f"{name}:{PORTS[name]}" for name in SERVICES)


def compose_config(*files: str, **secrets: str) -> None:
    """`docker compose config -q` over `files` with the secrets they ask for, where the
    docker CLI has its compose plugin."""
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "compose", "version"], capture_output=True).returncode
    ):
        pytest.skip("no docker compose plugin on this machine")
    env = {**os.environ, "BACKSTOP_JWT_SECRET": "x" * 40, "BACKSTOP_PII_KEY": "y" * 40,
           "BACKSTOP_SECRETS_KEY": "s" * 44, "POSTGRES_PASSWORD": "z" * 20, **secrets}  # fmt: skip
    options = [arg for f in files for arg in ("-f", f)]
    result = subprocess.run(
        [docker, "compose", *options, "config", "-q"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_accepts_the_file() -> None:
    compose_config()


SECURE = ROOT / "deploy" / "kafka-secure"


class ComposeLoader(yaml.SafeLoader):
    """YAML with compose's merge tags (!reset, !override: replace, not merge)."""


for _tag in ("!reset", "!override"):
    ComposeLoader.add_constructor(
        _tag,
        lambda loader, node: loader.construct_mapping(node),  # type: ignore[arg-type]
    )


def test_secure_kafka_overlay_gives_every_service_sasl_ssl_and_the_broker_acls() -> None:
    overlay = yaml.load((SECURE / "compose.yml").read_text(), Loader=ComposeLoader)
    services = overlay["services"]
    assert {"kafka", "migrate", *SERVICES} <= services.keys()
    for name in ("migrate", *SERVICES):
        env = services[name]["environment"]
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["KAFKA_SASL_MECHANISM"].startswith("SCRAM-")
        assert env["KAFKA_SASL_PASSWORD"].startswith("${")  # from the environment, never here
        # The overlay's variables are the kernel's settings, and they reach the clients.
        values = {**env, "KAFKA_SASL_PASSWORD": "secret", "KAFKA_SSL_CAFILE": None}
        options = Settings(
            **{k: v for k, v in values.items() if v is not None}
        ).kafka_client_options()
        assert (
            options["security_protocol"] == "SASL_SSL"
            and options["sasl_plain_password"] == "secret"
        )
        assert options["bootstrap_servers"] == "kafka:9094" and "ssl_context" in options
    broker = (SECURE / "server.properties").read_text()
    assert "listeners=SASL_SSL://:9094,CONTROLLER://127.0.0.1:9093" in broker
    assert "allow.everyone.if.no.acl.found=false" in broker
    assert "PLAINTEXT://" not in broker  # only the loopback controller is unencrypted


def test_local_runs_stay_plaintext_on_loopback() -> None:
    assert Settings().kafka_security_protocol == "PLAINTEXT"
    local = (ROOT / "deploy" / "kafka" / "server.properties").read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:9092," in local  # loopback only


def test_docker_compose_config_accepts_the_secure_overlay() -> None:
    compose_config("docker-compose.yml", str(SECURE / "compose.yml"),
                   KAFKA_ADMIN_PASSWORD="a" * 20, KAFKA_BACKSTOP_PASSWORD="b" * 20,
                   KAFKA_TLS_PASSWORD="c" * 20)  # fmt: skip


def test_compose_provisions_grafana_the_trace_backend_and_the_alert_rules() -> None:
    services = compose()["services"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["prometheus"]["volumes"])
    for rule_file in prometheus["rule_files"]:
        source = next(src for src, target in mounts.items() if target == rule_file)
        assert (ROOT / source).resolve().exists(), source
    grafana = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["grafana"]["volumes"])
    for source in grafana:
        assert (ROOT / source).resolve().is_dir(), source
    assert "4318:4318" in services["jaeger"]["ports"]
