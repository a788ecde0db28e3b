"""The AsyncAPI 3.0 contract of Backstop's events, generated from the registry of typed
payloads the code itself uses (`backstop.events` + `backstop.contracts`): each topic with
its key, each event type with its CloudEvents envelope and `data` schema, and the DLQ
convention. Each service serves its part at `/asyncapi.json`; the whole is committed as
`docs/asyncapi.yaml`:

    python -m backstop.asyncapi            # write docs/asyncapi.yaml
    python -m backstop.asyncapi --check    # exit 1 when the committed file is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import backstop.contracts  # noqa: F401 - registers every event type
from backstop.bus import TOPICS, dlq_topic
from backstop.contracts.risk import ALERTS_TOPIC
from backstop.events import CONTENT_TYPE, EventSpec, registered_types
from backstop.settings import SERVICES

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"
KAFKA_BINDING = "0.5.0"
REF = "#/components/schemas/{model}"

# Topics other counties may subscribe to, with the promise their `data` keeps (checked:
# no schema of theirs has a field that could carry a name or an ID number).
PUBLIC: dict[str, str] = {
    ALERTS_TOPIC: (
        "Public to other counties' systems. Privacy promise: `data` carries no names and no"
        " ID numbers, only the household id, region code, levels, score, factor codes,"
        " assessment time and policy version."
    ),
}
_PERSONAL_FIELD = re.compile(r"(^|_)(name|id_number|phone|address)$")

# The message key is the event's `subject`: the household id, except where noted.
KEYS: dict[str, str] = {
    "datasync.deliveries": "`<source>/<batch_id>` (batch received) or `<source>/<period>`"
    " (delivery late)",
}
HOUSEHOLD_KEY = "The household id (UUID as text): one household's events stay in order."
# Events of people not in the register (records.unmatched, unregistered.flagged).
KEYS["datasync.records"] = HOUSEHOLD_KEY + (
    " Records of people in no household (records.unmatched): `<source>:<batch_id>:<chunk>`."
)
KEYS["risk.assessments"] = HOUSEHOLD_KEY + (
    " A person not in the register (unregistered.flagged): the person's `id_hash`."
)
KEYS["assistance.tasks"] = HOUSEHOLD_KEY + " A check of a person not in the register: its id."

DLQ_HEADERS = {
    "error": "`<exception type>: <message>` (at most 2,000 bytes)",
    "original_topic": "The topic the event was consumed from.",
    "original_partition": "Its partition (decimal).",
    "original_offset": "Its offset (decimal).",
    "consumer_group": "The consumer group that gave up on it.",
}


def _service_of(event_type: str) -> str:
    return event_type.split(".")[1]  # backstop.<service>.<entity>.<verb>.v<N>


def _published() -> dict[str, list[EventSpec]]:
    """Topic -> its event types (those of the services only: not the kernel's probes)."""
    topics: dict[str, list[EventSpec]] = {}
    for name, spec in sorted(registered_types().items()):
        if _service_of(name) in SERVICES:
            topics.setdefault(spec.topic, []).append(spec)
    return topics


def _channel_id(topic: str) -> str:
    return topic.replace(".", "_")


def _message_id(event_type: str) -> str:
    return event_type.removeprefix("backstop.")


def _property_names(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                yield from value
            yield from _property_names(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _property_names(item)


def _referenced(schema: Any, schemas: dict[str, Any], seen: set[str]) -> list[Any]:
    """`schema` and every component schema it references, transitively."""
    found = [schema]
    for ref in re.findall(r"#/components/schemas/([\w.\-]+)", repr(schema)):
        if ref not in seen:
            seen.add(ref)
            found += _referenced(schemas[ref], schemas, seen)
    return found


def _asyncapi_schema(schema: Any) -> Any:
    """Pydantic writes OpenAPI's discriminator object; AsyncAPI's is the property name."""
    if isinstance(schema, dict):
        fixed = {k: _asyncapi_schema(v) for k, v in schema.items()}
        if isinstance(fixed.get("discriminator"), dict):
            fixed["discriminator"] = fixed["discriminator"]["propertyName"]
        return fixed
    if isinstance(schema, list):
        return [_asyncapi_schema(item) for item in schema]
    return schema


def envelope_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "CloudEvents 1.0, structured JSON mode.",
        "required": ["specversion", "id", "source", "type", "time", "datacontenttype", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "description": "Unique per event (UUID)."},
            "source": {"type": "string", "description": "`/backstop/<service>`"},
            "type": {"type": "string", "description": "`backstop.<service>.<entity>.<verb>.v<N>`"},
            "subject": {"type": "string", "description": "The household id (the Kafka key)."},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "data": {"type": "object"},
            "correlationid": {
                "type": "string",
                "description": "Extension: carried from the record that started the chain.",
            },
            "traceparent": {
                "type": "string",
                "description": "Extension (CloudEvents distributed tracing): the W3C trace"
                " context of the span that wrote the event.",
            },
        },
    }


def document(service: str | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic, or only of those `service` publishes."""
    published = _published()
    if service is not None:
        published = {
            topic: specs
            for topic, specs in published.items()
            if any(_service_of(s.name) == service for s in specs)
        }
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (spec.model, "validation") for specs in published.values() for spec in specs
    ]
    keys, defs = models_json_schema(models, ref_template=REF) if models else ({}, {})
    keys, defs = _asyncapi_schema(keys), _asyncapi_schema(defs)
    schemas: dict[str, Any] = {"CloudEvent": envelope_schema(), **defs.get("$defs", {})}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic, specs in sorted(published.items()):
        channel, dlq = _channel_id(topic), _channel_id(dlq_topic(topic))
        refs = {}
        for spec in specs:
            data = keys[(spec.model, "validation")]
            if topic in PUBLIC:
                personal = [
                    p
                    for s in _referenced(data, schemas, set())
                    for p in _property_names(s)
                    if _PERSONAL_FIELD.search(p)
                ]
                if personal:
                    raise ValueError(f"public topic {topic}: {spec.name} has {personal}")
            mid = _message_id(spec.name)
            messages[mid] = _message(spec, data, topic)
            refs[mid] = {"$ref": f"#/components/messages/{mid}"}
        producers = sorted({_service_of(s.name) for s in specs})
        channels[channel] = {
            "address": topic,
            "title": topic,
            "description": (
                PUBLIC.get(topic, "Internal to Backstop.")
                + " Key: "
                + KEYS.get(topic, HOUSEHOLD_KEY)
            ),
            "messages": refs,
            "bindings": {
                "kafka": {
                    "topic": topic,
                    "partitions": TOPICS.get(topic, 1),
                    "bindingVersion": KAFKA_BINDING,
                }
            },
            **({"tags": [{"name": "public"}]} if topic in PUBLIC else {}),
        }
        channels[dlq] = {
            "address": dlq_topic(topic),
            "title": dlq_topic(topic),
            "description": (
                f"Dead letters of {topic}: an event a consumer could not apply after its"
                " retries, with its original key and value unchanged and the reason in the"
                " headers. An outage is retried for as long as it lasts, never dead-lettered."
            ),
            "messages": {
                mid: {"$ref": f"#/components/messages/{mid}.dead_lettered"} for mid in refs
            },
            "bindings": {
                "kafka": {
                    "topic": dlq_topic(topic),
                    "partitions": 1,
                    "bindingVersion": KAFKA_BINDING,
                }
            },
        }
        for mid in refs:
            messages[f"{mid}.dead_lettered"] = {
                **messages[mid],
                "name": f"{messages[mid]['name']}.dead_lettered",
                "headers": {
                    "type": "object",
                    "required": [
                        "error",
                        "original_topic",
                        "original_partition",
                        "original_offset",
                        "consumer_group",
                    ],
                    "properties": {
                        name: {"type": "string", "description": text}
                        for name, text in DLQ_HEADERS.items()
                    },
                },
            }
        operations[f"publish_{channel}"] = {
            "action": "send",
            "title": f"{', '.join(producers)} publishes on {topic}",
            "description": "Every event leaves through the producer's transactional outbox:"
            " delivery is at least once, so consumers record the event ids they applied.",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{mid}"} for mid in refs],
        }
        operations[f"dead_letter_{channel}"] = {
            "action": "send",
            "title": f"any consumer of {topic} dead-letters to {dlq_topic(topic)}",
            "channel": {"$ref": f"#/channels/{dlq}"},
            "messages": [{"$ref": f"#/channels/{dlq}/messages/{mid}"} for mid in refs],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Backstop events" + (f": {service}" if service else ""),
            "version": "1.0.0",
            "description": (
                "Events of Backstop, the county's 防止返贫监测预警 system. Topics are keyed so"
                " that one household's events stay in order. Each event type is versioned"
                " (`.vN`): additive changes keep N; a breaking change to `data` is a new"
                " type, published beside the old one for a transition. A message a consumer"
                " cannot apply goes to `<topic>.dlq`. See docs/integration.md."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "kafka": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "description": "The county's Kafka cluster (KAFKA_BOOTSTRAP_SERVERS); SASL_SSL"
                " with SCRAM in production.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _message(spec: EventSpec, data: dict[str, Any], topic: str) -> dict[str, Any]:
    service = _service_of(spec.name)
    return {
        "name": spec.name,
        "title": spec.model.__name__,
        "summary": (spec.model.__doc__ or spec.name).strip().splitlines()[0],
        "contentType": CONTENT_TYPE,
        "headers": {
            "type": "object",
            "required": ["ce_type"],
            "properties": {
                "ce_type": {"const": spec.name, "description": "The CloudEvents `type`."},
                "correlationid": {"type": "string"},
                "traceparent": {"type": "string", "description": "W3C trace context."},
            },
        },
        "payload": {
            "allOf": [
                {"$ref": "#/components/schemas/CloudEvent"},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": spec.name},
                        "source": {"const": f"/backstop/{service}"},
                        "data": data,
                    },
                },
            ]
        },
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": KEYS.get(topic, HOUSEHOLD_KEY)},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def to_yaml(doc: dict[str, Any]) -> str:
    header = "# Generated by `python -m backstop.asyncapi` (make asyncapi): do not edit.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m backstop.asyncapi", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when the file is stale")
    args = parser.parse_args(argv)
    text = to_yaml(document())
    if args.check:
        if not DOC_PATH.exists() or DOC_PATH.read_text() != text:
            sys.exit(f"{DOC_PATH} is stale: run `python -m backstop.asyncapi`")
        print(f"{DOC_PATH} is up to date")
        return
    DOC_PATH.write_text(text)
    print(f"wrote {DOC_PATH}")


if __name__ == "__main__":
    main()
