"""Deployment settings of the quality service (env `QUALITY_*`): the rules' configurable
limits and the sweep's cadence."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.quality.domain import Thresholds


class QualitySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUALITY_", extra="ignore")

    # Year-on-year change of net income beyond which a reason is expected (IN008/IN009).
    income_rise_ratio: Decimal = Field(Decimal("1.0"), gt=0, le=100)
    income_drop_ratio: float = Field(0.5, gt=0, lt=1)
    rigid_share: Decimal = Field(Decimal("0.5"), gt=0, le=10)
    at_risk_grace_days: int = Field(30, ge=1, le=365)
    # The nightly sweep starts after this hour, county time (Asia/Shanghai).
    nightly_hour: int = Field(2, ge=0, le=23)
    sweep_chunk: int = Field(2000, ge=10, le=20000)
    sweep_interval_s: float = Field(2.0, gt=0)
    # Error findings a town leaves open longer than this are escalated (notify, 督办).
    escalate_after_days: int = Field(7, ge=1, le=365)

    def thresholds(self) -> Thresholds:
        return Thresholds(
            income_rise_ratio=self.income_rise_ratio,
            income_drop_ratio=self.income_drop_ratio,
            rigid_share=self.rigid_share,
            at_risk_grace_days=self.at_risk_grace_days,
        )


@lru_cache
def get_quality_settings() -> QualitySettings:
    return QualitySettings()
