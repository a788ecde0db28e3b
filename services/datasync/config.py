"""Datasync's own settings (environment, prefix `DATASYNC_`), next to the kernel's."""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from backstop.sheets import Limits
from services.datasync.domain import CalendarRules

MAX_JSON_RECORDS = 100_000


class DatasyncConfig(BaseSettings):
    """Upload limits, the delivery calendar and the late-delivery job."""

    model_config = SettingsConfigDict(env_prefix="DATASYNC_", extra="ignore")

    max_upload_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    # A JSON body is parsed whole, so it has its own, smaller limit (~100k records);
    # larger deliveries come as CSV/XLSX files, which stream.
    max_json_bytes: int = Field(default=48 * 1024 * 1024, gt=0)
    # Records in one JSON batch (about what max_json_bytes holds); more is a 413.
    max_json_records: int = Field(default=MAX_JSON_RECORDS, ge=1)
    # Records parsed, validated and written per round trip while a batch streams in.
    chunk_size: int = Field(default=2000, ge=100)
    # Files: rows of a sheet, and what an XLSX may expand to (its shared strings are
    # held in memory while it is read; a zip bomb is refused before any XML is parsed).
    max_file_rows: int = Field(default=1_000_000, ge=1)
    max_xlsx_shared_strings_bytes: int = Field(default=64 << 20, gt=0)
    max_xlsx_ratio: int = Field(default=100, ge=2)
    # The summary lists at most this many record errors; all are kept in the database.
    max_errors_listed: int = Field(default=1000, ge=1)
    monthly_due_day: int = Field(default=5, ge=1, le=28)
    education_months: tuple[int, ...] = (3, 10)
    timezone: str = "Asia/Shanghai"
    late_check_interval_s: float = Field(default=600.0, gt=0)
    # How many months back the late-delivery job looks for missing deliveries.
    late_lookback_months: int = Field(default=3, ge=0, le=24)

    @property
    def rules(self) -> CalendarRules:
        return CalendarRules(
            monthly_due_day=self.monthly_due_day, education_months=self.education_months
        )

    @property
    def limits(self) -> Limits:
        return Limits(
            max_rows=self.max_file_rows,
            max_shared_strings_bytes=self.max_xlsx_shared_strings_bytes,
            max_ratio=self.max_xlsx_ratio,
        )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@lru_cache
def get_config() -> DatasyncConfig:
    return DatasyncConfig()
