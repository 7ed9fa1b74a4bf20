"""OAuth 2.0 Token Introspection (RFC 7662): the answers, as plain data.

Section 2.2: ``{"active": false}`` says nothing about why; an active token's answer carries the
members a resource server needs. A refresh token is introspectable only by the client it was
issued to; an access token by a resource server that is one of its audiences (or its client).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

INACTIVE: Mapping[str, Any] = {"active": False}
ACCESS_MEMBERS = ("scope", "client_id", "sub", "exp", "iat", "iss", "aud", "sid")


def audience_allows(
    claims: Mapping[str, Any], resource_audiences: Iterable[str], resource_client_id: str
) -> bool:
    """Whether a resource server with these audiences may learn about the access token: any
    audience in common, or the token is its own. A resource server without audiences may
    introspect every token (it is trusted to check ``aud`` itself)."""
    wanted = set(resource_audiences)
    if not wanted:
        return True
    audience = claims.get("aud")
    audiences = set(audience) if isinstance(audience, list) else {audience}
    return bool(audiences & wanted) or claims.get("client_id") == resource_client_id


def access_token_answer(claims: Mapping[str, Any], username: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"active": True, "token_type": "Bearer"}
    body.update({k: claims[k] for k in ACCESS_MEMBERS if k in claims})
    if username:
        body["username"] = username
    if "act" in claims:
        body["act"] = claims["act"]
    return body


def refresh_token_answer(
    *,
    client_id: str,
    scope: Iterable[str],
    issued: datetime,
    expires: datetime,
    issuer: str,
    user_id: str | None,
    username: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "active": True,
        "token_type": "refresh_token",
        "client_id": client_id,
        "scope": " ".join(scope),
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
        "iss": issuer,
    }
    if user_id is not None:
        body.update(sub=user_id, username=username)
    return body
