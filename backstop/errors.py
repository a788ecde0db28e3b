"""RFC 9457 problem details for every error, validation errors included."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from asyncpg import exceptions as asyncpg_exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from backstop.db import is_transient

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("backstop.errors")

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(Exception):
    """An error the client can act on. Raise it anywhere; the app renders problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type: str = "about:blank",
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.type = type
        self.errors = errors
        self.headers = dict(headers) if headers else None
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


def invalid(loc: list[str | int] | str, msg: str, status: int = 422) -> Problem:
    """A validation problem naming one field."""
    path = [loc] if isinstance(loc, str) else loc
    return Problem(
        status,
        f"{'.'.join(str(p) for p in path)}: {msg}",
        errors=[{"loc": path, "msg": msg}],
    )


class OrjsonResponse(JSONResponse):
    """JSON serialised once, by orjson, from plain values: problems, and the hot routes
    that return one instead of a model to validate (a model-returning route is serialised
    by pydantic-core in FastAPI itself). Dates and times as pydantic writes them (UTC
    as `Z`)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_UTC_Z)


def problem_response(problem: Problem) -> JSONResponse:
    return OrjsonResponse(
        problem.body(), status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


def _loc(loc: Any) -> list[Any]:
    return list(loc) if isinstance(loc, list | tuple) else [loc]


def _data_error(exc: BaseException) -> str | None:
    """The message of a PostgreSQL data exception (class 22) behind `exc`, if any."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, asyncpg_exceptions.DataError):
            return str(seen).split("\n")[0][:200]
        seen = seen.__cause__ or seen.__context__
    return None


def install_error_handlers(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem_response(Problem(exc.status_code, detail, headers=exc.headers))

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": _loc(e.get("loc", [])), "msg": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        # A body that is not JSON at all is a 400, everything else a 422.
        status = 400 if any(e.get("type") == "json_invalid" for e in exc.errors()) else 422
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        detail = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        return problem_response(Problem(status, detail, errors=errors))

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _database_problem(exc) or _internal_error(exc)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    # The database's exception classes by name: Starlette's inner exception middleware
    # answers them, so a 422 or 503 logs no traceback and keeps the connection open
    # (the handler for Exception runs in the outer one, which re-raises to the server).
    for database_error in (sa_exc.DBAPIError, asyncpg_exceptions.PostgresError, OSError):
        app.add_exception_handler(database_error, on_unexpected)
    app.add_exception_handler(Exception, on_unexpected)


def _internal_error(exc: Exception) -> JSONResponse:
    # SQL parameters are hidden by the engine (db.make_engine), ID numbers by the log
    # formatter.
    log.exception("unhandled error", exc_info=exc)
    return problem_response(Problem(500, "an unexpected error occurred; it has been logged"))


def _database_problem(exc: Exception) -> JSONResponse | None:
    """422 for bad input the database refused, 503 while it is unreachable, else None."""
    data_error = _data_error(exc)
    if data_error is not None:
        # SQLSTATE class 22: the input itself (a NUL character, a number out of range…).
        return problem_response(
            Problem(422, f"a value cannot be stored: {data_error}",
                    errors=[{"loc": ["body"], "msg": data_error}])
        )  # fmt: skip
    if is_transient(exc):
        log.warning("database unavailable: %s", type(exc).__name__)
        return problem_response(
            Problem(503, "the database is unavailable; nothing was saved, try again",
                    headers={"Retry-After": "2"})
        )  # fmt: skip
    return None
