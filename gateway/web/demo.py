"""The demo (``"demo": true``): a SPA at ``/`` and a small upstream API at ``/demo-api/``.

The SPA signs in through ``POST /oauth2/token`` (public client ``spa``, tokens only in cookies) and
calls ``/api/whoami`` through the token handler. The API stands for a legacy backend: it trusts
nothing but the Bearer token, which it verifies against the gateway's published keys, and shows
which token it got, so a refresh is visible as a new token id.
"""

from __future__ import annotations

import logging
from importlib import resources

from aiohttp import hdrs, web

from gateway.keys import AUTHORITY, CONFIG
from gateway.tokens.jwt import ACCESS_TOKEN_TYP, TokenInvalid

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
STATIC = resources.files("gateway.web") / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
TYPES = {"demo.html": "text/html", "demo.js": "text/javascript", "demo.css": "text/css"}


def _static(name: str) -> web.Response:
    return web.Response(
        body=(STATIC / name).read_bytes(),
        content_type=TYPES[name],
        charset="utf-8",
        headers=PAGE_HEADERS,
    )


@routes.get("/")
async def page(request: web.Request) -> web.Response:
    return _static("demo.html")


@routes.get("/demo/{name:demo\\.(js|css)}")
async def asset(request: web.Request) -> web.Response:
    return _static(request.match_info["name"])


@routes.get("/demo-api/{tail:.*}")
async def api(request: web.Request) -> web.Response:
    """The demo upstream: answers only with a valid Bearer token from the gateway."""
    scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    config = request.config_dict[CONFIG].current
    try:
        if scheme.lower() != "bearer":
            raise TokenInvalid("no bearer token")
        claims = request.config_dict[AUTHORITY].verifier(config).verify(token, typ=ACCESS_TOKEN_TYP)
    except TokenInvalid:
        return web.json_response(
            {"error": "unauthorized"},
            status=401,
            headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="demo-api"'},
        )
    return web.json_response(
        {
            "user": claims.get("preferred_username") or claims.get("sub"),
            "path": "/" + request.match_info["tail"],
            "scope": claims.get("scope"),
            "token": {k: claims.get(k) for k in ("jti", "iat", "exp", "client_id")},
            "identity_headers": {
                name: request.headers[name]
                for name in ("X-User-Id", "X-User-Name", "X-Scopes")
                if name in request.headers
            },
        }
    )
