"""Renewing a cookie session's tokens on the proxy path, and what to answer when that is not
possible: 401 with cleared cookies when the session has ended, 503 with ``Retry-After`` when the
database cannot be used (the session is kept)."""

from __future__ import annotations

from aiohttp import hdrs, web

from gateway.config.loader import Config
from gateway.errors import StoreError
from gateway.grants.context import ExternalCallError
from gateway.http.context import grant_context
from gateway.http.cookies import clear_session_cookies
from gateway.http.errors import json_error
from gateway.http.metrics import METRICS
from gateway.oauth.errors import OAuthError
from gateway.proxy.credentials import Principal, refresh_cookie
from gateway.proxy.exchange import Exchange
from gateway.proxy.refresh import Renewed

CHALLENGE = 'Bearer realm="gateway"'


def unauthorized(config: Config, description: str, *, clear: bool, error: bool) -> web.Response:
    challenge = f'{CHALLENGE}, error="invalid_token"' if error else CHALLENGE
    response = json_error(401, "unauthorized", description, {hdrs.WWW_AUTHENTICATE: challenge})
    if clear:
        clear_session_cookies(response, config.gateway)
    return response


async def renew(exchange: Exchange) -> Renewed | web.Response:
    """Renew the tokens (single-flight); the answer to send instead when that is impossible."""
    config = exchange.config
    if exchange.refresh is None:
        sealer = exchange.authority.cookie_sealer(config)
        exchange.refresh = refresh_cookie(exchange.presented, sealer, exchange.state.revocations)
    if exchange.refresh is None:
        return unauthorized(config, "the session has ended; sign in again", clear=True, error=True)
    counter = exchange.request.app[METRICS].refreshes
    try:
        result = await exchange.state.refresher.refresh(
            grant_context(exchange.request), exchange.refresh
        )
    except OAuthError:
        counter.labels("refused").inc()
        return unauthorized(config, "the session has ended; sign in again", clear=True, error=True)
    except (StoreError, ExternalCallError):
        counter.labels("unavailable").inc()
        return json_error(
            503,
            "temporarily_unavailable",
            "the session cannot be renewed right now; retry later",
            {hdrs.RETRY_AFTER: "5"},
        )
    counter.labels("renewed").inc()
    exchange.refreshed = result
    return result


async def renew_after_refusal(exchange: Exchange, refused: Principal) -> Principal | web.Response:
    """Renew the tokens after an upstream refused ``refused``. Once that worked, both tokens are
    remembered so that neither triggers another renewal; a renewal that failed (the database
    unavailable) remembers nothing, so the next 401 may try again."""
    state = exchange.state
    outcome = await renew(exchange)
    if isinstance(outcome, web.Response):
        return outcome
    now = state.clock.time()
    state.refused.add(refused.token, float(refused.claims.get("exp", now + 60)))
    state.refused.add(outcome.access_token, now + outcome.expires_in)
    return Principal(outcome.access_token, dict(outcome.access_claims), True)
