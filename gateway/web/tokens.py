"""Token endpoints other than ``/oauth2/token``: userinfo (OIDC Core 5.3), revocation (RFC 7009)
and introspection (RFC 7662)."""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web

from gateway.grants import tokens
from gateway.grants.clients import admit_client, authenticate_client
from gateway.grants.context import Context
from gateway.http.context import grant_context
from gateway.http.errors import NO_STORE, read_body
from gateway.oauth.errors import (
    BearerRequestError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
)
from gateway.oauth.params import Params, parse_body
from gateway.oauth.rfc6749 import client_credentials

routes = web.RouteTableDef()
TOKEN = frozenset({"token"})


# --- userinfo ---------------------------------------------------------------------------------


@routes.get("/oauth2/userinfo")
@routes.post("/oauth2/userinfo")
async def userinfo(request: web.Request) -> web.Response:
    claims = await tokens.userinfo(grant_context(request), await bearer_token(request))
    return web.json_response(claims, headers=NO_STORE)


async def bearer_token(request: web.Request) -> str:
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
        body = parse_body(request.headers.get(hdrs.CONTENT_TYPE, ""), await read_body(request))
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
        request.headers.get(hdrs.CONTENT_TYPE, ""), await read_body(request), long_values=TOKEN
    )
    ctx = grant_context(request)
    client = await authenticate_client(
        ctx, client_credentials(request.headers.get(hdrs.AUTHORIZATION), params)
    )
    await admit_client(ctx, client)
    return ctx, client, params


@routes.post("/oauth2/revoke")
async def revoke(request: web.Request) -> web.Response:
    ctx, client, params = await _client_request(request)
    await tokens.revoke(ctx, client, params)
    return web.json_response({}, headers=NO_STORE)


@routes.post("/oauth2/introspect")
async def introspect(request: web.Request) -> web.Response:
    ctx, client, params = await _client_request(request)
    answer = await tokens.introspect(ctx, client, params.require("token"))
    return web.json_response(answer, headers=NO_STORE)
