"""``/oauth2/logout``: end the session, clear the cookies (OIDC RP-Initiated Logout 1.0).

GET never changes state: it shows a confirmation form (so an ``<img src=/oauth2/logout>`` on
another site cannot sign anyone out). POST signs out: from the form (sealed flow + CSRF cookie),
or from a SPA's ``fetch`` whose ``Origin`` is allowed. ``post_logout_redirect_uri`` must be
registered for the client named by ``client_id`` (or the ``id_token_hint``'s audience).
"""

from __future__ import annotations

import json
import secrets
import time
from uuid import UUID

from aiohttp import hdrs, web

from gateway.grants.context import Context
from gateway.keys import REVOCATIONS
from gateway.oauth.errors import InvalidRequestError
from gateway.oauth.params import Params, parse_body, parse_query
from gateway.oauth.rfc6749 import build_redirect
from gateway.store import sessions as store
from gateway.tokens.jwt import ID_TOKEN_TYP, TokenInvalid
from gateway.web import pages
from gateway.web.context import grant_context
from gateway.web.cookies import (
    CSRF,
    clear_session_cookies,
    read_refresh,
    read_session,
    same_secret,
    set_csrf_cookie,
)
from gateway.web.cors import POLICY

routes = web.RouteTableDef()
LOGOUT_PURPOSE = "logout-flow"


def _redirect_target(ctx: Context, params: Params) -> str | None:
    uri = params.get("post_logout_redirect_uri")
    if uri is None:
        return None
    client_id = params.get("client_id")
    hint = params.get("id_token_hint")
    if client_id is None and hint is not None:
        try:
            claims = ctx.verifier().verify(hint, typ=ID_TOKEN_TYP, verify_exp=False)
        except TokenInvalid:
            raise InvalidRequestError("id_token_hint is not valid") from None
        client_id = str(claims.get("aud"))
    client = ctx.config.client(client_id) if client_id else None
    if client is None or uri not in client.config.post_logout_redirect_uris:
        raise InvalidRequestError("post_logout_redirect_uri is not registered for this client")
    state = params.get("state")
    return build_redirect(uri, {"state": state}, fragment=False) if state else uri


@routes.get("/oauth2/logout")
async def logout_get(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)
    try:
        params = parse_query(list(request.query.items()))
        _redirect_target(ctx, params)
    except InvalidRequestError as exc:
        return pages.error_page(request, exc.error, exc.description)
    nonce = request.cookies.get(CSRF) or secrets.token_urlsafe(24)
    flow = {"p": list(params.items()), "c": nonce, "e": int(time.time()) + 900}
    sealed = ctx.authority.cookie_sealer(ctx.config).seal(
        json.dumps(flow).encode(), purpose=LOGOUT_PURPOSE
    )
    response = pages.logout_page(request, action="/oauth2/logout", hidden={"flow": sealed})
    set_csrf_cookie(response, ctx.settings, nonce)
    return response


@routes.post("/oauth2/logout")
async def logout_post(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)
    body = await request.read()
    params = parse_body(request.headers.get(hdrs.CONTENT_TYPE, ""), body) if body else Params([])
    if "flow" in params:
        params = _open_logout_flow(request, ctx, params["flow"])
    elif not _allowed_origin(request, ctx):
        raise web.HTTPForbidden(reason="sign-out must come from an allowed origin")
    target = _redirect_target(ctx, params)
    sealer = ctx.authority.cookie_sealer(ctx.config)
    session_id = read_session(request, sealer)
    refresh = read_refresh(request, sealer)
    for sid in {str(session_id) if session_id else None, refresh.session_id if refresh else None}:
        if sid:
            try:
                await store.session_revoke(ctx.db, UUID(sid), "logout")
                # This process refuses the session at once; others learn it through NOTIFY.
                request.app[REVOCATIONS].add("s", sid)
            except ValueError:
                continue
    response: web.StreamResponse
    if target is not None:
        response = web.Response(status=303, headers={hdrs.LOCATION: target})
    elif "flow" in params or request.content_type == "application/x-www-form-urlencoded":
        response = pages.message_page(request, "signed_out")
    else:
        response = web.json_response(
            {"status": "signed_out"}, headers={"Cache-Control": "no-store"}
        )
    clear_session_cookies(response, ctx.settings)
    return response


def _allowed_origin(request: web.Request, ctx: Context) -> bool:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return False
    if origin == ctx.issuer:
        return True
    policy = request.config_dict[POLICY].get(ctx.config)
    return policy.is_allowed(origin, request.path)


def _open_logout_flow(request: web.Request, ctx: Context, sealed: str) -> Params:
    plain = ctx.authority.cookie_sealer(ctx.config).unseal(sealed, purpose=LOGOUT_PURPOSE)
    if plain is None:
        raise web.HTTPForbidden(reason="missing or forged form")
    flow = json.loads(plain)
    cookie = request.cookies.get(CSRF, "")
    if not same_secret(str(flow["c"]), cookie):
        raise web.HTTPForbidden(reason="the form does not belong to this browser")
    if int(flow["e"]) < time.time():
        raise web.HTTPForbidden(reason="the form has expired")
    return parse_query([(str(k), str(v)) for k, v in flow["p"]])
