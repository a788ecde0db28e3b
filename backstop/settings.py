"""One settings loader for all services, read from the environment."""

from __future__ import annotations

import ssl
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "backstop-dev-jwt-secret-change-me-0123456789"
DEV_PII_KEY = "backstop-dev-pii-key-change-me-0123456789"
DEV_SECRETS_KEY = "dNV1qkN1G4Bd5sMSEBjbcGFo-OddH4HogU4XPa3DSoA="  # a Fernet key; dev only
SERVICES = ("registry", "datasync", "risk", "assistance", "notify", "quality")
PORTS = {
    "registry": 8001,
    "datasync": 8002,
    "risk": 8003,
    "assistance": 8004,
    "notify": 8005,
    "quality": 8006,
}


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
    # The most connections a process holds (kept open once opened; no overflow).
    db_pool_size: int = Field(default=20, alias="BACKSTOP_DB_POOL_SIZE")
    # And for the hot one-statement paths (backstop.db.DriverPool), on top of those.
    db_driver_pool_size: int = Field(default=10, ge=1, alias="BACKSTOP_DB_DRIVER_POOL_SIZE")

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", alias="KAFKA_BOOTSTRAP_SERVERS")
    # Only tests set a prefix, to isolate one run's topics from another's on a shared broker.
    topic_prefix: str = Field(default="", alias="BACKSTOP_TOPIC_PREFIX")
    consumer_max_retries: int = Field(default=3, alias="BACKSTOP_CONSUMER_MAX_RETRIES")
    consumer_max_records: int = Field(default=2000, alias="BACKSTOP_CONSUMER_MAX_RECORDS")
    consumer_retry_backoff_s: float = Field(default=0.2, alias="BACKSTOP_CONSUMER_RETRY_BACKOFF")
    outbox_batch_size: int = Field(default=2000, alias="BACKSTOP_OUTBOX_BATCH_SIZE")
    outbox_poll_interval_s: float = Field(default=0.5, alias="BACKSTOP_OUTBOX_POLL_INTERVAL")
    # The broker's message.max.bytes (or the topics' max.message.bytes): an event larger
    # than this is refused when written (413) and parked by the relay, never retried.
    kafka_max_message_bytes: int = Field(
        default=1_048_576, ge=1024, alias="BACKSTOP_KAFKA_MAX_MESSAGE_BYTES"
    )
    # Production brokers: SASL_SSL with SCRAM and TLS (docs/security.md). Local runs stay
    # PLAINTEXT on loopback.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", alias="KAFKA_SECURITY_PROTOCOL"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", alias="KAFKA_SASL_MECHANISM"
    )
    kafka_sasl_username: str | None = Field(default=None, alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: str | None = Field(default=None, alias="KAFKA_SASL_PASSWORD")
    kafka_ssl_cafile: str | None = Field(default=None, alias="KAFKA_SSL_CAFILE")
    kafka_ssl_certfile: str | None = Field(default=None, alias="KAFKA_SSL_CERTFILE")
    kafka_ssl_keyfile: str | None = Field(default=None, alias="KAFKA_SSL_KEYFILE")

    # What this process runs (docs/scaling.md): `api` the HTTP routes only, `worker` the
    # outbox relay, consumers and periodic jobs (HTTP: health and metrics only), `all` both.
    role: Literal["api", "worker", "all"] = Field(default="all", alias="BACKSTOP_ROLE")
    # Request bodies larger than this get a 413 (None: the service's own default).
    max_body_bytes: int | None = Field(default=None, ge=1024, alias="BACKSTOP_MAX_BODY_BYTES")

    jwt_secret: str = Field(default=DEV_JWT_SECRET, alias="BACKSTOP_JWT_SECRET")
    # A token whose exp lies further ahead than this is refused (a year-9999 token).
    jwt_max_lifetime_s: int = Field(default=24 * 3600, ge=60, alias="BACKSTOP_JWT_MAX_LIFETIME")
    # Checked (and put in issued tokens) when set.
    jwt_issuer: str | None = Field(default=None, alias="BACKSTOP_JWT_ISSUER")
    jwt_audience: str | None = Field(default=None, alias="BACKSTOP_JWT_AUDIENCE")
    pii_key: str = Field(default=DEV_PII_KEY, alias="BACKSTOP_PII_KEY")
    # The county served (the same variable registry's regions follow): the region of what
    # belongs to no village yet, e.g. a check of a person not in the register.
    county_code: str = Field(default="441881", pattern=r"^[0-9]{6}$", alias="BACKSTOP_COUNTY_CODE")
    # Encrypts secrets at rest (backstop.crypto): Fernet keys, comma-separated, the first
    # encrypts and all decrypt (rotation).
    secrets_key: str = Field(default=DEV_SECRETS_KEY, alias="BACKSTOP_SECRETS_KEY")
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
            if DEV_SECRETS_KEY in self.secrets_key.split(","):
                raise ValueError("BACKSTOP_SECRETS_KEY must be set to Fernet keys in production")
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs"
                " KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
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

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection options for every aiokafka producer, consumer and admin client:
        the bootstrap servers and, when configured, TLS and SASL (SCRAM)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            context = ssl.create_default_context(cafile=self.kafka_ssl_cafile)
            if self.kafka_ssl_certfile:
                context.load_cert_chain(self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
            options["ssl_context"] = context
        if self.kafka_security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            options["sasl_plain_password"] = self.kafka_sasl_password
        return options

    def topic(self, name: str) -> str:
        """The broker-side name of a contract topic (prefixed only in tests)."""
        return f"{self.topic_prefix}{name}"


@lru_cache
def get_settings(service: str | None = None) -> Settings:
    if service is None:
        return Settings()
    return Settings(BACKSTOP_SERVICE=service)
