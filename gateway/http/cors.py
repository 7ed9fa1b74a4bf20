"""CORS (WHATWG Fetch) for every path a browser app calls, in one middleware.

* Credentialed paths (the token endpoint, userinfo, logout, revoke, introspect and every proxied
  route): the ``Origin`` must be exactly one of the allowed origins (the union of the clients'
  ``javascript_origins`` plus the route's ``origins``); it is reflected with
  ``Access-Control-Allow-Credentials: true``. Unknown origins, ``null`` and look-alikes get no CORS
  headers at all. ``Vary: Origin`` is on every answer, errors included.
* ``/login/user``: likewise, but only for the origins of the token handler's own client
  (``login``), as ``return_to`` is.
* Public metadata (discovery, JWKS): ``Access-Control-Allow-Origin: *`` without credentials.
* Everything else, ``/oauth2/authorize`` in particular (RFC 9700 section 2.6): no CORS.

Preflights are answered here and never reach a handler or an upstream.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from gateway.config.holder import PerConfig
from gateway.config.loader import Config
from gateway.config.model import path_under_prefix
from gateway.http.metrics import METRICS
from gateway.keys import CONFIG

log = logging.getLogger(__name__)

CREDENTIALED_PATHS = frozenset(
    {
        "/oauth2/token",
        "/oauth2/userinfo",
        "/oauth2/logout",
        "/oauth2/revoke",
        "/oauth2/introspect",
    }
)
# Who is signed in: only for the token handler's own applications (the login client's
# javascript_origins), not for every client's, whose pages have no business reading it.
LOGIN_USER_PATH = "/login/user"
PUBLIC_PATHS = frozenset(
    {
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/oauth2/jwks",
    }
)
ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = frozenset(
    {
        "accept",
        "accept-language",
        "authorization",
        "cache-control",
        "content-language",
        "content-type",
        "x-csrf-token",
        "x-requested-with",
        "x-request-id",
    }
)
MAX_AGE = "600"
REJECTION_LOG_INTERVAL = 10.0
MAX_TRACKED_ORIGINS = 1000


@dataclass(frozen=True)
class Rule:
    origins: frozenset[str]
    methods: tuple[str, ...]
    headers: frozenset[str]
    credentials: bool


class CorsPolicy:
    """The CORS rules of one configuration snapshot."""

    def __init__(self, config: Config) -> None:
        issuer = urlsplit(config.gateway.public_issuer())
        # The gateway's own pages (the demo) call it from its origin: no CORS, and no rejection.
        self.own_origin = f"{issuer.scheme}://{issuer.netloc}"
        login_app = config.login_app()  # an external provider's app names its SPAs too
        self.client_origins = frozenset(
            origin
            for client in config.clients.values()
            for origin in client.config.javascript_origins
        ) | frozenset(login_app.javascript_origins if login_app else ())
        self._oauth = Rule(self.client_origins, ("GET", "POST"), ALLOWED_HEADERS, True)
        self._login_user = Rule(
            frozenset(login_app.javascript_origins if login_app else ()),
            ("GET",),
            ALLOWED_HEADERS,
            True,
        )
        self._public = Rule(frozenset(), ("GET",), frozenset(), False)
        self._routes = [
            (
                route.prefix,
                Rule(
                    self.client_origins | frozenset(route.origins),
                    route.methods,
                    ALLOWED_HEADERS
                    | ({route.csrf_header.lower()} if route.csrf_header else frozenset()),
                    True,
                ),
            )
            for route in sorted(config.gateway.routes, key=lambda r: -len(r.prefix))
        ]

    def rule_for(self, path: str) -> Rule | None:
        if path in CREDENTIALED_PATHS:
            return self._oauth
        if path == LOGIN_USER_PATH:
            return self._login_user
        if path in PUBLIC_PATHS:
            return self._public
        for prefix, rule in self._routes:
            if path_under_prefix(path, prefix):
                return rule
        return None

    def is_allowed(self, origin: str | None, path: str) -> bool:
        rule = self.rule_for(path)
        return rule is not None and rule.credentials and origin in rule.origins


class RejectionLog:
    """Counts rejected origins and logs them at most once per interval, so ops see what is
    blocked without a flood of log lines."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._last = 0.0

    def record(self, origin: str, path: str) -> None:
        key = origin[:200]
        if key not in self.counts and len(self.counts) >= MAX_TRACKED_ORIGINS:
            self.counts.clear()  # anyone can send any Origin: keep this bounded
        self.counts[key] = self.counts.get(key, 0) + 1
        now = time.monotonic()
        if now - self._last >= REJECTION_LOG_INTERVAL:
            self._last = now
            log.warning(
                "rejected cross-origin request from %s to %s (%d so far from this origin)",
                key,
                path,
                self.counts[key],
            )


REJECTIONS = web.AppKey("cors_rejections", RejectionLog)
CORS_RULE = web.RequestKey("cors_rule", Rule)
POLICY = web.AppKey("cors_policy", PerConfig[CorsPolicy])


def setup_cors(app: web.Application) -> None:
    app[REJECTIONS] = RejectionLog()
    app[POLICY] = PerConfig(CorsPolicy)


def _grant(response: web.StreamResponse, rule: Rule, origin: str | None) -> None:
    vary = response.headers.get(hdrs.VARY, "")
    if rule.credentials:
        if "origin" not in vary.lower():
            response.headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"
        if origin is not None and origin in rule.origins:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = "X-Request-Id, Retry-After"
    else:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = "*"


def _preflight(request: web.Request, rule: Rule, origin: str | None) -> web.Response:
    response = web.Response(status=204)
    response.headers[hdrs.VARY] = (
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    )
    method = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD, "")
    if rule.credentials and (origin is None or origin not in rule.origins):
        return response
    if method not in rule.methods:
        return response
    requested = [
        h.strip().lower()
        for h in request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, "").split(",")
        if h.strip()
    ]
    if any(h not in rule.headers for h in requested):
        return response
    if rule.credentials:
        assert origin is not None
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
    else:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = "*"
    response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ", ".join(rule.methods)
    if requested:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(requested)
    response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = MAX_AGE
    return response


def _is_preflight(request: web.BaseRequest) -> bool:
    return request.method == "OPTIONS" and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers


def preflight(request: web.Request) -> web.Response | None:
    """The answer to a CORS preflight (never forwarded); counts rejected origins on the way.

    The rule found here is kept on the request for ``add_cors_headers``."""
    app = request.app
    policy = app[POLICY].get(app[CONFIG].current)
    rule = policy.rule_for(request.path)
    if rule is None:
        return None
    request[CORS_RULE] = rule
    origin = request.headers.get(hdrs.ORIGIN)
    if (
        rule.credentials
        and origin is not None
        and origin not in rule.origins
        and origin != policy.own_origin
    ):
        app[REJECTIONS].record(origin, request.path)
        app[METRICS].cors_rejected.inc()
    if _is_preflight(request):
        return _preflight(request, rule, origin)
    return None


def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """CORS headers on every answer, streamed and error ones included, right before its headers
    are sent (called from the ``on_response_prepare`` hook)."""
    rule = request.get(CORS_RULE)
    if rule is not None and not _is_preflight(request):
        _grant(response, rule, request.headers.get(hdrs.ORIGIN))
