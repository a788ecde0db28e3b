"""Kubernetes JSON schemas for kubeconform, made offline from the OpenAPI (v2) document that
the k8s.io/kubernetes Go module ships (api/openapi-spec/swagger.json), fetched through the
Go module proxy. One standalone, strict schema per kind, in kubeconform's file layout
(`deployment-apps-v1.json`), cached in ~/.cache/backstop/k8s-schemas/<version>/."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.tools import GOBIN, go_binary

KUBERNETES = "v1.34.2"
CACHE = GOBIN.parent / "k8s-schemas" / KUBERNETES
# What OpenAPI v2 cannot say: these accept a string or a number (as kubectl does).
STRING_OR_NUMBER = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"oneOf": [{"type": "string"}, {"type": "number"}]},
}  # fmt: skip


def _strict(node: Any) -> Any:
    """Objects refuse unknown fields, as kubeconform's strict schemas do."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def _reachable(name: str, definitions: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found[current] = definitions[current]
        todo += re.findall(r'"#/definitions/([^"]+)"', json.dumps(definitions[current]))
    return found


def kubernetes_schemas() -> Path:
    """The schema directory (made once); skips the test when the module cannot be had."""
    if (CACHE / ".done").exists():
        return CACHE
    go = go_binary()
    result = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES}"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.skip(f"k8s.io/kubernetes@{KUBERNETES} not downloadable: {result.stderr[-300:]}")
    swagger = Path(json.loads(result.stdout)["Dir"]) / "api" / "openapi-spec" / "swagger.json"
    spec = json.loads(swagger.read_text())
    definitions = {**spec["definitions"], **STRING_OR_NUMBER}
    CACHE.mkdir(parents=True, exist_ok=True)
    for name, definition in definitions.items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            group = gvk["group"].split(".")[0]
            suffix = f"-{group}-{gvk['version']}" if group else f"-{gvk['version']}"
            schema = {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "$ref": f"#/definitions/{name}",
                "definitions": _strict(_reachable(name, definitions)),
            }
            target = CACHE / f"{gvk['kind'].lower()}{suffix}.json"
            target.write_text(json.dumps(schema))
    (CACHE / ".done").write_text(KUBERNETES)
    return CACHE
