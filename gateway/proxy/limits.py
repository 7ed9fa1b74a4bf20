"""The token handler's rate limit (README, "Rate limits"): a bucket per route and session.

The session is the access token's ``sid`` (from the cookie or a Bearer header), else the one the
``SID`` cookie names (an expired access token about to be refreshed); a request with neither, and
a cookie request that another site's page made (``Sec-Fetch-Site: cross-site``: it must not use
up the victim's budget), is counted per client address (``trusted_proxies`` decide which; an
IPv6 client per /64, which one host usually holds whole). Session ids are hashed before they
become keys.
"""

from __future__ import annotations

import hashlib

from aiohttp import hdrs, web

from gateway.config.model import RateLimit
from gateway.http.cookies import SESSION, unseal_cookie
from gateway.http.errors import json_error
from gateway.http.forwarded import client_address
from gateway.proxy.exchange import Exchange
from gateway.ratelimit.limiter import address_key


def bucket_key(exchange: Exchange) -> str:
    """Which bucket the request takes from: ``route:<prefix>:sid:<hash>`` or ``...:ip:<addr>``."""
    presented = exchange.presented
    session: object = None
    if presented.has_cookies and not presented.bearer and _cross_site(exchange.request):
        # Another site's page making the browser send the victim's cookies (an <img>, a form):
        # charged to the requesting address, never to the victim's session.
        pass
    elif presented.principal is not None:
        session = presented.principal.claims.get("sid")
    elif presented.sealed_session:
        session = presented.session or unseal_cookie(
            exchange.authority.cookie_sealer(exchange.config), SESSION, presented.sealed_session
        )
    prefix = exchange.route.prefix
    if isinstance(session, str) and session:
        digest = hashlib.blake2b(session.encode(), digest_size=12).hexdigest()
        return f"route:{prefix}:sid:{digest}"
    return f"route:{prefix}:ip:{_address(exchange)}"


def _cross_site(request: web.Request) -> bool:
    """Fetch metadata says another site made the request (browsers send it on every request)."""
    return request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site"


def _address(exchange: Exchange) -> str:
    return address_key(client_address(exchange.request, exchange.config.gateway))


async def rate_limited(exchange: Exchange, limit: RateLimit) -> web.Response | None:
    """None when the request may go on; else the 429 answer with ``Retry-After`` (RFC 6585
    section 4, RFC 9110 section 10.2.3: whole seconds). CORS headers are added as on every
    answer, so a SPA can read the status and, exposed, ``Retry-After``."""
    state = exchange.state
    wait = await exchange.authority.limiter.take(
        "route", bucket_key(exchange), limit, state.clock.time()
    )
    if not wait:
        return None
    return json_error(
        429,
        "too_many_requests",
        "too many requests; retry later",
        {hdrs.RETRY_AFTER: str(wait)},
    )
