"""One settings loader for all services, read from the environment."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "backstop-dev-jwt-secret-change-me-0123456789"
DEV_PII_KEY = "backstop-dev-pii-key-change-me-0123456789"
SERVICES = ("registry", "datasync", "risk", "assistance", "notify")
PORTS = {"registry": 8001, "datasync": 8002, "risk": 8003, "assistance": 8004, "notify": 8005}


class Settings(BaseSettings):
    """Settings of one service process.

    `DATABASE_URL` wins when given; otherwise the URL is built from the local PostgreSQL
    defaults that `deploy/infra.sh` sets up, with the database `backstop_<service>`.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    service: str = Field(default="backstop", alias="BACKSTOP_SERVICE")
    environment: Literal["development", "test", "production"] = Field(
        default="development", alias="BACKSTOP_ENV"
    )
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    pg_host: str = Field(default="127.0.0.1", alias="PGHOST")
    pg_port: int = Field(default=5432, alias="PGPORT")
    pg_user: str = Field(default="backstop", alias="PGUSER")
    pg_password: str = Field(default="backstop", alias="PGPASSWORD")
    db_pool_size: int = Field(default=10, alias="BACKSTOP_DB_POOL_SIZE")

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", alias="KAFKA_BOOTSTRAP_SERVERS")
    # Only tests set a prefix, to isolate one run's topics from another's on a shared broker.
    topic_prefix: str = Field(default="", alias="BACKSTOP_TOPIC_PREFIX")
    consumer_max_retries: int = Field(default=3, alias="BACKSTOP_CONSUMER_MAX_RETRIES")
    consumer_max_records: int = Field(default=2000, alias="BACKSTOP_CONSUMER_MAX_RECORDS")
    consumer_retry_backoff_s: float = Field(default=0.2, alias="BACKSTOP_CONSUMER_RETRY_BACKOFF")
    outbox_batch_size: int = Field(default=2000, alias="BACKSTOP_OUTBOX_BATCH_SIZE")
    outbox_poll_interval_s: float = Field(default=0.5, alias="BACKSTOP_OUTBOX_POLL_INTERVAL")

    jwt_secret: str = Field(default=DEV_JWT_SECRET, alias="BACKSTOP_JWT_SECRET")
    pii_key: str = Field(default=DEV_PII_KEY, alias="BACKSTOP_PII_KEY")
    log_level: str = Field(default="INFO", alias="BACKSTOP_LOG_LEVEL")
    log_json: bool = Field(default=True, alias="BACKSTOP_LOG_JSON")

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.environment == "production":
            for name, value, default in (
                ("BACKSTOP_JWT_SECRET", self.jwt_secret, DEV_JWT_SECRET),
                ("BACKSTOP_PII_KEY", self.pii_key, DEV_PII_KEY),
            ):
                if value == default or len(value) < 32:
                    raise ValueError(
                        f"{name} must be set to a secret of 32+ characters in production"
                    )
        return self

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return self.database_url_for(self.service)

    def database_url_for(self, service: str, database: str | None = None) -> str:
        name = database or f"backstop_{service}"
        return (
            f"postgresql+asyncpg://{self.pg_user}:{self.pg_password}"
            f"@{self.pg_host}:{self.pg_port}/{name}"
        )

    def topic(self, name: str) -> str:
        """The broker-side name of a contract topic (prefixed only in tests)."""
        return f"{self.topic_prefix}{name}"


@lru_cache
def get_settings(service: str | None = None) -> Settings:
    if service is None:
        return Settings()
    return Settings(BACKSTOP_SERVICE=service)
