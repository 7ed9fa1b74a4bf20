"""Who the client is, behind trusted proxies only (RFC 7239; RFC 9700 section 4.13).

``X-Forwarded-For`` and ``Forwarded`` are believed only when the peer is in ``trusted_proxies``;
then the client is the right-most address that is not itself a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import re

from aiohttp import web

from gateway.config.model import GatewaySettings

_FORWARDED_FOR = re.compile(r'for="?\[?([^\]";,]+)', re.IGNORECASE)


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = value.strip().strip('"')
    if host.startswith("[") and "]" in host:
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:  # IPv4 with a port
        host = host.split(":", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_trusted(address: str | None, settings: GatewaySettings) -> bool:
    parsed = _parse(address) if address else None
    return parsed is not None and any(parsed in net for net in settings.trusted_proxies)


def client_address(request: web.BaseRequest, settings: GatewaySettings) -> str | None:
    """The client's address: the peer, or what trusted proxies say the peer forwarded for."""
    peer = request.remote
    if not settings.trusted_proxies or not is_trusted(peer, settings):
        return peer
    chain: list[str] = []
    for value in request.headers.getall("Forwarded", []):
        chain.extend(match.group(1) for match in _FORWARDED_FOR.finditer(value))
    if not chain:
        for value in request.headers.getall("X-Forwarded-For", []):
            chain.extend(part.strip() for part in value.split(",") if part.strip())
    for hop in reversed(chain):
        parsed = _parse(hop)
        if parsed is None:
            break
        if not any(parsed in net for net in settings.trusted_proxies):
            return str(parsed)
    return peer
