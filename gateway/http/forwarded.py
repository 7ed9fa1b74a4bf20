"""Who the client is, behind trusted proxies only (RFC 7239; RFC 9700 section 4.13).

The balancers set one header, named by ``forwarded_header`` (``X-Forwarded-For`` by default, or
``Forwarded``); the other is never read, since a client could send it through a balancer that
passes it on. That header is believed only when the peer is in ``trusted_proxies``; then the
client is the right-most address in it that is not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import re

from aiohttp import web

from gateway.config.model import GatewaySettings

_FORWARDED_FOR = re.compile(r'for="?\[?([^\]";,]+)', re.IGNORECASE)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(value: str) -> Address | None:
    host = value.strip().strip('"')
    if host.startswith("[") and "]" in host:
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:  # IPv4 with a port
        host = host.split(":", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_proxy(address: Address, settings: GatewaySettings) -> bool:
    return any(address in net for net in settings.trusted_proxies)


def is_trusted(address: str | None, settings: GatewaySettings) -> bool:
    parsed = _parse(address) if address else None
    return parsed is not None and _is_proxy(parsed, settings)


def forwarded_chain(request: web.BaseRequest, settings: GatewaySettings) -> list[str]:
    """The addresses in the configured header, left to right (every value of it, in order),
    when the peer is a trusted proxy; empty otherwise."""
    if not settings.trusted_proxies or not is_trusted(request.remote, settings):
        return []
    values = request.headers.getall(settings.forwarded_header, [])
    if settings.forwarded_header == "Forwarded":
        return [m.group(1) for value in values for m in _FORWARDED_FOR.finditer(value)]
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def client_address(request: web.BaseRequest, settings: GatewaySettings) -> str | None:
    """The client's address: the peer, or what trusted proxies say the peer forwarded for."""
    peer = request.remote
    for hop in reversed(forwarded_chain(request, settings)):
        parsed = _parse(hop)
        if parsed is None:
            break
        if not _is_proxy(parsed, settings):
            return str(parsed)
    return peer
