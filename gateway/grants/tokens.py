"""Use cases about tokens already issued: revocation (RFC 7009), introspection (RFC 7662) and
UserInfo (OIDC Core 5.3). The protocol rules are in ``oauth/rfc7009.py``, ``oauth/rfc7662.py``
and ``oauth/oidc.py``; this module looks the tokens up and applies them."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from gateway.config.loader import Client
from gateway.grants import issue
from gateway.grants.context import Context
from gateway.grants.live import family_of, live_token
from gateway.oauth import oidc, rfc7662
from gateway.oauth.errors import (
    InsufficientScopeError,
    InvalidTokenError,
    UnauthorizedClientError,
)
from gateway.oauth.params import Params
from gateway.oauth.rfc7009 import MAX_TOKEN_LENGTH, revocation_token
from gateway.store import grants as store
from gateway.tokens.jwt import ACCESS_TOKEN_TYP, TokenInvalid


async def userinfo(ctx: Context, token: str) -> dict[str, Any]:
    """The claims UserInfo releases for a live access token (``invalid_token`` otherwise)."""
    live = await live_token(ctx, token)
    if live is None:
        raise InvalidTokenError("the access token is not valid or has been revoked")
    claims, status = live
    scope = tuple(str(claims.get("scope", "")).split())
    if status.user_id is None:
        raise InsufficientScopeError("this token does not represent a user")
    if "openid" not in scope:
        raise InsufficientScopeError("the openid scope is required")
    holder = await issue.holder(
        ctx,
        scope,
        status.user_id,
        status.username,
        status.email,
        status.name,
        email_verified=bool(status.email_verified),
    )
    return oidc.user_claims(holder.profile(), scope)


async def revoke(ctx: Context, client: Client, params: Params) -> None:
    """RFC 7009: end the token's family (refresh or access token); an unknown token is no
    error. A token of another client is ``unauthorized_client``."""
    token = revocation_token(params)
    family = await _family_of_any(ctx, token) if token is not None else None
    if family is not None:
        outcome = await store.token_revoke(
            ctx.db, family, client.client_id, "revoked by client", ctx.ip, ctx.user_agent
        )
        if outcome == "wrong_client":
            raise UnauthorizedClientError("the token was issued to another client")


async def _family_of_any(ctx: Context, token: str) -> UUID | None:
    """The family of a refresh token or an access token; hints are ignored (RFC 7009 2.1)."""
    info = await store.refresh_lookup(ctx.db, issue.secret_hash(token))
    if info is not None:
        return info.family_id
    try:
        claims = ctx.verifier().verify(token, typ=ACCESS_TOKEN_TYP, verify_exp=False)
    except TokenInvalid:
        return None
    return family_of(claims)


async def introspect(ctx: Context, client: Client, token: str) -> dict[str, Any]:
    """RFC 7662: what the resource server ``client`` may learn about ``token``."""
    if client.config.is_public:
        raise UnauthorizedClientError("introspection is for confidential clients")
    if len(token) > MAX_TOKEN_LENGTH:
        return dict(rfc7662.INACTIVE)
    info = await store.refresh_lookup(ctx.db, issue.secret_hash(token))
    if info is not None:
        # A refresh token is its client's business only.
        if not info.active or info.client_id != client.client_id:
            return dict(rfc7662.INACTIVE)
        return rfc7662.refresh_token_answer(
            client_id=info.client_id,
            scope=info.scope,
            issued=info.created_at,
            expires=info.expires_at,
            issuer=ctx.issuer,
            user_id=str(info.user_id) if info.user_id is not None else None,
            username=info.username,
        )
    live = await live_token(ctx, token)
    if live is None:
        return dict(rfc7662.INACTIVE)
    claims, status = live
    if not rfc7662.audience_allows(claims, client.config.audiences, client.client_id):
        return dict(rfc7662.INACTIVE)
    return rfc7662.access_token_answer(claims, status.username)
