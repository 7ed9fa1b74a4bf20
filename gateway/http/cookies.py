"""The session cookies (DESIGN.md section 6): names, attributes and sealed values.

``__Secure-AT`` holds the access token, ``__Secure-RT`` the refresh token with its client and
session, ``SID`` the session id; client-credentials tokens use ``__Secure-SAT``/``__Secure-SRT``.
Every value is sealed (AES-GCM, key ids, a purpose per cookie), so a cookie is neither a readable
JWT nor usable under another name. All are ``HttpOnly; Path=/``, host-only, ``Secure`` and
``SameSite`` from ``cookies.*``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from aiohttp import web

from gateway.config.model import GatewaySettings
from gateway.grants.issue import TokenResult
from gateway.tokens.external import ExternalTokens
from gateway.tokens.seal import Sealer

ACCESS = "__Secure-AT"
REFRESH = "__Secure-RT"
SESSION = "SID"
SERVICE_ACCESS = "__Secure-SAT"
SERVICE_REFRESH = "__Secure-SRT"
# __Host-: host-only, Path=/, Secure, so a sibling subdomain cannot plant one (cookie tossing).
CSRF = "__Host-GW-CSRF"
# The token handler's sign-in in progress (/login/start to /login/callback): sealed, short-lived.
LOGIN = "__Host-GW-LOGIN"
GATEWAY_COOKIES = frozenset(
    {ACCESS, REFRESH, SESSION, SERVICE_ACCESS, SERVICE_REFRESH, CSRF, LOGIN}
)


@dataclass(frozen=True)
class RefreshCookie:
    """What ``__Secure-RT`` carries: the refresh token, its client and its session; for an
    external provider's session also the provider (``source``) and the user's claims."""

    token: str
    client_id: str
    session_id: str
    source: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)


def _set(
    response: web.StreamResponse,
    settings: GatewaySettings,
    name: str,
    value: str,
    max_age: int,
    *,
    path: str = "/",
    samesite: str | None = None,
) -> None:
    cookies = settings.cookies
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        secure=cookies.secure,
        httponly=True,
        samesite=samesite or cookies.samesite,
    )


def set_token_cookies(
    response: web.StreamResponse,
    settings: GatewaySettings,
    sealer: Sealer,
    result: TokenResult,
    client_id: str,
) -> None:
    """Cookies for a token response (and for a transparent refresh)."""
    tokens = settings.tokens
    access_name, refresh_name = (
        (SERVICE_ACCESS, SERVICE_REFRESH) if result.service else (ACCESS, REFRESH)
    )
    _set(
        response,
        settings,
        access_name,
        sealer.seal(result.access_token.encode(), purpose=f"cookie:{access_name}"),
        result.expires_in,
    )
    if result.refresh_token and result.session_id is not None:
        payload = json.dumps(
            {"rt": result.refresh_token, "cid": client_id, "sid": str(result.session_id)}
        ).encode()
        _set(
            response,
            settings,
            refresh_name,
            sealer.seal(payload, purpose=f"cookie:{refresh_name}"),
            tokens.refresh_ttl,
        )
    if result.session_id is not None and not result.service:
        set_session_cookie(response, settings, sealer, result.session_id)


MAX_COOKIE_BYTES = 4096  # what browsers keep of one cookie, name and attributes included


def oversized_cookies(response: web.StreamResponse) -> dict[str, int]:
    """Cookies set on ``response`` that a browser would drop: name -> size in bytes."""
    sizes = {name: len(m.OutputString().encode()) for name, m in response.cookies.items()}
    return {name: size for name, size in sizes.items() if size > MAX_COOKIE_BYTES}


def set_external_cookies(
    response: web.StreamResponse,
    settings: GatewaySettings,
    sealer: Sealer,
    tokens: ExternalTokens,
) -> None:
    """Cookies for an external provider's tokens (``login.provider``): the access token with
    what was verified about it, the refresh token with the provider and the user's claims, and
    the token handler's session."""
    _set(
        response,
        settings,
        ACCESS,
        sealer.seal(tokens.access_cookie(), purpose=f"cookie:{ACCESS}"),
        tokens.expires_in,
    )
    if tokens.refresh_token:
        payload = json.dumps(
            {
                "rt": tokens.refresh_token,
                "cid": tokens.client_id,
                "sid": tokens.session,
                "src": tokens.provider,
                "c": dict(tokens.claims),
            }
        ).encode()
        _set(
            response,
            settings,
            REFRESH,
            sealer.seal(payload, purpose=f"cookie:{REFRESH}"),
            tokens.session_seconds(settings.tokens.refresh_ttl),
        )
    _set(
        response,
        settings,
        SESSION,
        sealer.seal(tokens.session.encode(), purpose=f"cookie:{SESSION}"),
        tokens.session_seconds(settings.tokens.session_ttl),
    )


