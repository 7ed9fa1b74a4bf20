"""Token exchange (RFC 8693): an access token for the subject of a token the gateway issued.

The new token belongs to the subject's token family, so revoking the family (logout, replay)
revokes it too; it carries ``act`` when an actor token is given (section 4.1), and its scope and
audience can only narrow what the subject had (``invalid_scope``, ``invalid_target``).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from gateway.config.loader import Client
from gateway.grants import issue
from gateway.grants.context import Context
from gateway.grants.issue import TokenResult
from gateway.grants.live import family_of, live_token
from gateway.oauth import rfc8693
from gateway.oauth.errors import InvalidRequestError, InvalidScopeError, InvalidTargetError
from gateway.oauth.params import Params
from gateway.oauth.rfc6749 import parse_scope
from gateway.store import grants as store
from gateway.tokens.jwt import ACCESS_TOKEN_TYP, ID_TOKEN_TYP

UNACCEPTABLE = "the subject_token is not valid"


async def token_exchange_grant(ctx: Context, client: Client, params: Params) -> TokenResult:
    request = rfc8693.validate_exchange(params)
    subject, family_id, subject_scope = await _subject(ctx, client, request)
    # Never more than the subject had, nor more than this client may ever get.
    scope = tuple(s for s in subject_scope if s in client.config.scopes)
    actor: dict[str, Any] | None = None
    if request.actor_token is not None:
        actor = await _actor(ctx, request.actor_token)
    requested = parse_scope(params.get("scope"))
    if requested is not None:
        if any(s not in scope for s in requested):
            raise InvalidScopeError("the requested scope exceeds what this exchange can grant")
        scope = requested
    audience: tuple[str, ...] = ()
    if request.audience is not None:
        if request.audience not in client.config.audiences:
            raise InvalidTargetError("this client may not obtain tokens for that audience")
        audience = (request.audience,)
    ttl = issue.access_ttl(ctx, client, service=False)
    access = issue.mint_access_token(
        ctx,
        client,
        subject=subject["sub"],
        scope=scope,
        session_id=subject.get("sid"),
        family_id=family_id,
        ttl=ttl,
        username=subject.get("username"),
        audience=audience,
        actor=actor,
    )
    return TokenResult(
        access_token=access,
        expires_in=ttl,
        scope=scope,
        session_id=None,
        family_id=family_id,
        requested_scope=requested,
        extra={"issued_token_type": request.requested_token_type},
    )


async def _subject(
    ctx: Context, client: Client, request: rfc8693.ExchangeRequest
) -> tuple[dict[str, Any], UUID, tuple[str, ...]]:
    """The subject's identity, its token family and its scope; ``invalid_request`` otherwise.

    A refresh token or an ID token counts only for the client it was issued to (an ID token
    leaked from a URL is not an API token for someone else); an access token, meant for APIs,
    may be exchanged by any client allowed the grant (delegation)."""
    if request.subject_token_type == rfc8693.REFRESH_TOKEN:
        info = await store.refresh_lookup(ctx.db, issue.secret_hash(request.subject_token))
        if info is None or not info.active or info.user_id is None:
            raise InvalidRequestError(UNACCEPTABLE)
        if info.client_id != client.client_id:
            raise InvalidRequestError(UNACCEPTABLE)
        return (
            {"sub": str(info.user_id), "username": info.username},
            info.family_id,
            info.scope,
        )
    typ = ID_TOKEN_TYP if request.subject_token_type == rfc8693.ID_TOKEN else ACCESS_TOKEN_TYP
    live = await live_token(ctx, request.subject_token, typ=typ)
    family = family_of(live[0]) if live else None
    if live is None or family is None or live[1].user_id is None:
        raise InvalidRequestError(UNACCEPTABLE)
    claims, status = live
    if typ == ID_TOKEN_TYP and claims.get("aud") != client.client_id:
        raise InvalidRequestError(UNACCEPTABLE)
    scope = tuple(str(claims.get("scope", "")).split()) if typ == ACCESS_TOKEN_TYP else status.scope
    subject: dict[str, Any] = {
        "sub": str(status.user_id),
        "username": status.username,
        "sid": status.session_id,
    }
    return subject, family, scope


async def _actor(ctx: Context, token: str) -> dict[str, Any]:
    live = await live_token(ctx, token)
    if live is None:
        raise InvalidRequestError("the actor_token is not valid")
    claims = live[0]
    actor = {"sub": str(claims["sub"])}
    if isinstance(claims.get("client_id"), str):
        actor["client_id"] = claims["client_id"]
    return actor
