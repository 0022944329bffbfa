"""Where nimbus itself may send HTTP requests: webhook destinations of async invocations
and SNS http(s) subscriptions go to the internet, and to this host's loopback, link-local
addresses (cloud metadata at 169.254.169.254) or private networks only where the
operator allows it (server-side request forgery: a function's configuration must not
make nimbus reach what only nimbus's host can reach).

A URL's host is resolved once and *every* address it resolves to must be allowed (a
name resolving to a public and a private address is refused as a whole). The request
then goes to a checked address itself, the name kept in the ``Host`` header and for TLS
(SNI and the certificate check), so a DNS answer that changes between the check and the
connection (DNS rebinding) changes nothing. Redirects are never followed. Of the answer
only the status, the headers and the first few KB of the body are read
(``MAX_RESPONSE_BYTES``), and the whole exchange has a deadline (``EXCHANGE_DEADLINE_S``).
An address embedding an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64
``64:ff9b::/96``) is judged by the IPv4 address it leads to.

The allow-list (``webhook_allow`` in the config, ``NIMBUS_WEBHOOK_ALLOW`` comma-separated)
holds entries of three forms:

- a network or address, any port: ``10.0.0.0/8``, ``127.0.0.1`` (= ``127.0.0.1/32``),
  ``fd00::/8``;
- an address and port: ``127.0.0.1:8080``, ``[::1]:8080``;
- a host name, with or without a port: ``hooks.internal``, ``hooks.internal:8443``: that
  name is trusted to resolve where it resolves (for hosts an internal DNS serves), so
  requests to it go out as they are, resolved by the HTTP client.

This module sits below every other part of nimbus and imports none of it, so the config
(which validates the entries) and every sender (events, sns) can use it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What nimbus reads of an answer: its status is all webhooks and SNS deliveries use,
# and a little of the body is kept for a log line; the rest is never read.
MAX_RESPONSE_BYTES = 4096
# The whole exchange, however slowly the other end trickles its answer (httpx's own
# timeouts are per read, so a byte every few seconds would never trip them).
EXCHANGE_DEADLINE_S = 30.0
# How the body was framed on the wire: not true of the capped copy handed back.
_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class EgressRefused(Exception):
    """The URL leads to an address the egress policy does not allow; the message says
    which address, why, and how to allow it."""


class AllowEntryError(ValueError):
    """An allow-list entry nimbus cannot read."""


@dataclass(frozen=True)
class Allowance:
    """One allow-list entry: a network or a host name, on one port or any (None)."""

    network: IPNetwork | None = None
    host: str | None = None  # a DNS name, lower case
    port: int | None = None

    def admits(self, host: str, address: IPAddress, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.host is not None:
            return self.host == host
        assert self.network is not None
        embedded = _embedded(address)
        return address in self.network or (embedded is not None and embedded in self.network)


def parse_allowance(entry: str) -> Allowance:
    """Read one allow-list entry (see the module docstring); AllowEntryError if it is
    none of the three forms."""
    text = entry.strip()
    if not text:
        raise AllowEntryError("an empty allow-list entry")
    try:
        return Allowance(network=ipaddress.ip_network(text, strict=False))
    except ValueError:
        pass
    host, port = text, None
    if text.startswith("["):  # [v6]:port
        inside, _, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            raise AllowEntryError(f"{entry!r}: expected [IPv6]:PORT")
        host, port = inside, _port(rest[1:], entry)
    elif text.count(":") == 1:
        host, _, raw = text.partition(":")
        port = _port(raw, entry)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.rstrip(".").lower()
        labels = name.split(".")
        if not name or not all(
            label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
            for label in labels
        ):
            raise AllowEntryError(
                f"{entry!r} is neither a CIDR (10.0.0.0/8), an address with a port "
                "(127.0.0.1:8080, [::1]:8080) nor a host name (hooks.internal[:8443])"
            ) from None
        return Allowance(host=name, port=port)
    return Allowance(network=ipaddress.ip_network(address), port=port)


def _port(raw: str, entry: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise AllowEntryError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(raw)


def split_entries(value: str | Iterable[str]) -> list[str]:
    """Entries from a list, or from one string separated by commas or whitespace (as an
    environment variable gives them)."""
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return [str(part).strip() for part in value if str(part).strip()]


def forbidden(address: IPAddress) -> str | None:
    """What kind of non-public address ``address`` is ("a loopback address"), or None
    if it is a public internet address."""
    embedded = _embedded(address)
    if embedded is not None:
        why = forbidden(embedded)
        return None if why is None else f"{why} (as {embedded})"
    if address.is_unspecified:
        return "an unspecified address (this host)"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved, not publicly routable address"
    return None


def _embedded(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to (IPv4-mapped, 6to4, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    embedded = address.ipv4_mapped or address.sixtofour
    if embedded is None and address in _NAT64:
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return embedded


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses outbound requests may go to: public ones, and what ``allow``
    lists."""

    allow: tuple[Allowance, ...] = ()

    @classmethod
    def of(cls, entries: str | Iterable[str]) -> EgressPolicy:
        return cls(tuple(parse_allowance(e) for e in split_entries(entries)))

    def refusal(self, host: str, address: IPAddress, port: int) -> str | None:
        """None if a request to ``host`` at ``address``:``port`` may go, else why not."""
        why = forbidden(address)
        if why is None or any(a.admits(host, address, port) for a in self.allow):
            return None
        return why

    async def resolve(self, url: str) -> list[Target]:
        """Where a request to ``url`` may go: one target per address the host resolves
        to, in the resolver's order of preference. EgressRefused if the URL is no http(s)
        URL or any of its addresses is refused; OSError (socket.gaierror) if the name
        does not resolve."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError as exc:
            raise EgressRefused(f"{url}: {exc}") from None
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise EgressRefused(f"{url} is not an http(s) URL with a host")
        host = parts.hostname.rstrip(".").lower()
        port = port or _DEFAULT_PORTS[scheme]
        if any(a.host == host and a.port in (None, port) for a in self.allow):
            return [Target(url, host, port, None, pinned=False)]  # a name the operator trusts
        addresses = await _addresses(host, port)
        for address in addresses:
            why = self.refusal(host, address, port)
            if why is not None:
                shown = host if _is_address(host) else f"{host} resolves to {address}, which"
                raise EgressRefused(
                    f"{url} refused: {shown} is {why}. nimbus sends to loopback, "
                    "link-local, private and other non-public addresses only where "
                    "webhook_allow (NIMBUS_WEBHOOK_ALLOW) allows them, e.g. "
                    f"{_example(address, port)}"
                )
        sni = None if _is_address(host) else host
        return [Target(url, str(address), port, sni) for address in addresses]


@dataclass(frozen=True)
class Target:
    """A checked address to send a request for ``url`` to."""

    url: str
    address: str
    port: int
    sni: str | None  # the host name, for TLS and Host (None: the URL names an address)
    pinned: bool = True  # False: a host name the allow-list trusts, sent to as it is

    def pinned_url(self) -> httpx.URL:
        """``url`` with the checked address in place of its host."""
        if not self.pinned:
            return httpx.URL(self.url)
        return httpx.URL(self.url).copy_with(host=self.address, port=self.port)

    def host_header(self) -> str:
        return httpx.URL(self.url).netloc.decode("ascii").rpartition("@")[2]


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    policy: EgressPolicy,
    *,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
    deadline_s: float = EXCHANGE_DEADLINE_S,
    **kwargs: Any,
) -> httpx.Response:
    """``client.request(method, url, **kwargs)``, sent only to an address ``policy``
    allows and connected to the address checked (see the module docstring). If the
    first address cannot be connected to, the next is tried, as a resolver-driven
    client would. The answer's body is read up to ``max_response_bytes`` and the rest
    dropped unread, and the whole exchange (resolving, connecting, sending, reading)
    must end within ``deadline_s``: the other end is whatever a function's
    configuration names, so neither its size nor its pace may hold nimbus. Raises
    EgressRefused (do not retry: the answer will be the same), or httpx errors
    (httpx.ConnectError also when the name does not resolve, httpx.TimeoutException
    past the deadline)."""
    try:
        async with asyncio.timeout(deadline_s):
            return await _exchange(client, method, url, policy, max_response_bytes, kwargs)
    except TimeoutError:
        raise httpx.TimeoutException(
            f"{method} {url} did not complete within {deadline_s:g} s"
        ) from None


async def _exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    policy: EgressPolicy,
    limit: int,
    kwargs: dict[str, Any],
) -> httpx.Response:
    try:
        targets = await policy.resolve(url)
    except OSError as exc:
        raise httpx.ConnectError(f"cannot resolve the host of {url}: {exc}") from exc
    headers: dict[str, str] = dict(kwargs.pop("headers", None) or {})
    extensions: dict[str, Any] = dict(kwargs.pop("extensions", None) or {})
    kwargs.pop("follow_redirects", None)  # a redirect would be an unchecked address
    # Raw bytes only: a compressed answer could inflate far past what is read of it.
    headers.setdefault("Accept-Encoding", "identity")
    for index, target in enumerate(targets):
        headers["Host"] = target.host_header()
        if target.sni is not None:
            extensions["sni_hostname"] = target.sni
        built = client.build_request(
            method, target.pinned_url(), headers=headers, extensions=extensions, **kwargs
        )
        try:
            response = await client.send(built, stream=True, follow_redirects=False)
        except httpx.ConnectError:
            if index == len(targets) - 1:
                raise
            continue
        try:
            body = await _read_capped(response, limit)
        finally:
            await response.aclose()  # what is left unread is dropped with the connection
        kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _FRAMING]
        return httpx.Response(response.status_code, headers=kept, content=body, request=built)
    raise AssertionError("resolve() returns at least one target")  # pragma: no cover


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the body, as sent (never decompressed)."""
    if response.is_stream_consumed:  # a transport that read it whole (httpx.MockTransport)
        return response.content[:limit]
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
        if size >= limit:
            break
    return b"".join(chunks)


async def post(
    client: httpx.AsyncClient,
    url: str,
    policy: EgressPolicy,
    *,
    content: bytes,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """A POST through ``request``."""
    return await request(
        client, "POST", url, policy, content=content, headers=dict(headers or {}), **kwargs
    )


async def _addresses(host: str, port: int) -> list[IPAddress]:
    if _is_address(host):
        return [ipaddress.ip_address(host)]
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in found:
            found.append(address)
    if not found:
        raise socket.gaierror(f"{host} has no address")
    return found


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _example(address: IPAddress, port: int) -> str:
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"{shown}:{port}"
