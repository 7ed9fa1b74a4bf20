"""``POST /oauth2/token`` (RFC 6749 section 3.2): parse, run the grant, render JSON and cookies."""

from __future__ import annotations

from aiohttp import hdrs, web

from gateway.grants.token import token_request
from gateway.http.context import grant_context
from gateway.http.cookies import set_token_cookies
from gateway.http.errors import NO_STORE, read_body
from gateway.oauth.errors import InvalidRequestError
from gateway.oauth.params import parse_body

routes = web.RouteTableDef()
# Values that are only hashed and looked up: anything malformed is simply not found
# (invalid_grant), rather than a parameter error.
OPAQUE = frozenset({"code", "refresh_token"})


@routes.post("/oauth2/token")
async def token(request: web.Request) -> web.Response:
    if request.query_string:
        raise InvalidRequestError("parameters must be sent in the request body, not the URL")
    params = parse_body(
        request.headers.get(hdrs.CONTENT_TYPE, ""), await read_body(request), lenient=OPAQUE
    )
    ctx = grant_context(request)
    client, result = await token_request(
        ctx, params, request.headers.get(hdrs.AUTHORIZATION), request.headers.get(hdrs.ORIGIN)
    )
    # HS256 tokens are for APIs that share the client's secret; the token handler never takes them.
    delivery = client.config.effective_token_delivery
    response = web.json_response(
        result.body(include_tokens=delivery != "cookies"), headers=NO_STORE
    )
    if delivery != "body":
        sealer = ctx.authority.cookie_sealer(ctx.config)
        set_token_cookies(response, ctx.settings, sealer, result, client.client_id)
    return response