def set_session_cookie(
    response: web.StreamResponse, settings: GatewaySettings, sealer: Sealer, session_id: UUID
) -> None:
    _set(
        response,
        settings,
        SESSION,
        sealer.seal(str(session_id).encode(), purpose=f"cookie:{SESSION}"),
        settings.tokens.session_ttl,
    )


def clear_session_cookies(response: web.StreamResponse, settings: GatewaySettings) -> None:
    """Delete every session cookie with the attributes it was set with."""
    for name in (ACCESS, REFRESH, SESSION, SERVICE_ACCESS, SERVICE_REFRESH):
        _set(response, settings, name, "", 0)


def unseal_cookie(sealer: Sealer, name: str, value: str | None) -> str | None:
    """The plain text of the gateway cookie ``name``, or None (absent, forged, old key)."""
    plain = sealer.unseal(value, purpose=f"cookie:{name}") if value else None
    return plain.decode() if plain else None


def parse_refresh(sealer: Sealer, value: str | None) -> RefreshCookie | None:
    """The sealed ``__Secure-RT`` cookie value opened, or None."""
    plain = unseal_cookie(sealer, REFRESH, value)
    if plain is None:
        return None
    try:
        data = json.loads(plain)
        source = data.get("src")
        claims = data.get("c", {})
        return RefreshCookie(
            str(data["rt"]),
            str(data["cid"]),
            str(data["sid"]),
            str(source) if source else None,
            dict(claims) if isinstance(claims, dict) else {},
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def read_refresh(request: web.BaseRequest, sealer: Sealer) -> RefreshCookie | None:
    return parse_refresh(sealer, request.cookies.get(REFRESH))


def read_session(request: web.BaseRequest, sealer: Sealer) -> UUID | None:
    plain = unseal_cookie(sealer, SESSION, request.cookies.get(SESSION))
    if plain is None:
        return None
    try:
        return UUID(plain)
    except ValueError:
        return None


def same_secret(expected: str, presented: str) -> bool:
    """Constant-time comparison that tolerates undecodable input (it simply does not match)."""
    return hmac.compare_digest(
        expected.encode("utf-8", "surrogateescape"), presented.encode("utf-8", "surrogateescape")
    )


def set_login_cookie(
    response: web.StreamResponse, settings: GatewaySettings, sealed: str, max_age: int
) -> None:
    """The login-transaction cookie (SECURITY-CHECKLIST item 76): ``SameSite=Lax``, since it
    must come back with the top-level navigation from the authorization server, and short."""
    _set(response, settings, LOGIN, sealed, max_age, samesite="Lax")


def clear_login_cookie(response: web.StreamResponse, settings: GatewaySettings) -> None:
    _set(response, settings, LOGIN, "", 0, samesite="Lax")


def set_csrf_cookie(response: web.StreamResponse, settings: GatewaySettings, nonce: str) -> None:
    """The login-transaction cookie: ``SameSite=Lax`` so it survives the top-level navigation."""
    _set(response, settings, CSRF, nonce, 1800, path="/", samesite="Lax")
