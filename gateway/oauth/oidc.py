"""OpenID Connect Core 1.0: ID token claims, hashes and UserInfo claims by scope."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.tokens.seal import b64url

PROFILE_CLAIMS = ("name", "preferred_username")
EMAIL_CLAIMS = ("email",)
# Keycloak 26's organisation scope and claim: the aliases of the user's organisations.
ORGANIZATION_SCOPE = "organization"
ORGANIZATION_CLAIM = "organization"


def half_hash(value: str) -> str:
    """``at_hash`` / ``c_hash`` for RS256/ES256: left half of SHA-256 (section 3.3.2.11)."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return b64url(digest[: len(digest) // 2])


def user_claims(user: Mapping[str, Any], scope: Iterable[str]) -> dict[str, Any]:
    """The claims of ``user`` that ``scope`` releases (section 5.4)."""
    scopes = set(scope)
    claims: dict[str, Any] = {"sub": str(user["sub"])}
    if "profile" in scopes:
        if user.get("name"):
            claims["name"] = user["name"]
        claims["preferred_username"] = user["username"]
    if "email" in scopes and user.get("email"):
        claims["email"] = user["email"]
        claims["email_verified"] = bool(user.get("email_verified", False))
    if ORGANIZATION_SCOPE in scopes and user.get(ORGANIZATION_CLAIM) is not None:
        claims[ORGANIZATION_CLAIM] = list(user[ORGANIZATION_CLAIM])
    return claims


def id_token_claims(
    *,
    issuer: str,
    client_id: str,
    user: Mapping[str, Any],
    scope: Iterable[str],
    now: int,
    ttl: int,
    auth_time: int,
    session_id: str,
    nonce: str | None = None,
    access_token: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": client_id,
        "azp": client_id,
        "exp": now + ttl,
        "iat": now,
        "auth_time": auth_time,
        "sid": session_id,
        **user_claims(user, scope),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if access_token is not None:
        claims["at_hash"] = half_hash(access_token)
    if code is not None:
        claims["c_hash"] = half_hash(code)
    return claims
