"""JSON logs that carry the correlation id and never show a full ID number."""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from typing import Any

import orjson
from opentelemetry import trace

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

# 18-character resident ID numbers (last char may be X); masked wherever they appear.
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![0-9A-Za-z])")


# Mainland mobile numbers (a key contact's phone in a URL the access log shows, after
# "%3A" too): masking a look-alike inside some hex id costs a log reader nothing.
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_id_numbers(text: str) -> str:
    """ID numbers and mobile numbers masked, wherever they appear in a log line."""
    text = _ID_NUMBER.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)
    return _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": mask_id_numbers(record.getMessage()),
        }
        cid = correlation_id.get()
        if cid:
            entry["correlation_id"] = cid
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
        if record.exc_info:
            entry["exception"] = mask_id_numbers(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        cid = correlation_id.get()
        span = trace.get_current_span().get_span_context()
        text = super().format(record)
        text = f"{text} [cid={cid}]" if cid else text
        text = f"{text} [trace={span.trace_id:032x}]" if span.is_valid else text
        return mask_id_numbers(text)


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(service)
        if json
        else MaskingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # uvicorn installs its own handlers; its access log would show a path such as
    # /v1/persons/<ID number> unmasked, so its loggers go through ours too.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        server_log = logging.getLogger(name)
        server_log.handlers.clear()
        server_log.propagate = True
