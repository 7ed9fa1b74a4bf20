"""``GET /login/user``: who is signed in, for the SPA (Duende BFF's ``/bff/user``).

The same cookie checks as a proxied request (CSRF, the access cookie bound to ``SID``, a
transparent refresh when the access token has expired, revocations), then the user's claims and
the session's times as JSON, never a token. 401 JSON when nobody is signed in.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from aiohttp import web

from gateway.config.loader import Config
from gateway.config.model import Route
from gateway.grants import sessions
from gateway.http.context import grant_context
from gateway.http.errors import NO_STORE, json_error
from gateway.keys import AUTHORITY, CONFIG
from gateway.proxy.credentials import Principal, present
from gateway.proxy.csrf import csrf_refusal
from gateway.proxy.exchange import PROXY, Exchange, cookie_setter
from gateway.proxy.renewal import renew, unauthorized

# /login/user goes through the token handler's steps like a route that forwards nowhere.
USER_ROUTE = Route(prefix="/login/user/", upstream="http://127.0.0.1:9", auth="required")


async def login_user(request: web.Request) -> web.Response:
    app = request.app
    state = app[PROXY]
    settings = state.configs.get(app[CONFIG].current)
    config = settings.config
    if config.gateway.login is None:
        return json_error(404, "not_found", "sign-in through the token handler is not configured")
    exchange = Exchange(request, settings, app[AUTHORITY], state, USER_ROUTE)
    exchange.presented = present(
        request,
        verifier=exchange.authority.verifier(config),
        sealer=exchange.authority.cookie_sealer(config),
        cache=state.cache,
        revocations=state.revocations,
        audience=settings.audience,
    )
    presented = exchange.presented
    if presented.bearer:
        return json_error(400, "invalid_request", "this endpoint reads the session cookies")
    if presented.has_cookies:
        refusal = csrf_refusal(exchange)
        if refusal is not None:
            return json_error(403, "forbidden", refusal)
    principal = presented.principal
    if principal is None and presented.can_refresh:
        outcome = await renew(exchange)
        if isinstance(outcome, web.Response):
            return outcome
        principal = Principal(outcome.access_token, dict(outcome.access_claims), True)
    if principal is None:
        stale = presented.has_cookies
        return unauthorized(config, "not signed in", clear=stale, error=stale)
    claims = principal.claims
    if claims.get("src") is not None:  # an external provider's session: what its ID token said
        response = web.json_response(_external_user(claims, config), headers=NO_STORE)
        cookie_setter(exchange)(response)
        return response
    session = None
    sid = claims.get("sid")
    if isinstance(sid, str):
        try:
            session = await sessions.current_session(grant_context(request), UUID(sid))
        except ValueError:
            session = None
    if session is None:
        return unauthorized(config, "the session has ended; sign in again", clear=True, error=True)
    body = {
        "sub": claims.get("sub"),
        "preferred_username": session.username,
        "name": session.name,
        "email": session.email,
        "scope": str(claims.get("scope", "")).split(),
        "client_id": claims.get("client_id"),
        "auth_time": int(session.auth_time.timestamp()),
        "session_expires_at": int(session.expires_at.timestamp()),
        "access_token_expires_at": claims.get("exp"),
    }
    response = web.json_response(body, headers=NO_STORE)
    cookie_setter(exchange)(response)
    return response


def _external_user(claims: dict[str, Any], config: Config) -> dict[str, Any]:
    auth_time = claims.get("auth_time")
    return {
        "sub": claims.get("sub"),
        "preferred_username": claims.get("preferred_username"),
        "name": claims.get("name"),
        "email": claims.get("email"),
        "scope": str(claims.get("scope", "")).split(),
        "client_id": claims.get("client_id"),
        "issuer": claims.get("iss"),
        "auth_time": auth_time if isinstance(auth_time, int) else None,
        "session_expires_at": None,  # the provider's to decide
        "access_token_expires_at": claims.get("exp"),
    }
