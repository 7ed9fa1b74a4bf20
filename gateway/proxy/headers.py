"""Which headers cross the gateway, both ways (RFC 9110 section 7.6.1; RFC 9700 section 4.13).

Inbound: hop-by-hop headers and every header named in ``Connection`` are removed before the gateway
adds its own; ``Authorization``, the gateway's cookies, forwarding headers and any header that
could claim an identity are never passed on from the client. Outbound: hop-by-hop headers, the
upstream's own CORS headers, ``Server`` and any ``Set-Cookie`` for the gateway's cookie names
are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from gateway.http.cookies import GATEWAY_COOKIES

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Never from the client: the gateway sets these itself or they could smuggle an identity or a
# different target past the upstream's checks.
INBOUND_DROP = frozenset(
    {
        "host",
        "authorization",
        "cookie",
        "content-length",
        "expect",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-user",
        "x-forwarded-email",
        "x-real-ip",
        "via",
        "x-request-id",
        "x-user-id",
        "x-user-name",
        "x-user",
        "x-auth-user",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-groups",
        "x-auth-request-preferred-username",
        "x-auth-request-access-token",
        "x-remote-user",
        "remote-user",
        "x-userinfo",
        "x-jwt-assertion",
        "x-id-token",
        "x-access-token",
        "client-cert",
        "client-cert-chain",
        "x-client-cert",
        "x-ssl-client-cert",
        "x-ssl-client-verify",
        "x-ssl-client-dn",
        "x-consumer-id",
        "x-consumer-username",
        "x-consumer-custom-id",
        "x-credential-identifier",
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-scopes",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)
OUTBOUND_DROP = frozenset(
    {
        "server",
        "x-powered-by",
        "content-length",
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
        "access-control-max-age",
    }
)


def _connection_listed(
    headers: Mapping[str, str] | CIMultiDictProxy[str] | CIMultiDict[str],
) -> set[str]:
    listed: set[str] = set()
    getall: Any = getattr(headers, "getall", None)
    values: Iterable[str] = getall("Connection", []) if getall else [headers.get("Connection", "")]
    for value in values:
        listed.update(token.strip().lower() for token in value.split(",") if token.strip())
    return listed


INBOUND_ALWAYS = HOP_BY_HOP | INBOUND_DROP


def inbound_drop(identity: Iterable[str] = ()) -> frozenset[str]:
    """Headers never passed on for a route: the fixed set plus its identity header names."""
    return INBOUND_ALWAYS | {name.lower() for name in identity}


def inbound(
    headers: CIMultiDictProxy[str], drop: frozenset[str] = INBOUND_ALWAYS
) -> list[tuple[str, str]]:
    """The client's headers that may go upstream, before the gateway adds its own."""
    if "Connection" in headers:
        drop = drop | _connection_listed(headers)
    # X_User_Id reaches CGI-style upstreams as X-User-Id does: compare with '_' as '-'.
    return [(k, v) for k, v in headers.items() if k.lower().replace("_", "-") not in drop]


_OUTBOUND_DROP_ALL = HOP_BY_HOP | OUTBOUND_DROP


def outbound(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """The upstream's response headers that may reach the client."""
    drop = _OUTBOUND_DROP_ALL
    if "Connection" in headers:
        drop = drop | _connection_listed(headers)
    result: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in drop:
            continue
        # RFC 6265 section 5.2: the name is what precedes the first '=', trimmed, as browsers
        # read it.
        if lowered == "set-cookie" and value.split("=", 1)[0].strip() in GATEWAY_COOKIES:
            continue
        result.add(name, value)
    return result


def header_value(value: object) -> str:
    """A claim as a header value: lists joined by spaces, no control characters."""
    text = " ".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
    return "".join(ch for ch in text if ch >= " " and ch != "\x7f")[:4096]
