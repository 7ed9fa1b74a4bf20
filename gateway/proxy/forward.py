"""The token handler: one proxied request (DESIGN.md section 6).

    route -> method -> path check -> (CORS: middleware and response hook) -> CSRF -> credentials
    -> refresh when the access token expired -> forward, streaming both ways -> response + cookies

Failures answer JSON: 401 with a challenge (and cleared cookies when a refresh was refused), 403
for a cross-site unsafe request, 503 with ``Retry-After`` when a refresh needs the unreachable
database (the session is kept), 502/504 when the upstream cannot answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from gateway.config.holder import PerConfig
from gateway.config.loader import Config
from gateway.config.model import Route
from gateway.errors import StoreError, UpstreamError
from gateway.grants.context import Authority
from gateway.grants.issue import TokenResult
from gateway.keys import AUTHORITY, CONFIG, REQUEST_ID
from gateway.oauth.errors import OAuthError
from gateway.proxy import headers as hop
from gateway.proxy.client import (
    Timeouts,
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamResponse,
    UpstreamTimeout,
)
from gateway.proxy.credentials import (
    NOTHING,
    Presented,
    Principal,
    VerifiedTokens,
    present,
    refresh_cookie,
    split_cookies,
)
from gateway.proxy.refresh import Refresher
from gateway.proxy.revocations import Revocations
from gateway.proxy.routes import PathRefused, RouteTable, Target
from gateway.proxy.upstreams import Upstreams
from gateway.tokens.jwt import ACCESS_TOKEN_TYP, TokenInvalid
from gateway.web.context import grant_context
from gateway.web.cookies import RefreshCookie, clear_session_cookies, set_token_cookies
from gateway.web.cors import CORS_RULE
from gateway.web.errors import json_error
from gateway.web.forwarded import client_address, forwarded_chain
from gateway.web.metrics import METRICS

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# RFC 9110 section 9.2.2: sending these twice has the effect of sending them once.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
REPLAYABLE_BODY = 1048576
SMALL_BODY = 65536
CHALLENGE = 'Bearer realm="gateway"'
TIMEOUT = "the upstream did not answer in time"
UNAVAILABLE = "the upstream is unavailable"


class ProxyConfig:
    """What the token handler derives from one configuration snapshot, once."""

    def __init__(self, config: Config) -> None:
        settings = config.gateway
        self.config = config
        self.table = RouteTable(settings.routes)
        issuer = urlsplit(settings.public_issuer())
        self.scheme = issuer.scheme
        self.host = issuer.netloc
        self.own_origin = f"{issuer.scheme}://{issuer.netloc}"
        self.audience = settings.tokens.audience or settings.public_issuer()
        self.drop = {
            route.prefix: hop.inbound_drop(route.identity_headers) for route in settings.routes
        }
        self.timeouts = {
            route.prefix: Timeouts(connect=min(route.timeout, 10.0), read=route.timeout)
            for route in settings.routes
        }


class RefusedTokens:
    """Access tokens an upstream answered 401 to, and those minted by the refresh that followed:
    neither triggers another refresh (an upstream that refuses a fresh token will refuse the
    next one too, and each refresh rotates the session's refresh token). Kept until they expire,
    bounded."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def __contains__(self, token: str) -> bool:
        until = self._until.get(token)
        return until is not None and until > time.time()

    def add(self, token: str, expires: float) -> None:
        if len(self._until) >= self.LIMIT:
            now = time.time()
            self._until = {k: v for k, v in self._until.items() if v > now}
            if len(self._until) >= self.LIMIT:
                self._until.clear()
        self._until[token] = expires


@dataclass
class ProxyState:
    """What the token handler keeps per process (resources live in the app's cleanup_ctx)."""

    upstreams: Upstreams
    refresher: Refresher
    revocations: Revocations
    cache: VerifiedTokens = field(default_factory=VerifiedTokens)
    configs: PerConfig[ProxyConfig] = field(default_factory=lambda: PerConfig(ProxyConfig))
    refused: RefusedTokens = field(default_factory=RefusedTokens)


PROXY = web.AppKey("proxy", ProxyState)


@dataclass
class Exchange:
    """One proxied request as it goes through the steps."""

    request: web.Request
    settings: ProxyConfig
    authority: Authority
    state: ProxyState
    route: Route
    presented: Presented = NOTHING
    refreshed: TokenResult | None = None
    refresh: RefreshCookie | None = None

    @property
    def config(self) -> Config:
        return self.settings.config


def _unauthorized(config: Config, description: str, *, clear: bool, error: bool) -> web.Response:
    challenge = f'{CHALLENGE}, error="invalid_token"' if error else CHALLENGE
    response = json_error(401, "unauthorized", description, {hdrs.WWW_AUTHENTICATE: challenge})
    if clear:
        clear_session_cookies(response, config.gateway)
    return response


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def _csrf_refusal(exchange: Exchange) -> str | None:
    """Why a cookie-authenticated request must not be forwarded (None: it may).

    Any method: an ``Origin`` that is not allowed, or a cross-site fetch without one, is refused
    (a cross-site read or WebSocket handshake riding on the user's cookies). Unsafe methods also
    need a positive sign of an allowed origin: ``Origin``, else the ``Referer``'s origin, else
    ``Sec-Fetch-Site: same-origin``."""
    request = exchange.request
    rule = request.get(CORS_RULE)  # found by the CORS middleware for this very request
    origins = rule.origins if rule is not None else frozenset()
    origin = request.headers.get(hdrs.ORIGIN)
    if request.method not in UNSAFE_METHODS:
        if origin is not None:
            if origin not in origins and origin != exchange.settings.own_origin:
                return "the Origin is not allowed"
        elif request.headers.get("Sec-Fetch-Site") == "cross-site":
            return "cross-site request"
        return None
    if origin is None:
        referer = request.headers.get(hdrs.REFERER)
        origin = _origin_of(referer) if referer else None
    if origin is None:
        if request.headers.get("Sec-Fetch-Site") != "same-origin":
            return "cross-site request without Origin"
    elif origin not in origins and origin != exchange.settings.own_origin:
        return "the Origin is not allowed"
    header = exchange.route.csrf_header
    if header and not request.headers.get(header):
        return f"the {header} header is required"
    return None


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
        refusal = _csrf_refusal(exchange)
        if refusal is not None:
            return json_error(403, "forbidden", refusal)
    if presented.invalid_bearer:
        return _unauthorized(config, "the bearer token is not valid", clear=False, error=True)

    principal = presented.principal
    if principal is None and presented.can_refresh:
        outcome = await _refresh(exchange)
        if isinstance(outcome, web.Response):
            return outcome
        principal = Principal(outcome.access_token, {}, True)
    if principal is None and route.auth == "required":
        stale = presented.has_cookies
        return _unauthorized(config, "sign in first", clear=stale, error=stale)

    if route.websocket and request.headers.get(hdrs.UPGRADE, "").lower() == "websocket":
        from gateway.proxy.websocket import proxy_websocket

        return await proxy_websocket(exchange, target.url, principal)
    return await _forward(exchange, target, principal)


async def _refresh(exchange: Exchange) -> TokenResult | web.Response:
    """Renew the tokens (single-flight); the answer to send instead when that is impossible."""
    config = exchange.config
    if exchange.refresh is None:
        sealer = exchange.authority.cookie_sealer(config)
        exchange.refresh = refresh_cookie(exchange.presented, sealer, exchange.state.revocations)
    if exchange.refresh is None:
        return _unauthorized(config, "the session has ended; sign in again", clear=True, error=True)
    counter = exchange.request.app[METRICS].refreshes
    try:
        result = await exchange.state.refresher.refresh(
            grant_context(exchange.request), exchange.refresh
        )
    except OAuthError:
        counter.labels("refused").inc()
        return _unauthorized(config, "the session has ended; sign in again", clear=True, error=True)
    except StoreError:
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


def identity_claims(exchange: Exchange, principal: Principal) -> dict[str, Any]:
    if principal.claims:
        return principal.claims
    # A token this request just obtained by refreshing; its claims feed the identity headers.
    verifier = exchange.authority.verifier(exchange.config)
    try:
        return verifier.verify(principal.token, typ=ACCESS_TOKEN_TYP)
    except TokenInvalid:
        return {}


def upstream_headers(exchange: Exchange, principal: Principal | None) -> list[tuple[str, str]]:
    """The headers sent upstream: the client's, filtered, then the gateway's own."""
    request, route, settings = exchange.request, exchange.route, exchange.settings
    headers = hop.inbound(request.headers, settings.drop[route.prefix])
    add = headers.append
    if principal is not None:
        add((hdrs.AUTHORIZATION, f"Bearer {principal.token}"))
        if route.identity_headers:
            claims = identity_claims(exchange, principal)
            for name, claim in route.identity_headers.items():
                if claim in claims:
                    add((name, hop.header_value(claims[claim])))
    elif route.auth == "none" and hdrs.AUTHORIZATION in request.headers:
        add((hdrs.AUTHORIZATION, request.headers[hdrs.AUTHORIZATION]))
    cookie = (
        exchange.presented.other_cookies
        if route.auth != "none"
        else split_cookies(request.headers.get(hdrs.COOKIE))[1]
    )
    if cookie:
        add((hdrs.COOKIE, cookie))
    gateway = exchange.config.gateway
    client = client_address(request, gateway) or ""
    peer = request.remote or ""
    if client != peer:  # behind trusted proxies: their chain (from the one configured header)
        add(("X-Forwarded-For", ", ".join([*forwarded_chain(request, gateway), peer])))
    else:
        add(("X-Forwarded-For", client))
    node = f'"[{client}]"' if ":" in client else client
    via = request.headers.get(hdrs.VIA)
    headers += [
        ("X-Forwarded-Proto", settings.scheme),
        ("X-Forwarded-Host", settings.host),
        ("X-Real-IP", client),
        ("Forwarded", f"for={node};proto={settings.scheme};host={settings.host}"),
        (hdrs.VIA, f"{via}, 1.1 gateway" if via else "1.1 gateway"),
        ("X-Request-Id", request[REQUEST_ID]),
    ]
    return headers


async def _body_stream(request: web.Request, limit: int) -> AsyncIterator[bytes]:
    sent = 0
    async for chunk in request.content.iter_chunked(65536):
        sent += len(chunk)
        if sent > limit:
            raise UpstreamError(413, "request_too_large", "the request body is too large")
        yield chunk


CookieSetter = Callable[[web.StreamResponse], None]


def cookie_setter(exchange: Exchange) -> CookieSetter:
    """What adds the renewed cookies to the answer (nothing when no refresh happened)."""

    def apply(response: web.StreamResponse) -> None:
        if exchange.refreshed is None or exchange.refresh is None:
            return
        config = exchange.config
        sealer = exchange.authority.cookie_sealer(config)
        client_id = exchange.refresh.client_id
        set_token_cookies(response, config.gateway, sealer, exchange.refreshed, client_id)
        response.headers[hdrs.CACHE_CONTROL] = "no-store"

    return apply


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
    body: bytes | None = None
    if may_retry and has_body:
        body = b"".join([chunk async for chunk in _body_stream(request, route.max_body)])
    timeouts = exchange.settings.timeouts[route.prefix]
    while True:
        headers = upstream_headers(exchange, principal)
        data: bytes | AsyncIterator[bytes] | None = body
        if body is None and has_body:
            data = _body_stream(request, route.max_body)
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
            outcome = await _refresh_after_refusal(exchange, principal)
            if isinstance(outcome, web.Response):
                upstream.release()
                return outcome
            if may_retry:
                upstream.release()
                principal = outcome
                continue
        try:
            return await _respond(request, upstream, cookie_setter(exchange))
        finally:
            upstream.release()


async def _refresh_after_refusal(
    exchange: Exchange, refused: Principal
) -> Principal | web.Response:
    """Renew the tokens after an upstream refused ``refused``; both tokens are remembered so
    that neither triggers another renewal."""
    state = exchange.state
    expires = float(refused.claims.get("exp", time.time() + 60))
    state.refused.add(refused.token, expires)
    outcome = await _refresh(exchange)
    if isinstance(outcome, web.Response):
        return outcome
    state.refused.add(outcome.access_token, time.time() + outcome.expires_in)
    return Principal(outcome.access_token, {}, True)


async def _respond(
    request: web.Request, upstream: UpstreamResponse, set_cookies: CookieSetter
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
                await response.write(chunk)
        except (UpstreamTimeout, UpstreamBroken, ConnectionError):
            log.warning("upstream response to %s %s was cut short", request.method, request.path)
            raise asyncio.CancelledError from None
    await response.write_eof()
    return response
