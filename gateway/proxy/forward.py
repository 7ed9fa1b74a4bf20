"""The token handler: one proxied request (DESIGN.md section 6).

    route -> method -> path check -> (CORS: middleware and response hook) -> credentials -> rate
    limit -> CSRF -> refresh when the access token expired -> forward, streaming both ways ->
    response + cookies

Failures answer JSON: 401 with a challenge (and cleared cookies when a refresh was refused), 403
for a cross-site unsafe request, 429 with ``Retry-After`` over the route's rate limit, 503 with
``Retry-After`` when a refresh needs the unreachable database (the session is kept), 502/504
when the upstream cannot answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import hdrs, web

from gateway.errors import UpstreamError
from gateway.http.context import grant_context
from gateway.http.errors import json_error, upstream_error_response
from gateway.http.metrics import METRICS
from gateway.keys import AUTHORITY, CONFIG
from gateway.logs import redact
from gateway.proxy import headers as hop
from gateway.proxy.client import (
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamResponse,
    UpstreamTimeout,
)
from gateway.proxy.credentials import Principal, present
from gateway.proxy.csrf import csrf_refusal
from gateway.proxy.exchange import PROXY, CookieSetter, Exchange, cookie_setter, upstream_headers
from gateway.proxy.limits import rate_limited
from gateway.proxy.renewal import renew, renew_after_refusal, unauthorized
from gateway.proxy.routes import PathRefused, Target
from gateway.proxy.websocket import proxy_websocket

log = logging.getLogger(__name__)

# RFC 9110 section 9.2.2: sending these twice has the effect of sending them once.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
REPLAYABLE_BODY = 1048576
MIN_BODY_RATE = 1024  # bytes per second a proxied body must average, after body_timeout
SMALL_BODY = 65536
TIMEOUT = "the upstream did not answer in time"
UNAVAILABLE = "the upstream is unavailable"


async def proxy(request: web.Request) -> web.StreamResponse:
    """The handler of every proxied path; counts answers by status class."""
    status = 500
    try:
        response = await _proxy(request)
        status = response.status
        return response
    except UpstreamError as exc:
        status = exc.status
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request.app[METRICS].proxied_by_class[STATUS_CLASSES.get(status // 100, "other")].inc()


STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


async def _proxy(request: web.Request) -> web.StreamResponse:
    app = request.app
    state = app[PROXY]
    settings = state.configs.get(app[CONFIG].current)
    route = settings.table.match(request.path)
    if route is None:
        raise web.HTTPNotFound(reason="no route for this path")
    if request.method not in route.methods:
        raise web.HTTPMethodNotAllowed(request.method, list(route.methods))
    raw_path, _, raw_query = request.raw_path.partition("?")
    try:
        target = settings.table.target(route, raw_path, raw_query)
    except PathRefused as exc:
        return json_error(400, "invalid_request", str(exc))
    if request.content_length is not None and request.content_length > route.max_body:
        return json_error(413, "request_too_large", "the request body is too large")

    exchange = Exchange(request, settings, app[AUTHORITY], state, route)
    config = settings.config
    if route.auth != "none":
        exchange.presented = present(
            request,
            verifier=exchange.authority.verifier(config),
            sealer=exchange.authority.cookie_sealer(config),
            cache=state.cache,
            revocations=state.revocations,
            audience=settings.audience,
        )
    presented = exchange.presented
    if presented.has_cookies and not presented.bearer:
        refusal = csrf_refusal(exchange)
        if refusal is not None:
            return json_error(403, "forbidden", refusal)
    # After CSRF: a cross-site form refused there must not use up the victim's session budget.
    limit = settings.rate_limits[route.prefix]
    if limit is not None:
        limited = await rate_limited(exchange, limit)
        if limited is not None:
            return limited
    if presented.invalid_bearer:
        return unauthorized(config, "the bearer token is not valid", clear=False, error=True)

    principal = presented.principal
    if principal is not None and principal.from_cookie:
        state.deliveries.note(lambda: grant_context(request), principal.claims)
    if principal is None and presented.can_refresh:
        outcome = await renew(exchange)
        if isinstance(outcome, web.Response):
            return outcome
        principal = Principal(outcome.access_token, dict(outcome.access_claims), True)
    if principal is None and route.auth == "required":
        stale = presented.has_cookies
        return unauthorized(config, "sign in first", clear=stale, error=stale)

    try:
        if route.websocket and request.headers.get(hdrs.UPGRADE, "").lower() == "websocket":
            return await proxy_websocket(exchange, target.url, principal)
        return await _forward(exchange, target, principal)
    except UpstreamError as err:
        # The refresh done for this request rotated the refresh token: its cookies must reach
        # the browser even when the upstream then fails (502, 504, a body refused with 408/413).
        response = upstream_error_response(err)
        cookie_setter(exchange)(response)
        return response


async def _body_stream(request: web.Request, limit: int, pause: float) -> AsyncIterator[bytes]:
    """The client's body, at most ``limit`` bytes (413), arriving at ``MIN_BODY_RATE`` on
    average after an allowance of ``pause`` seconds (408 otherwise: a client trickling its body
    would hold a connection here and one upstream for as long as it liked)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    while True:
        deadline = started + pause + sent / MIN_BODY_RATE
        try:
            async with asyncio.timeout_at(deadline):
                chunk = await request.content.readany()
        except TimeoutError:
            raise UpstreamError(
                408, "request_timeout", "the request body did not arrive in time"
            ) from None
        if not chunk:
            return
        sent += len(chunk)
        if sent > limit:
            raise UpstreamError(413, "request_too_large", "the request body is too large")
        yield chunk


