"""Every HTTP call notify makes to an address someone gave it (webhook subscribers,
recipients' bot and webhook URLs) goes through `PinnedTransport`: the host is resolved
when the request is sent, every address it resolves to is checked, and the request
connects to the checked address, with the Host header and TLS SNI (and so certificate
verification) of the name. DNS that answers a public address at subscription time and a
private one later (rebinding) therefore never reaches inside."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpx

from backstop.errors import invalid
from services.notify import domain

# host, port → addresses, as getaddrinfo answers (tests give their own).
Resolver = Callable[[str, int], Awaitable[list[str]]]


class InternalAddressRefused(httpx.ConnectError):
    """The host is, or resolves to, an internal address: nothing was sent."""


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def checked_addresses(
    host: str, port: int, *, allow_internal: bool = False, resolver: Resolver = resolve
) -> list[str]:
    """`host`'s addresses, all public unless `allow_internal`; raises ValueError naming
    an internal one, or saying the host does not resolve."""
    try:
        addresses = await resolver(host, port)
    except OSError:
        addresses = []
    if not addresses:
        raise ValueError(f"host {host!r} does not resolve")
    found = None if allow_internal else domain.internal_address(host, addresses)
    if found is not None:
        raise ValueError(f"host {host!r} is an internal address ({found})")
    return addresses


async def check_url(url: str, loc: list[str | int]) -> None:
    """422 at `loc` unless the URL's host resolves, and only to public addresses: what a
    subscriber or a recipient gives is checked when given, and again on every call."""
    parsed = httpx.URL(url)
    if not parsed.host:
        raise invalid(loc, "has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        await checked_addresses(parsed.host, port)
    except ValueError as exc:
        raise invalid(loc, f"{exc}; the address must be public") from None


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that checks and pins the resolved address of every request.
    `allow_internal` skips the check (development, tests); `trusted_hosts` are the
    deployment's own gateways (NOTIFY_SMS_GATEWAY_URL), which may be internal and are
    connected to as usual."""

    def __init__(
        self,
        *,
        allow_internal: bool = False,
        trusted_hosts: Iterable[str] = (),
        resolver: Resolver = resolve,
    ) -> None:
        self.allow_internal = allow_internal
        self.trusted_hosts = frozenset(h.lower() for h in trusted_hosts)
        self.resolver = resolver
        # One connection pool per host name: pooled by IP alone, a TLS connection made
        # (and verified) for one name could carry a request for another on that IP.
        self._pools: dict[str, httpx.AsyncHTTPTransport] = {}

    def _pool(self, host: str) -> httpx.AsyncHTTPTransport:
        if host not in self._pools:
            self._pools[host] = httpx.AsyncHTTPTransport()
        return self._pools[host]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        inner = self._pool(host)
        if host.lower() in self.trusted_hosts:
            return await inner.handle_async_request(request)
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            addresses = await checked_addresses(
                host, port, allow_internal=self.allow_internal, resolver=self.resolver
            )
        except ValueError as exc:
            raise InternalAddressRefused(str(exc), request=request) from None
        # The Host header was set from the name when the request was built and stays.
        request.url = request.url.copy_with(host=addresses[0])
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await inner.handle_async_request(request)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


def pinned_client(
    *,
    timeout: float,
    allow_internal: bool,
    trusted_hosts: Iterable[str] = (),
    resolver: Resolver = resolve,
) -> httpx.AsyncClient:
    """The HTTP client of notify's deliveries. `trust_env=False`: a proxy from the
    environment would connect in our place, past the check."""
    transport = PinnedTransport(
        allow_internal=allow_internal, trusted_hosts=trusted_hosts, resolver=resolver
    )
    return httpx.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    )
