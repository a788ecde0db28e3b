"""Delivery channels behind one interface: SMS gateway (HTTP), WeChat Work group bot,
SMTP e-mail, generic webhook, and the local channel that only records (the default)."""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import httpx

from services.notify import domain
from services.notify.config import NotifySettings
from services.notify.egress import InternalAddressRefused

log = logging.getLogger("backstop.notify.channels")


@dataclass(frozen=True)
class Outgoing:
    reminder_id: str
    dedup_key: str  # passed on as an idempotency key where the gateway takes one
    recipient: str
    recipient_name: str | None
    address: str
    title: str
    body: str


@dataclass(frozen=True)
class SendResult:
    ok: bool
    error: str | None = None
    retryable: bool = True

    @classmethod
    def failed(cls, error: str, *, retryable: bool = True) -> SendResult:
        return cls(ok=False, error=error[:1000], retryable=retryable)


class Channel(Protocol):
    name: str

    async def send(self, message: Outgoing) -> SendResult: ...


class LocalChannel:
    """Records only: the delivery log row is the message's trace. Logs no body."""

    name = "local"

    async def send(self, message: Outgoing) -> SendResult:
        log.info(
            "reminder recorded locally",
            extra={
                "reminder_id": message.reminder_id,
                "recipient": domain.public_recipient(message.recipient),
            },
        )
        return SendResult(ok=True)


def _http_result(response: httpx.Response) -> SendResult:
    if response.is_success:
        return SendResult(ok=True)
    # 4xx other than 408/429 will not get better by retrying.
    retryable = response.status_code >= 500 or response.status_code in (408, 429)
    return SendResult.failed(f"HTTP {response.status_code}", retryable=retryable)


class SmsGatewayChannel:
    """An HTTP SMS gateway: POST {phone, sign_name, content} with a bearer key."""

    name = "sms"

    def __init__(self, client: httpx.AsyncClient, *, url: str, api_key: str | None, sign: str):
        self.client, self.url, self.api_key, self.sign = client, url, api_key, sign

    async def send(self, message: Outgoing) -> SendResult:
        headers = {"Idempotency-Key": message.dedup_key}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        payload = {
            "phone": message.address,
            "sign_name": self.sign,
            "content": message.body,
            "request_id": message.reminder_id,
        }
        response = await self.client.post(self.url, json=payload, headers=headers)
        return _http_result(response)


class WeComBotChannel:
    """A WeChat Work (企业微信) group bot: the address is the bot's webhook URL."""

    name = "wecom"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, message: Outgoing) -> SendResult:
        payload = {"msgtype": "text", "text": {"content": f"{message.title}\n{message.body}"}}
        response = await self.client.post(message.address, json=payload)
        result = _http_result(response)
        if not result.ok:
            return result
        try:
            errcode = int(response.json().get("errcode", 0))
        except (ValueError, AttributeError):
            return SendResult(ok=True)
        if errcode != 0:
            # 45009 = rate limited: worth another try; others are configuration errors.
            return SendResult.failed(f"wecom errcode {errcode}", retryable=errcode == 45009)
        return SendResult(ok=True)


class EmailChannel:
    name = "email"

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings

    async def send(self, message: Outgoing) -> SendResult:
        email = EmailMessage()
        email["From"] = self.settings.smtp_sender
        email["To"] = message.address
        email["Subject"] = message.title
        email["Message-ID"] = f"<{message.reminder_id}@backstop>"
        email.set_content(message.body)
        try:
            await asyncio.to_thread(self._send_blocking, email)
        except smtplib.SMTPRecipientsRefused as exc:
            return SendResult.failed(f"recipient refused: {exc}", retryable=False)
        except (smtplib.SMTPException, OSError) as exc:
            return SendResult.failed(f"{type(exc).__name__}: {exc}")
        return SendResult(ok=True)

    def _send_blocking(self, email: EmailMessage) -> None:
        s = self.settings
        assert s.smtp_host is not None
        smtp: smtplib.SMTP
        if s.smtp_ssl:
            smtp = smtplib.SMTP_SSL(
                s.smtp_host,
                s.smtp_port,
                timeout=s.http_timeout_s,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.http_timeout_s)
        with smtp:
            if s.smtp_user and s.smtp_password:
                smtp.login(s.smtp_user, s.smtp_password)
            smtp.send_message(email)


class WebhookChannel:
    """A generic webhook: the reminder as JSON, signed like subscription deliveries."""

    name = "webhook"

    def __init__(self, client: httpx.AsyncClient, secret: str | None) -> None:
        self.client, self.secret = client, secret

    async def send(self, message: Outgoing) -> SendResult:
        body = json.dumps(
            {
                "reminder_id": message.reminder_id,
                "dedup_key": message.dedup_key,
                "recipient": message.recipient,
                "title": message.title,
                "body": message.body,
            },
            ensure_ascii=False,
        ).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.dedup_key}
        if self.secret:
            headers |= domain.signature_headers(self.secret, body, time.time())
        response = await self.client.post(message.address, content=body, headers=headers)
        return _http_result(response)


class Channels:
    """The channels this deployment has wired. `pick` falls back to the local channel for
    a channel the deployment has not configured, so a message is never lost, only kept."""

    def __init__(self, settings: NotifySettings, client: httpx.AsyncClient) -> None:
        self.local = LocalChannel()
        self._by_name: dict[str, Channel] = {"local": self.local}
        enabled = settings.enabled_channels
        if "sms" in enabled and settings.sms_gateway_url:
            self._by_name["sms"] = SmsGatewayChannel(
                client,
                url=settings.sms_gateway_url,
                api_key=settings.sms_api_key,
                sign=settings.sms_sign_name,
            )
        if "wecom" in enabled:
            self._by_name["wecom"] = WeComBotChannel(client)
        if "email" in enabled and settings.smtp_host:
            self._by_name["email"] = EmailChannel(settings)
        if "webhook" in enabled:
            self._by_name["webhook"] = WebhookChannel(client, settings.webhook_channel_secret)

    def pick(self, name: str | None) -> Channel:
        return self._by_name.get(name or "local", self.local)


async def send_safely(channel: Channel, message: Outgoing, timeout: float) -> SendResult:
    """Send, turning every transport error or timeout into a retryable failure."""
    try:
        return await asyncio.wait_for(channel.send(message), timeout)
    except TimeoutError:
        return SendResult.failed(f"timed out after {timeout:.0f}s")
    except InternalAddressRefused as exc:  # the address will not become public by retrying
        return SendResult.failed(str(exc), retryable=False)
    except httpx.HTTPError as exc:
        return SendResult.failed(f"{type(exc).__name__}: {exc}")
