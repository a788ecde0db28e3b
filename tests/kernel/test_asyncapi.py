"""The AsyncAPI 3.0 contract: generated from the registry of typed payloads, committed
whole as docs/asyncapi.yaml, valid against the official AsyncAPI 3.0.0 JSON Schema
(vendored from the npm package @asyncapi/specs 6.11.1, Apache-2.0: see asyncapi_spec/),
served by each service for the topics it publishes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from backstop import asyncapi
from backstop.bus import TOPICS, dlq_topic
from backstop.events import registered_types
from backstop.settings import SERVICES
from services.risk.app import create
from tests.support import Stack, serve

SPEC = Path(__file__).parent / "asyncapi_spec" / "asyncapi-3.0.0.json"


def validator() -> Any:
    return jsonschema_rs.validator_for(json.loads(SPEC.read_text()))


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_the_committed_document_is_the_generated_one() -> None:
    assert asyncapi.DOC_PATH.read_text() == asyncapi.to_yaml(asyncapi.document()), (
        "docs/asyncapi.yaml is stale: run `make asyncapi`"
    )


def test_the_document_is_valid_asyncapi_3_and_every_reference_resolves() -> None:
    doc = yaml.safe_load(asyncapi.DOC_PATH.read_text())
    errors = [f"{list(e.instance_path)}: {e.message[:200]}" for e in validator().iter_errors(doc)]
    assert errors == []
    for ref in refs(doc):
        assert resolve(doc, ref) is not None, ref
    broken = copy.deepcopy(doc)  # the validator does refuse what is not AsyncAPI 3.0
    broken["channels"]["risk_alerts"]["messages"] = ["not", "a", "map"]
    assert not validator().is_valid(broken)


def test_every_topic_and_event_type_is_in_the_document() -> None:
    doc = asyncapi.document()
    addresses = {c["address"] for c in doc["channels"].values()}
    for topic in TOPICS:
        if topic.startswith("kernel."):  # the kernel's test probes are not a contract
            continue
        assert {topic, dlq_topic(topic)} <= addresses
    for name, spec in registered_types().items():
        if name.split(".")[1] not in SERVICES:
            continue
        message = doc["components"]["messages"][name.removeprefix("backstop.")]
        envelope = message["payload"]["allOf"][1]["properties"]
        assert envelope["type"] == {"const": name}
        data = envelope["data"]
        schema = resolve(doc, data["$ref"]) if "$ref" in data else data
        assert set(schema["properties"]) == set(spec.model.model_fields)
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
        dead = doc["components"]["messages"][f"{name.removeprefix('backstop.')}.dead_lettered"]
        assert "error" in dead["headers"]["required"]


def test_risk_alerts_is_public_and_a_public_topic_may_not_carry_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    channel = asyncapi.document()["channels"]["risk_alerts"]
    assert channel["tags"] == [{"name": "public"}]
    assert "no names and no ID numbers" in channel["description"]
    # registry.households carries the contacts' names and phones: never publishable.
    monkeypatch.setitem(asyncapi.PUBLIC, "registry.households", "public")
    with pytest.raises(ValueError, match=r"registry\.households"):
        asyncapi.document()


@pytest.mark.integration
async def test_a_service_serves_the_topics_it_publishes(stack: Stack) -> None:
    settings = await stack.create_database("risk", label="_asyncapi")
    async with serve(create, settings, background=False) as (client, _):
        r = await client.get("/asyncapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert {c["address"] for c in doc["channels"].values()} == {
        "risk.assessments", "risk.assessments.dlq", "risk.alerts", "risk.alerts.dlq"
    }  # fmt: skip
    assert validator().is_valid(doc)
