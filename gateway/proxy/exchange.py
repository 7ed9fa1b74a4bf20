"""One proxied request as it goes through the token handler's steps (``Exchange``), what the
handler keeps per process (``ProxyState``) and per configuration (``ProxyConfig``), and the
headers an upstream gets."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from gateway.clock import Clock, Now
from gateway.config.holder import PerConfig
from gateway.config.loader import Config
from gateway.config.model import RateLimit, Route, effective_rate_limit
from gateway.grants.context import Authority
from gateway.grants.revoked import Revocations
from gateway.http.cookies import RefreshCookie, set_external_cookies, set_token_cookies
from gateway.http.forwarded import client_address, forwarded_chain
from gateway.keys import REQUEST_ID
from gateway.proxy import headers as hop
from gateway.proxy.client import Timeouts
from gateway.proxy.credentials import NOTHING, Presented, Principal, VerifiedTokens, split_cookies
from gateway.proxy.expiring import Expiring
from gateway.proxy.refresh import Deliveries, Refresher, Renewed
from gateway.proxy.routes import RouteTable
from gateway.proxy.upstreams import Upstreams
from gateway.tokens.external import ExternalTokens


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
        self.rate_limits: dict[str, RateLimit | None] = {
            route.prefix: effective_rate_limit(route.rate_limit, settings.rate_limits.route_default)
            for route in settings.routes
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

    def __init__(self, now: Now = time.time) -> None:
        self._now = now
        self._until: Expiring[str, bool] = Expiring(self.LIMIT)

    def __contains__(self, token: str) -> bool:
        return self._until.get(token, self._now()) is not None

    def add(self, token: str, expires: float) -> None:
        self._until.put(token, True, expires, self._now())


@dataclass
class ProxyState:
    """What the token handler keeps per process (resources live in the app's cleanup_ctx)."""

    upstreams: Upstreams
    refresher: Refresher
    revocations: Revocations
    clock: Clock = field(default_factory=Clock)
    configs: PerConfig[ProxyConfig] = field(default_factory=lambda: PerConfig(ProxyConfig))
    deliveries: Deliveries = field(default_factory=Deliveries)
    cache: VerifiedTokens = field(init=False)
    refused: RefusedTokens = field(init=False)

    def __post_init__(self) -> None:
        self.cache = VerifiedTokens(self.clock.time)
        self.refused = RefusedTokens(self.clock.time)


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
    refreshed: Renewed | None = None
    refresh: RefreshCookie | None = None

    @property
    def config(self) -> Config:
        return self.settings.config


def upstream_headers(exchange: Exchange, principal: Principal | None) -> list[tuple[str, str]]:
    """The headers sent upstream: the client's, filtered, then the gateway's own."""
    request, route, settings = exchange.request, exchange.route, exchange.settings
    headers = hop.inbound(request.headers, settings.drop[route.prefix])
    add = headers.append
    if principal is not None:
        add((hdrs.AUTHORIZATION, f"Bearer {principal.token}"))
        if route.identity_headers:
            claims = principal.claims
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


CookieSetter = Callable[[web.StreamResponse], None]


def cookie_setter(exchange: Exchange) -> CookieSetter:
    """What adds the renewed cookies to the answer (nothing when no refresh happened)."""

    def apply(response: web.StreamResponse) -> None:
        if exchange.refreshed is None or exchange.refresh is None:
            return
        config = exchange.config
        sealer = exchange.authority.cookie_sealer(config)
        client_id = exchange.refresh.client_id
        refreshed = exchange.refreshed
        if isinstance(refreshed, ExternalTokens):
            set_external_cookies(response, config.gateway, sealer, refreshed)
        else:
            set_token_cookies(response, config.gateway, sealer, refreshed, client_id)
        response.headers[hdrs.CACHE_CONTROL] = "no-store"

    return apply
