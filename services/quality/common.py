"""What the quality service's modules share: its name and clock, and the small helpers of
its SQL (ids bound as one JSON array) and of its amounts (exact decimals)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson

SERVICE = "quality"
COUNTY_TZ = ZoneInfo("Asia/Shanghai")


def county_today() -> date:
    return datetime.now(COUNTY_TZ).date()


def json_text(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def any_of(column: str) -> str:
    """`<column> = ANY(:ids)`, the ids bound as one JSON array (cheaper than an array
    parameter, whose elements asyncpg checks one by one)."""
    return f"{column} = ANY(ARRAY(SELECT json_array_elements_text(CAST(:ids AS json))))"


def ids_param(ids: Iterable[str]) -> dict[str, str]:
    return {"ids": json_text(list(ids))}


def dec(value: Any) -> Decimal:
    """An amount in yuan as an exact decimal: JSON numbers through their shortest text,
    so 0.1 stays 0.1."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def dec_or_none(value: Any) -> Decimal | None:
    return None if value is None else dec(value)
