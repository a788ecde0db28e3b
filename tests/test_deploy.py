"""The deployment files agree with the code: docker-compose runs every service on its port,
Prometheus scrapes every /metrics, and `docker compose config` accepts the file where the
docker CLI has its compose plugin."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from backstop.settings import PORTS, SERVICES
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


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "compose", "version"], capture_output=True).returncode
    ):
        pytest.skip("no docker compose plugin on this machine")
    env = {**os.environ, "BACKSTOP_JWT_SECRET": "x" * 40, "BACKSTOP_PII_KEY": "y" * 40,
           "POSTGRES_PASSWORD": "z" * 20}  # fmt: skip
    result = subprocess.run(
        [docker, "compose", "config", "-q"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
