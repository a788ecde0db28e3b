"""Cursor pagination, the same for every list: `limit` and an opaque `cursor` that carries
the sort key of the last item of the previous page (keyset pagination, stable under
inserts)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import orjson

from backstop.errors import invalid


def encode_cursor(*values: Any) -> str:
    """An opaque cursor holding the sort key of a page's last item."""
    return base64.urlsafe_b64encode(orjson.dumps(values, default=str)).decode().rstrip("=")


def decode_cursor(cursor: str | None, *parsers: Callable[[Any], Any]) -> tuple[Any, ...] | None:
    """The sort key a cursor holds, each value read by its parser (`int`, `str`,
    `datetime.fromisoformat`, `uuid.UUID`…); None without a cursor. A cursor this API did
    not return is a 422 naming `cursor`, never a 500."""
    if not cursor:
        return None
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) != len(parsers):
            raise ValueError("wrong shape")
        return tuple(parse(value) for parse, value in zip(parsers, values, strict=True))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise invalid(["query", "cursor"], "is not a cursor this API returned") from None
