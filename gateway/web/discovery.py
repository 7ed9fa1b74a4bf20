"""Discovery (OIDC Discovery 1.0, RFC 8414) and the JWKS. URLs come from ``issuer`` only, never
from ``Host`` or forwarded headers (SECURITY-CHECKLIST item 103)."""

from __future__ import annotations

from aiohttp import web

from gateway.keys import AUTHORITY, CONFIG
from gateway.oauth.rfc8414 import metadata

routes = web.RouteTableDef()
CACHE = {"Cache-Control": "public, max-age=300"}


@routes.get("/.well-known/openid-configuration")
@routes.get("/.well-known/oauth-authorization-server")
async def configuration(request: web.Request) -> web.Response:
    config = request.config_dict[CONFIG].current
    return web.json_response(metadata(config), headers=CACHE)


@routes.get("/oauth2/jwks")
async def jwks(request: web.Request) -> web.Response:
    return web.json_response(request.config_dict[AUTHORITY].keyring.jwks(), headers=CACHE)
