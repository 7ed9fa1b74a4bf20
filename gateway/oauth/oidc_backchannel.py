"""OpenID Connect Back-Channel Logout 1.0: the logout token (section 2.4) and how it is sent
(section 2.5).

A logout token is a JWT the OP POSTs to a client's ``backchannel_logout_uri`` when a session in
which the client received tokens ends::

    POST /backchannel-logout HTTP/1.1
    Host: rp.example.com
    Content-Type: application/x-www-form-urlencoded

    logout_token=eyJhbGci...

Its header has ``typ: logout+jwt`` (section 2.4, as recommended since the 2023 errata); its
claims are ``iss``, ``aud`` (the client id), ``iat``, ``exp``, ``jti``, ``events`` with the
back-channel logout member, and ``sub`` and/or ``sid``; never ``nonce`` (section 2.4, so a
logout token can never pass for an ID token). The RP answers 200 (or 204) when it logged the
session out, 400 when the token is invalid (section 2.8).
"""

from __future__ import annotations

from typing import Any

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYP = "logout+jwt"  # noqa: S105 - a media type, not a secret
# Section 2.4 leaves the lifetime to the OP: two minutes is what Keycloak and Duende use.
LOGOUT_TOKEN_TTL = 120
DELIVERED_STATUSES = frozenset({200, 204})


def logout_token_claims(
    *, issuer: str, client_id: str, subject: str, session_id: str, now: int, jti: str
) -> dict[str, Any]:
    """The claims of a logout token for ``client_id``. ``sid`` is always present: the gateway
    advertises ``backchannel_logout_session_supported``, so a client that requires it
    (``backchannel_logout_session_required``) gets it, and one that does not may ignore it."""
    return {
        "iss": issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + LOGOUT_TOKEN_TTL,
        "jti": jti,
        "sub": subject,
        "sid": session_id,
        "events": {LOGOUT_EVENT: {}},
    }


def is_delivered(status: int) -> bool:
    """Section 2.8: 200 OK (204 is accepted too, as OPs do) means the RP logged out."""
    return status in DELIVERED_STATUSES
