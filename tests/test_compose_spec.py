"""docker-compose.yml (with Grafana, Jaeger and Prometheus' rules) is valid against the
Compose Specification's JSON Schema, the one `docker compose` itself validates with
(schema/compose-spec.json of the Go module github.com/compose-spec/compose-go/v2, fetched
through the Go module proxy). Where the compose plugin exists, tests/test_deploy.py also
runs `docker compose config`."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from tests.support import ROOT
from tests.tools import go_binary

COMPOSE_GO = "github.com/compose-spec/compose-go/v2@v2.16.2"


def compose_spec() -> Any:
    result = subprocess.run(
        [go_binary(), "mod", "download", "-json", COMPOSE_GO],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.skip(f"{COMPOSE_GO} not downloadable: {result.stderr[-300:]}")
    schema = Path(json.loads(result.stdout)["Dir"]) / "schema" / "compose-spec.json"
    return jsonschema_rs.validator_for(json.loads(schema.read_text()))


def test_the_compose_file_follows_the_compose_specification() -> None:
    validator = compose_spec()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    errors = [f"{list(e.instance_path)}: {e.message[:200]}" for e in validator.iter_errors(compose)]
    assert errors == []
    assert {"grafana", "jaeger", "prometheus"} <= compose["services"].keys()
    broken = copy.deepcopy(compose)  # the schema does refuse what compose would
    broken["services"]["jaeger"]["portz"] = ["16686:16686"]
    assert not validator.is_valid(broken)
