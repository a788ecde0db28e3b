"""Deployment settings of the notify service (env `NOTIFY_*`): which channels are wired,
their gateways, and the cadence and limits of the jobs."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    # Channels this deployment really delivers on; a recipient whose channel is not in
    # the list is delivered on the local channel, which only records the message.
    channels: str = Field(default="local", description="comma-separated: sms,wecom,email,webhook")
    sms_gateway_url: str | None = None
    sms_api_key: str | None = None
    sms_sign_name: str = "防返贫监测"
    smtp_host: str | None = None
    smtp_port: int = 465
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_sender: str = "backstop@localhost"
    smtp_ssl: bool = True
    # Signs reminders sent on the generic webhook channel (X-Backstop-Signature).
    webhook_channel_secret: str | None = None
    http_timeout_s: float = 10.0
    # Callback URLs on loopback, private or link-local addresses would let a subscriber
    # make this service call the county's internal systems. None: allowed outside
    # production (local receivers in development and tests).
    allow_internal_callbacks: bool | None = None

    # County code: the region of county-level reminders (departments, 扶贫办), so a
    # county token sees them; empty means only all-region tokens do.
    county_code: str = ""

    # Job cadences (seconds) and limits; tests make them short.
    schedule_interval_s: float = 60.0
    reminder_interval_s: float = 5.0
    webhook_interval_s: float = 2.0
    batch_size: int = 200
    lease_s: float = 120.0
    reminder_max_attempts: int = 6
    reminder_backoff_s: float = 30.0
    reminder_backoff_max_s: float = 3600.0
    webhook_max_attempts: int = 8
    webhook_backoff_s: float = 10.0
    webhook_backoff_max_s: float = 3600.0
    webhook_per_subscription: int = 20  # per job run, so a backlog never starves others
    # How long a webhook round waits for slow subscribers before serving the others again.
    webhook_round_wait_s: float = 2.0
    # The town leader hears of an overdue task this long after its assignee, unless the
    # task is completed in between.
    escalation_delay_s: float = 24 * 3600.0

    def internal_callbacks_allowed(self, environment: str) -> bool:
        if self.allow_internal_callbacks is None:
            return environment != "production"
        return self.allow_internal_callbacks

    @property
    def enabled_channels(self) -> frozenset[str]:
        return frozenset(c.strip() for c in self.channels.split(",") if c.strip()) | {"local"}


@lru_cache
def get_notify_settings() -> NotifySettings:
    return NotifySettings()
