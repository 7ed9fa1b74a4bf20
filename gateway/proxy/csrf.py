"""CSRF defence of cookie-authenticated requests (SECURITY-CHECKLIST items 84, 85)."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import hdrs

from gateway.http.cors import CORS_RULE
from gateway.proxy.exchange import Exchange

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def csrf_refusal(exchange: Exchange) -> str | None:
    """Why a cookie-authenticated request must not be forwarded (None: it may).

    Any method: an ``Origin`` that is not allowed, or a cross-site fetch without one, is refused
    (a cross-site read or WebSocket handshake riding on the user's cookies). Unsafe methods also
    need a positive sign of an allowed origin: ``Origin``, else the ``Referer``'s origin, else
    ``Sec-Fetch-Site: same-origin``."""
    request = exchange.request
    rule = request.get(CORS_RULE)  # found by the CORS middleware for this very request
    origins = rule.origins if rule is not None else frozenset()
    origin = request.headers.get(hdrs.ORIGIN)
    if request.method not in UNSAFE_METHODS:
        if origin is not None:
            if origin not in origins and origin != exchange.settings.own_origin:
                return "the Origin is not allowed"
        elif request.headers.get("Sec-Fetch-Site") == "cross-site":
            return "cross-site request"
        return None
    if origin is None:
        referer = request.headers.get(hdrs.REFERER)
        origin = _origin_of(referer) if referer else None
    if origin is None:
        if request.headers.get("Sec-Fetch-Site") != "same-origin":
            return "cross-site request without Origin"
    elif origin not in origins and origin != exchange.settings.own_origin:
        return "the Origin is not allowed"
    header = exchange.route.csrf_header
    if header and not request.headers.get(header):
        return f"the {header} header is required"
    return None
