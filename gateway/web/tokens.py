"""Token endpoints other than ``/oauth2/token``: userinfo (OIDC Core 5.3), revocation (RFC 7009)
and introspection (RFC 7662)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from aiohttp import hdrs, web

from gateway.grants import issue
from gateway.grants.clients import authenticate_client
from gateway.grants.context import Context
from gateway.grants.live import family_of, live_token
from gateway.oauth import oidc
from gateway.oauth.errors import (
    BearerRequestError,
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
    UnauthorizedClientError,
)
from gateway.oauth.params import Params, parse_body
from gateway.oauth.rfc6749 import client_credentials
from gateway.store import grants as store
from gateway.tokens.jwt import ACCESS_TOKEN_TYP, TokenInvalid
from gateway.web.context import grant_context
from gateway.web.errors import NO_STORE

routes = web.RouteTableDef()
TOKEN = frozenset({"token"})


async def verify_access_token(ctx: Context, token: str) -> tuple[dict[str, Any], store.TokenStatus]:
    """A live access token, or ``invalid_token``."""
    live = await live_token(ctx, token)
    if live is None:
        raise InvalidTokenError("the access token is not valid or has been revoked")
    return live


# --- userinfo ---------------------------------------------------------------------------------


@routes.get("/oauth2/userinfo")
@routes.post("/oauth2/userinfo")
async def userinfo(request: web.Request) -> web.Response:
    ctx = grant_context(request)
    token = await _bearer(request)
    claims, status = await verify_access_token(ctx, token)
    scope = tuple(str(claims.get("scope", "")).split())
    if status.user_id is None:
        raise InsufficientScopeError("this token does not represent a user")
    if "openid" not in scope:
        raise InsufficientScopeError("the openid scope is required")
    user = issue.user_profile(status.user_id, status.username, status.email, status.name)
    return web.json_response(oidc.user_claims(user, scope), headers=NO_STORE)


async def _bearer(request: web.Request) -> str:
    """RFC 6750 section 2: the header, or a form body; never two methods at once."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    found: list[str] = []
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise InvalidTokenError("use the Bearer scheme")
        found.append(value.strip())
    if "access_token" in request.query:
        found.append(request.query["access_token"])
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        body = parse_body(request.headers.get(hdrs.CONTENT_TYPE, ""), await request.read())
        if "access_token" in body:
            found.append(body["access_token"])
    if len(found) > 1:
        raise BearerRequestError("send the access token one way only")
    if not found or (header is None and "access_token" in request.query):
        # Tokens in the URL end up in logs and histories (RFC 6750 section 2.3): not accepted.
        raise MissingTokenError("an access token is required")
    return found[0]


# --- revocation and introspection --------------------------------------------------------------


async def _client_request(request: web.Request) -> tuple[Context, Any, Params]:
    if request.query_string:
        raise InvalidRequestError("parameters must be sent in the request body, not the URL")
    params = parse_body(
        request.headers.get(hdrs.CONTENT_TYPE, ""), await request.read(), long_values=TOKEN
    )
    ctx = grant_context(request)
    client = await authenticate_client(
        ctx, client_credentials(request.headers.get(hdrs.AUTHORIZATION), params)
    )
    return ctx, client, params


@routes.post("/oauth2/revoke")
async def revoke(request: web.Request) -> web.Response:
    ctx, client, params = await _client_request(request)
    token = params.require("token")
    family = await _family_of_any(ctx, token)
    if family is not None:
        outcome = await store.token_revoke(ctx.db, family, client.client_id, "revoked by client")
        if outcome == "wrong_client":
            raise UnauthorizedClientError("the token was issued to another client")
    return web.json_response({}, headers=NO_STORE)


async def _family_of_any(ctx: Context, token: str) -> UUID | None:
    """The family of a refresh token or an access token; hints are ignored (RFC 7009 2.1)."""
    if len(token) > 8192:
        return None
    info = await store.refresh_lookup(ctx.db, issue.secret_hash(token))
    if info is not None:
        return info.family_id
    try:
        claims = ctx.verifier().verify(token, typ=ACCESS_TOKEN_TYP, verify_exp=False)
    except TokenInvalid:
        return None
    return family_of(claims)


@routes.post("/oauth2/introspect")
async def introspect(request: web.Request) -> web.Response:
    ctx, client, params = await _client_request(request)
    if client.config.is_public:
        raise UnauthorizedClientError("introspection is for confidential clients")
    token = params.require("token")
    inactive = web.json_response({"active": False}, headers=NO_STORE)
    if len(token) > 8192:
        return inactive
    info = await store.refresh_lookup(ctx.db, issue.secret_hash(token))
    if info is not None:
        # A refresh token is its client's business only.
        if not info.active or info.client_id != client.client_id:
            return inactive
        body: dict[str, Any] = {
            "active": True,
            "token_type": "refresh_token",
            "client_id": info.client_id,
            "scope": " ".join(info.scope),
            "iat": int(info.created_at.timestamp()),
            "exp": int(info.expires_at.timestamp()),
            "iss": ctx.issuer,
        }
        if info.user_id is not None:
            body.update(sub=str(info.user_id), username=info.username)
        return web.json_response(body, headers=NO_STORE)
    try:
        claims, status = await verify_access_token(ctx, token)
    except InvalidTokenError:
        return inactive
    audiences = claims.get("aud")
    audiences = set(audiences) if isinstance(audiences, list) else {audiences}
    if client.config.audiences and not (
        audiences & set(client.config.audiences) or claims.get("client_id") == client.client_id
    ):
        return inactive
    body = {
        "active": True,
        "token_type": "Bearer",
        **{
            k: claims[k]
            for k in ("scope", "client_id", "sub", "exp", "iat", "iss", "aud", "sid")
            if k in claims
        },
    }
    if status.username:
        body["username"] = status.username
    if "act" in claims:
        body["act"] = claims["act"]
    return web.json_response(body, headers=NO_STORE)
