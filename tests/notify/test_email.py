"""The e-mail channel against a minimal SMTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email
from email.policy import default as default_policy

from services.notify.channels import EmailChannel, Outgoing
from tests.notify.conftest import fast


class SmtpSink:
    """Just enough SMTP (RFC 5321) to accept messages and keep them."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.messages: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        while line := await reader.readline():
            command = line.decode().strip().upper()
            if command.startswith(("EHLO", "HELO")):
                writer.write(b"250 sink\r\n")
            elif command.startswith("RCPT") and self.refuse and self.refuse.upper() in command:
                writer.write(b"550 no such user\r\n")
            elif command.startswith(("MAIL", "RCPT", "RSET", "NOOP")):
                writer.write(b"250 OK\r\n")
            elif command == "DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                data = await reader.readuntil(b"\r\n.\r\n")
                self.messages.append(data[: -len(b".\r\n")])
                writer.write(b"250 queued\r\n")
            elif command == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"502 not implemented\r\n")
            await writer.drain()
        writer.close()


def outgoing(address: str) -> Outgoing:
    return Outgoing(
        reminder_id="r-1",
        dedup_key="k-1",
        recipient="department:medical",
        recipient_name="医保局",
        address=address,
        title="数据报送提醒",
        body="【防返贫监测】请于2026年12月05日前向扶贫办报送数据。",
    )


async def test_email_is_sent_over_smtp_and_a_refused_recipient_is_final() -> None:
    sink = SmtpSink(refuse="nobody@")
    server = await asyncio.start_server(sink.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        channel = EmailChannel(
            fast(smtp_host="127.0.0.1", smtp_port=port, smtp_ssl=False, smtp_sender="bs@county")
        )
        ok = await channel.send(outgoing("yibao@county.gov.cn"))
        refused = await channel.send(outgoing("nobody@county.gov.cn"))
    assert ok.ok
    assert not refused.ok and not refused.retryable
    message = email.message_from_bytes(sink.messages[0], policy=default_policy)
    assert message["To"] == "yibao@county.gov.cn" and message["Subject"] == "数据报送提醒"
    assert "扶贫办" in message.get_content()  # type: ignore[attr-defined]
