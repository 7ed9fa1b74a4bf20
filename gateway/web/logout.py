"""``/oauth2/logout``: end the session, clear the cookies (OIDC RP-Initiated Logout 1.0).

GET never changes state: it shows a confirmation form (so an ``<img src=/oauth2/logout>`` on
another site cannot sign anyone out). POST signs out: from the form (sealed flow bound to this
browser, ``web/forms.py``), or from a SPA's ``fetch`` whose ``Origin`` is allowed. A relying
party's own form POST (RP-Initiated Logout allows POST) is shown the confirmation form, as a GET
is. ``post_logout_redirect_uri`` must be registered for the client named by ``client_id`` (or the
``id_token_hint``'s audience).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import hdrs, web

from gateway.grants import bff, sessions
from gateway.grants.context import Context
from gateway.http import pages
from gateway.http.context import grant_context
from gateway.http.cookies import clear_session_cookies, read_refresh, read_session
from gateway.http.cors import POLICY
from gateway.http.errors import read_body
from gateway.keys import REVOCATIONS
from gateway.oauth.errors import InvalidRequestError
from gateway.oauth.params import Params, parse_body, parse_query
from gateway.oauth.rfc6749 import build_redirect
from gateway.tokens.jwt import ID_TOKEN_TYP, TokenInvalid
from gateway.web.forms import FormKind, FormRefused, refusal_page

routes = web.RouteTableDef()
LOGOUT_PATH = "/oauth2/logout"
LOGOUT_FORM = FormKind("logout-flow", 900)
FORM_TYPE = "application/x-www-form-urlencoded"


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


@routes.get(LOGOUT_PATH)
async def logout_get(request: web.Request) -> web.StreamResponse:
    try:
        params = parse_query(list(request.query.items()))
    except InvalidRequestError as exc:
        return pages.error_page(request, exc.error, exc.description)
    return _confirmation(request, grant_context(request), params)


def _confirmation(request: web.Request, ctx: Context, params: Params) -> web.Response:
    """The confirmation form, its parameters sealed for this browser."""
    try:
        _redirect_target(ctx, params)
    except InvalidRequestError as exc:
        return pages.error_page(request, exc.error, exc.description)
    flow = LOGOUT_FORM.seal(request, ctx, {"p": list(params.items())})
    response = pages.logout_page(request, action=LOGOUT_PATH, hidden={"flow": flow.value})
    flow.bind(response, ctx.settings)
    return response


def _restart_url(fields: Mapping[str, Any]) -> str:
    return LOGOUT_PATH + "?" + urlencode([(str(k), str(v)) for k, v in fields["p"]])


@routes.post(LOGOUT_PATH)
async def logout_post(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)
    body = await read_body(request)
    params = parse_body(request.headers.get(hdrs.CONTENT_TYPE, ""), body) if body else Params([])
    from_page = "flow" in params or request.content_type == FORM_TYPE
    if "flow" in params:
        try:
            fields = LOGOUT_FORM.open(request, ctx, params["flow"])
        except FormRefused as refused:
            return refusal_page(request, refused, _restart_url)
        params = parse_query([(str(k), str(v)) for k, v in fields["p"]])
    elif not _allowed_origin(request, ctx):
        if request.content_type == FORM_TYPE:  # a relying party's form: ask the person
            return _confirmation(request, ctx, params)
        raise web.HTTPForbidden(reason="sign-out must come from an allowed origin")
    target = _redirect_target(ctx, params)
    sealer = ctx.authority.cookie_sealer(ctx.config)
    session_id = read_session(request, sealer)
    refresh = read_refresh(request, sealer)
    if refresh is not None and refresh.source is not None:
        await bff.end_external(ctx, refresh.token, refresh.source)
    named = {str(session_id) if session_id else None, refresh.session_id if refresh else None}
    for sid in await sessions.end_sessions(ctx, (s for s in named if s), "logout"):
        # This process refuses the session at once; others learn it through NOTIFY.
        request.app[REVOCATIONS].add("s", sid)
    response: web.StreamResponse
    if target is not None:
        response = web.Response(status=303, headers={hdrs.LOCATION: target})
    elif from_page:
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
    if origin == ctx.own_origin:
        return True
    policy = request.config_dict[POLICY].get(ctx.config)
    return policy.is_allowed(origin, request.path)
