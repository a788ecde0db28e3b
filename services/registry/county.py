"""The county this registry serves and its towns and villages.

`BACKSTOP_COUNTY_CODE` (default 441881, 英德市, Guangdong) picks the county. Its regions
come from `regions/<county>.csv` (a committed subset of china-division@2.7.0), or, for a
county not committed here, from the package's `streets.csv`/`villages.csv` in
`BACKSTOP_CHINA_DIVISION_DIR`.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.drafts import forget_villages
from services.registry.models import region_table

DEFAULT_COUNTY = "441881"
REGIONS_DIR = Path(__file__).resolve().parent / "regions"


@dataclass(frozen=True)
class RegionRow:
    code: str
    name: str
    level: str  # "town" or "village"
    parent_code: str


class UnknownCounty(LookupError):
    pass


def county_code() -> str:
    code = os.environ.get("BACKSTOP_COUNTY_CODE", DEFAULT_COUNTY).strip()
    if len(code) != 6 or not code.isdigit():
        raise ValueError(f"BACKSTOP_COUNTY_CODE must be a 6-digit county code, not {code!r}")
    return code


def read_regions(county: str | None = None) -> list[RegionRow]:
    """The county's towns then villages."""
    county = county or county_code()
    subset = REGIONS_DIR / f"{county}.csv"
    if subset.exists():
        with subset.open(encoding="utf-8", newline="") as f:
            return [
                RegionRow(r["code"], r["name"], r["level"], r["parent_code"])
                for r in csv.DictReader(f)
            ]
    source = os.environ.get("BACKSTOP_CHINA_DIVISION_DIR")
    if not source:
        raise UnknownCounty(
            f"no regions for county {county}: add services/registry/regions/{county}.csv "
            "or set BACKSTOP_CHINA_DIVISION_DIR to china-division@2.7.0's dist/ directory"
        )
    rows: list[RegionRow] = []
    with (Path(source) / "streets.csv").open(encoding="utf-8", newline="") as f:
        rows += [
            RegionRow(r["code"], r["name"], "town", county)
            for r in csv.DictReader(f)
            if r["areaCode"] == county
        ]
    with (Path(source) / "villages.csv").open(encoding="utf-8", newline="") as f:
        rows += [
            RegionRow(r["code"], r["name"], "village", r["streetCode"])
            for r in csv.DictReader(f)
            if r["areaCode"] == county
        ]
    if not rows:
        raise UnknownCounty(f"china-division has no towns for county {county}")
    return rows


def _insert(rows: list[RegionRow]) -> object:
    return (
        insert(region_table)
        .values([r.__dict__ for r in rows])
        .on_conflict_do_update(
            index_elements=["code"], set_={"name": insert(region_table).excluded.name}
        )
    )


def load_regions_sync(connection: Connection, county: str | None = None) -> int:
    """Insert or refresh the county's regions (idempotent); used by the migration."""
    rows = read_regions(county)
    connection.execute(_insert(rows))  # type: ignore[call-overload]
    return len(rows)


async def load_regions(session: AsyncSession, county: str | None = None) -> int:
    """Insert or refresh the county's regions (idempotent)."""
    rows = read_regions(county)
    await session.execute(_insert(rows))  # type: ignore[call-overload]
    forget_villages()
    return len(rows)
