"""``/login/start`` and ``/login/callback``: the token handler signs a browser in by running the
authorization code flow itself (``grants/bff.py``); the browser only navigates.

``GET /login/start?return_to=...`` answers 303 to the authorization endpoint and sets the sealed
login-transaction cookie. ``GET /login/callback`` checks the answer against that cookie, redeems
the code, sets ``__Secure-AT``, ``__Secure-RT`` and ``SID``, clears the transaction and answers
303 to ``return_to``. A callback that cannot sign anyone in gets an HTML page that says why and
offers to start again; the session cookies are never touched then. An error the authorization
server sent back (the user denied, ``prompt=none`` found nobody) goes to the application as
``login_error=<code>`` on ``return_to``, with no session.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import hdrs, web

from gateway.grants import bff
from gateway.grants.context import Context
from gateway.grants.federation import ExternalSignInFailed
from gateway.http import pages
from gateway.http.context import grant_context
from gateway.http.cookies import (
    LOGIN,
    clear_login_cookie,
    oversized_cookies,
    set_external_cookies,
    set_login_cookie,
    set_token_cookies,
)
from gateway.http.errors import NO_STORE
from gateway.oauth.errors import OAuthError
from gateway.oauth.params import parse_query
from gateway.tokens.external import ExternalTokens

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
OPAQUE = frozenset({"code", "state"})  # compared or looked up as they are, never echoed


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={hdrs.LOCATION: location, **NO_STORE})


def _with_error(url: str, error: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=query + urlencode({"login_error": error})))


@routes.get("/login/start")
async def login_start(request: web.Request) -> web.Response:
    ctx = grant_context(request)
    try:
        url, transaction = await bff.begin(ctx, parse_query(list(request.query.items())))
    except OAuthError as exc:
        return pages.error_page(request, exc.error, exc.description)
    except ExternalSignInFailed as exc:
        log.warning("sign-in through the token handler cannot start: %s", exc)
        return pages.login_failed_page(request, str(exc), restart=request.path_qs, status=502)
    login = ctx.settings.login
    assert login is not None
    response = _see_other(url)
    sealer = ctx.authority.cookie_sealer(ctx.config)
    set_login_cookie(response, ctx.settings, transaction.seal(sealer), login.transaction_ttl)
    return response


@routes.get("/login/callback")
async def login_callback(request: web.Request) -> web.Response:
    ctx = grant_context(request)
    sealer = ctx.authority.cookie_sealer(ctx.config)
    transaction = bff.Transaction.unseal(sealer, request.cookies.get(LOGIN))
    try:
        params = parse_query(list(request.query.items()), lenient=OPAQUE)
        callback = await bff.check_callback(ctx, transaction, params)
    except bff.LoginRefused as refused:
        response = pages.refused_page(request, refused.reason, restart=refused.restart, status=400)
        if refused.reason == "other_sign_in":
            # Not this transaction's answer (another tab's sign-in, or someone else's): the
            # transaction stays for the answer it is waiting for; its state is still secret.
            return response
    except OAuthError:
        response = pages.refused_page(request, "forged", status=400)
    else:
        response = await _complete(request, ctx, callback)
    clear_login_cookie(response, ctx.settings)
    return response


async def _complete(request: web.Request, ctx: Context, callback: bff.Callback) -> web.Response:
    transaction = callback.transaction
    if callback.error is not None:
        return _see_other(_with_error(transaction.return_to, callback.error))
    try:
        result = await bff.redeem(ctx, callback)
    except (OAuthError, ExternalSignInFailed) as exc:
        reason = exc.description if isinstance(exc, OAuthError) else str(exc)
        log.warning("sign-in through the token handler failed: %s", reason)
        return pages.login_failed_page(request, reason, restart=bff.restart_url(ctx, transaction))
    response = _see_other(transaction.return_to)
    sealer = ctx.authority.cookie_sealer(ctx.config)
    if isinstance(result, ExternalTokens):
        set_external_cookies(response, ctx.settings, sealer, result)
        too_big = oversized_cookies(response)
        if too_big:
            # A browser would drop it and the session would not work: say so now (the
            # provider can issue smaller tokens: fewer claims, or opaque access tokens).
            reason = "the provider's tokens are too large for browser cookies ({})".format(
                ", ".join(f"{name} {size} bytes" for name, size in too_big.items())
            )
            log.warning("sign-in through the token handler failed: %s", reason)
            await bff.end_session(ctx, result.session)
            return pages.login_failed_page(
                request, reason, restart=bff.restart_url(ctx, transaction)
            )
    else:
        set_token_cookies(response, ctx.settings, sealer, result, transaction.client)
    return response