async def _forward(
    exchange: Exchange, target: Target, principal: Principal | None
) -> web.StreamResponse:
    """Send the request upstream. After an upstream 401 to a cookie session's token, refresh once
    per token (``RefusedTokens``) and send the request again only when sending it twice is
    harmless: an idempotent method (RFC 9110 section 9.2.2) with a body small enough to keep. A
    POST or PATCH gets the upstream's 401 with the renewed cookies, and the SPA decides."""
    request, route, state = exchange.request, exchange.route, exchange.state
    pool = state.upstreams.pool(route)
    length = request.content_length
    has_body = request.body_exists
    may_refresh = (
        principal is not None
        and principal.from_cookie
        and exchange.presented.can_refresh
        and exchange.refreshed is None  # a token renewed for this very request: no second try
        and principal.token not in state.refused
    )
    may_retry = (
        may_refresh
        and request.method in IDEMPOTENT_METHODS
        and (not has_body or (length is not None and length <= REPLAYABLE_BODY))
    )
    pause = exchange.config.gateway.limits.body_timeout
    body: bytes | None = None
    if may_retry and has_body:
        body = b"".join([chunk async for chunk in _body_stream(request, route.max_body, pause)])
    timeouts = exchange.settings.timeouts[route.prefix]
    while True:
        headers = upstream_headers(exchange, principal)
        data: bytes | AsyncIterator[bytes] | None = body
        if body is None and has_body:
            data = _body_stream(request, route.max_body, pause)
        try:
            upstream = await pool.request(
                request.method,
                target.path_qs,
                headers,
                data,
                content_length=length,
                timeouts=timeouts,
            )
        except UpstreamTimeout:
            raise UpstreamError(504, "gateway_timeout", TIMEOUT) from None
        except (UpstreamConnectError, UpstreamBroken):
            raise UpstreamError(502, "bad_gateway", UNAVAILABLE) from None
        if upstream.status == 401 and may_refresh:
            # The upstream refused a token that looked valid: renew it, once per token.
            assert principal is not None
            may_refresh = False
            outcome = await renew_after_refusal(exchange, principal)
            if isinstance(outcome, web.Response):
                upstream.release()
                return outcome
            if may_retry:
                upstream.release()
                principal = outcome
                continue
        try:
            return await _respond(request, upstream, cookie_setter(exchange), pause)
        finally:
            upstream.release()


async def _respond(
    request: web.Request, upstream: UpstreamResponse, set_cookies: CookieSetter, pause: float
) -> web.StreamResponse:
    headers = hop.outbound(upstream.headers)
    length_text = upstream.headers.get(hdrs.CONTENT_LENGTH)
    length = int(length_text) if length_text and length_text.isdigit() else None
    no_body = request.method == "HEAD" or upstream.status in (204, 304)
    if not no_body and length is not None and length <= SMALL_BODY:
        try:
            body = await upstream.read()
        except (UpstreamTimeout, UpstreamBroken):
            raise UpstreamError(502, "bad_gateway", UNAVAILABLE) from None
        small = web.Response(
            status=upstream.status, reason=upstream.reason or None, body=body, headers=headers
        )
        set_cookies(small)
        return small
    response = web.StreamResponse(
        status=upstream.status, reason=upstream.reason or None, headers=headers
    )
    if length is not None:
        response.content_length = length
    set_cookies(response)
    await response.prepare(request)
    if not no_body:
        try:
            async for chunk in upstream.iter_chunks():
                async with asyncio.timeout(pause):  # a client that stops reading is let go
                    await response.write(chunk)
        except (UpstreamTimeout, UpstreamBroken, ConnectionError):
            log.warning(
                "upstream response to %s %s was cut short", request.method, redact(request.path)
            )
            raise asyncio.CancelledError from None
        except TimeoutError:
            log.info("client stopped reading %s %s", request.method, redact(request.path))
            raise asyncio.CancelledError from None
    await response.write_eof()
    return response
