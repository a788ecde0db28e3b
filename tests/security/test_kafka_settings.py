"""§8 of the hardening issue: the Kafka security settings reach every aiokafka client the
services build (producer, consumer, admin); local runs stay PLAINTEXT."""

from __future__ import annotations

import ssl

import pytest
from pydantic import ValidationError

from backstop.bus import make_admin, make_consumer, make_producer
from backstop.settings import Settings

SECURE = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka.county.example:9094",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "backstop-risk",
    "KAFKA_SASL_PASSWORD": "s3cret-from-the-vault",
}


async def test_sasl_ssl_settings_reach_producer_consumer_and_admin() -> None:
    settings = Settings(**SECURE)
    producer = make_producer(settings)
    consumer = make_consumer(settings, "risk.alerts", group_id="g")
    admin = make_admin(settings)
    try:
        for client in (producer.client, consumer._client, admin._client):
            assert client._bootstrap_servers == "kafka.county.example:9094"
            assert client._security_protocol == "SASL_SSL"
            assert client._sasl_mechanism == "SCRAM-SHA-512"
            assert client._sasl_plain_username == "backstop-risk"
            assert client._sasl_plain_password == "s3cret-from-the-vault"
            context = client._ssl_context
            assert isinstance(context, ssl.SSLContext)
            assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        # The producer refuses a record over the broker's limit before sending it.
        assert producer._max_request_size == settings.kafka_max_message_bytes
    finally:
        await producer.stop()
        await consumer.stop()
        await admin.close()


async def test_local_runs_stay_plaintext_without_credentials() -> None:
    settings = Settings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9092")
    producer = make_producer(settings)
    try:
        assert producer.client._security_protocol == "PLAINTEXT"
        assert producer.client._ssl_context is None
        assert producer.client._sasl_plain_username is None
    finally:
        await producer.stop()


def test_sasl_without_credentials_is_refused_at_startup() -> None:
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME"):
        Settings(KAFKA_SECURITY_PROTOCOL="SASL_SSL")
