"""The one middleware in front of every service's routes, as plain ASGI (no
BaseHTTPMiddleware task group per request): the correlation id, the request-body limit
and the HTTP metrics by route template."""

from __future__ import annotations

import re
import time
import uuid

from fastapi import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backstop.errors import Problem, problem_response
from backstop.logs import correlation_id
from backstop.metrics import HTTP_SECONDS

# What a caller may send as X-Correlation-Id: it goes into logs, events and the outbox
# (a 100-character column). Anything else is replaced by a fresh id, never refused.
_CORRELATION_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,100}")


class RequestMiddleware:
    """Wraps a service's app. `max_body_bytes` bounds every body but multipart uploads,
    which `max_upload_bytes` bounds; both are counted on the stream, whatever
    Content-Length says."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        max_body_bytes: int,
        max_upload_bytes: int,
    ) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        cid: bytes | None = None
        declared = b""
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"x-correlation-id":
                cid = value if _CORRELATION_ID.fullmatch(value) else uuid.uuid4().hex.encode()
            elif name == b"content-length":
                declared = value
            elif name == b"content-type" and value[:10].lower() == b"multipart/":
                limit = self.max_upload_bytes
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if cid is not None:
                    message["headers"] = [*message.get("headers", ()), (b"x-correlation-id", cid)]
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException passes FastAPI's body parsing as it is; the
                    # app's handler renders it as problem+json.
                    raise HTTPException(413, _too_large(limit))
            return message

        token = correlation_id.set(cid.decode() if cid is not None else None)
        try:
            if declared.isdigit() and int(declared) > limit:
                await problem_response(Problem(413, _too_large(limit)))(
                    scope, receive, send_wrapper
                )
            else:
                await self.app(scope, limited_receive, send_wrapper)
        except ClientDisconnect:
            status = 499  # the client went away: nobody to answer, nothing to log
        finally:
            correlation_id.reset(token)
            route = scope.get("route")
            HTTP_SECONDS.labels(
                self.service,
                scope["method"],
                # The template (/v1/persons/{id_number}), never the path: no ID number
                # reaches Prometheus and the label set stays bounded.
                getattr(route, "path", None) or "unmatched",
                str(status),
            ).observe(time.perf_counter() - started)


def _too_large(limit: int) -> str:
    return f"the request body is larger than this service's limit of {limit} bytes"
