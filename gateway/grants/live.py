"""Is a token the gateway issued still usable? Signature, expiry and type locally, then its
token family (and session, and user) in the database. Each caller answers with the error of its
slot: ``invalid_token`` at userinfo, ``invalid_request`` in token exchange, inactive at
introspection."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from gateway.grants.context import Context
from gateway.store import grants as store
from gateway.store.grants import TokenStatus
from gateway.tokens.jwt import ACCESS_TOKEN_TYP, TokenInvalid


def family_of(claims: dict[str, Any]) -> UUID | None:
    """The token family (``gid``) a token belongs to."""
    value = claims.get("gid")
    try:
        return UUID(str(value)) if value is not None else None
    except ValueError:
        return None


async def live_token(
    ctx: Context, token: str, *, typ: str = ACCESS_TOKEN_TYP
) -> tuple[dict[str, Any], TokenStatus] | None:
    """The claims and family status of a usable token, or None."""
    try:
        claims = ctx.verifier().verify(token, typ=typ)
    except TokenInvalid:
        return None
    family = family_of(claims)
    status = await store.token_status(ctx.db, family) if family else None
    if status is None or not status.active:
        return None
    return claims, status
