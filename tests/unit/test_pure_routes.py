"""Proxy routes and paths: the pure checks of ``gateway.proxy.routes`` and of the route settings in
``gateway.config.model``. No server, no upstream, no I/O.

Covered: route prefixes (``check_route_prefix``: start and end with ``/``, no empty, dot or
percent-encoded segments); which path belongs to which prefix (``path_under_prefix``, longest
prefix first in ``RouteTable.match``); the upstream URL built for a request
(``RouteTable.target``: ``strip_prefix``, upstream base paths, raw query kept, the host never
taken from the request); raw request paths refused (``check_path``: relative or
scheme-relative paths, empty segments, ``.``/``..`` also as ``..;``, encoded dots, slashes and
backslashes, double encoding, control characters); upstream URLs (``check_upstream``); and the
route table of ``GatewaySettings`` (the gateway's own paths reserved, prefixes unique, path
upstreams resolved against the listen address and refused when they lead back under a proxied
prefix).

SECURITY-CHECKLIST item 105 (upstream destination allowlist and path normalisation,
draft-ietf-oauth-browser-based-apps section 6.1.3.6) and item 103 (the request cannot choose the
upstream host).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.config.model import (
    GatewaySettings,
    Route,
    check_route_prefix,
    check_upstream,
    path_under_prefix,
)
from gateway.proxy.routes import PathRefused, RouteTable, Target, check_path

ABSOLUTE = "the path must be absolute"
ENCODED = "the path contains encoded separators or control characters"
DOUBLE = "the path contains double or malformed percent-encoding"
EMPTY = "the path contains an empty segment"
DOT = "the path contains a dot segment"


def route(prefix: str, upstream: str, **settings: Any) -> Route:
    return Route.model_validate({"prefix": prefix, "upstream": upstream, **settings})


# --- route prefixes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("/api/", id="one-segment"),
        pytest.param("/api/orders/", id="two-segments"),
        pytest.param("/", id="root"),
        pytest.param("/.../", id="three-dots-is-a-name"),
        pytest.param("/v1.2/", id="dot-in-name"),
        pytest.param("/oauth2x/", id="looks-like-reserved"),
    ],
)
def test_route_prefix_accepted(prefix: str) -> None:
    assert check_route_prefix(prefix) == prefix


PREFIX_SHAPE = "must start and end with '/', e.g. /api/"
PREFIX_PLAIN = "must be a plain path without empty, dot or encoded segments"


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        pytest.param("api/", PREFIX_SHAPE, id="relative"),
        pytest.param("/api", PREFIX_SHAPE, id="no-trailing-slash"),
        pytest.param("", PREFIX_SHAPE, id="empty"),
        pytest.param("//", PREFIX_PLAIN, id="double-slash-root"),
        pytest.param("//evil.example/", PREFIX_PLAIN, id="scheme-relative"),
        pytest.param("/api//v2/", PREFIX_PLAIN, id="empty-segment"),
        pytest.param("/api/../admin/", PREFIX_PLAIN, id="dot-dot"),
        pytest.param("/../", PREFIX_PLAIN, id="dot-dot-root"),
        pytest.param("/api/./", PREFIX_PLAIN, id="dot"),
        pytest.param("/./", PREFIX_PLAIN, id="dot-root"),
        pytest.param("/%2e%2e/", PREFIX_PLAIN, id="encoded-dots"),
        pytest.param("/api%2Fv2/", PREFIX_PLAIN, id="encoded-slash"),
        pytest.param("/%61pi/", PREFIX_PLAIN, id="encoded-letter"),
    ],
)
def test_route_prefix_refused(prefix: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        check_route_prefix(prefix)


@pytest.mark.parametrize(
    ("path", "prefix", "under"),
    [
        pytest.param("/api/x", "/api/", True, id="below"),
        pytest.param("/api/", "/api/", True, id="the-prefix"),
        pytest.param("/api", "/api/", True, id="prefix-without-slash"),
        pytest.param("/api/x/y/z", "/api/", True, id="deep"),
        pytest.param("/apix", "/api/", False, id="longer-name"),
        pytest.param("/apix/y", "/api/", False, id="longer-name-below"),
        pytest.param("/ap", "/api/", False, id="shorter"),
        pytest.param("/API/x", "/api/", False, id="case-sensitive"),
        pytest.param("/x/api/", "/api/", False, id="not-at-start"),
        pytest.param("api/x", "/api/", False, id="relative"),
        pytest.param("/anything", "/", True, id="root-prefix"),
    ],
)
def test_path_under_prefix(path: str, prefix: str, under: bool) -> None:
    assert path_under_prefix(path, prefix) is under


TABLE = RouteTable(
    (
        route("/public/", "http://public.internal"),
        route("/api/", "http://api.internal"),
        route("/api/v2/", "http://v2.internal"),
    )
)


@pytest.mark.parametrize(
    ("path", "prefix"),
    [
        pytest.param("/api/x", "/api/", id="api"),
        pytest.param("/api/v2/x", "/api/v2/", id="longest-prefix-wins"),
        pytest.param("/api/v2", "/api/v2/", id="longest-without-slash"),
        pytest.param("/api/v2x", "/api/", id="not-under-v2"),
        pytest.param("/api/v", "/api/", id="shorter-than-v2"),
        pytest.param("/api", "/api/", id="without-slash"),
        pytest.param("/public/", "/public/", id="public"),
        pytest.param("/apix", None, id="no-route-longer-name"),
        pytest.param("/API/x", None, id="no-route-case"),
        pytest.param("/", None, id="no-route-root"),
        pytest.param("/other/x", None, id="105-unknown-route"),
    ],
)
def test_route_table_match(path: str, prefix: str | None) -> None:
    matched = TABLE.match(path)
    assert (matched.prefix if matched else None) == prefix


# --- upstream URL of a request -----------------------------------------------------------------

ORDERS = route("/api/orders/", "https://orders.internal.test/")
STRIP = route("/api/", "http://127.0.0.1:9000/v1", strip_prefix=True)
STRIP_BARE = route("/svc/", "http://svc.internal", strip_prefix=True)
KEEP = route("/legacy/", "http://legacy.internal:8080/base/")
TARGETS = RouteTable((ORDERS, STRIP, STRIP_BARE, KEEP))


@pytest.mark.parametrize(
    ("chosen", "raw_path", "raw_query", "expected"),
    [
        pytest.param(
            ORDERS,
            "/api/orders/1",
            "",
            Target("https://orders.internal.test", "/api/orders/1"),
            id="prefix-kept",
        ),
        pytest.param(
            ORDERS,
            "/api/orders/1",
            "a=1&b=%2F&c",
            Target("https://orders.internal.test", "/api/orders/1?a=1&b=%2F&c"),
            id="raw-query-kept",
        ),
        pytest.param(
            ORDERS,
            "/api/orders",
            "",
            Target("https://orders.internal.test", "/api/orders/"),
            id="prefix-without-slash",
        ),
        pytest.param(
            ORDERS,
            "/api/orders/a%20b/%41",
            "",
            Target("https://orders.internal.test", "/api/orders/a%20b/%41"),
            id="encoding-kept",
        ),
        pytest.param(
            ORDERS,
            "/api/orders/@evil.example/x",
            "",
            Target("https://orders.internal.test", "/api/orders/@evil.example/x"),
            id="105-at-sign-stays-in-path",
        ),
        pytest.param(
            STRIP, "/api/x/y", "", Target("http://127.0.0.1:9000", "/v1/x/y"), id="strip-prefix"
        ),
        pytest.param(STRIP, "/api/", "", Target("http://127.0.0.1:9000", "/v1/"), id="strip-all"),
        pytest.param(STRIP, "/api", "", Target("http://127.0.0.1:9000", "/v1/"), id="strip-bare"),
        pytest.param(
            STRIP, "/api/x", "q=1", Target("http://127.0.0.1:9000", "/v1/x?q=1"), id="strip-query"
        ),
        pytest.param(
            STRIP_BARE, "/svc/x", "", Target("http://svc.internal", "/x"), id="strip-no-base-path"
        ),
        pytest.param(
            KEEP,
            "/legacy/a",
            "",
            Target("http://legacy.internal:8080", "/base/legacy/a"),
            id="base-path-and-prefix",
        ),
    ],
)
def test_route_target(chosen: Route, raw_path: str, raw_query: str, expected: Target) -> None:
    target = TARGETS.target(chosen, raw_path, raw_query)
    assert target == expected
    expected_host = expected.origin.split("://")[1].split(":")[0]
    assert target.url.host == expected_host
    assert target.url.raw_path_qs == expected.path_qs


@pytest.mark.parametrize(
    ("raw_path", "reason"),
    [
        pytest.param("/api/orders/%2e%2e/%2e%2e/admin", ENCODED, id="105-encoded-dots"),
        pytest.param("/api/orders/..;/admin", DOT, id="105-dot-dot-semicolon"),
        pytest.param("/api/orders//evil.example/x", EMPTY, id="105-double-slash"),
        pytest.param("/api/orders/http://evil.example/", EMPTY, id="url-in-path"),
    ],
)
def test_route_target_checks_the_path(raw_path: str, reason: str) -> None:
    with pytest.raises(PathRefused) as info:
        TARGETS.target(ORDERS, raw_path, "")
    assert str(info.value) == reason


# --- raw request paths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_path",
    [
        pytest.param("/", id="root"),
        pytest.param("/api/orders/1", id="plain"),
        pytest.param("/api/orders/", id="trailing-slash"),
        pytest.param("/api/.../x", id="three-dots"),
        pytest.param("/api/.well-known/x", id="dot-name"),
        pytest.param("/api/a..b/x", id="dots-inside-name"),
        pytest.param("/api/..a/x", id="dots-then-name"),
        pytest.param("/api/x;y/z", id="matrix-parameter"),
        pytest.param("/api/;/x", id="semicolon-segment"),
        pytest.param("/api/%41%20%3B%40", id="harmless-encodings"),
        pytest.param("/api/100%25", id="encoded-percent"),
        pytest.param("/api/@evil.example/x", id="105-at-sign"),
        pytest.param("/api/%E2%82%AC", id="encoded-utf8"),
    ],
)
def test_path_accepted_and_forwarded_as_sent(raw_path: str) -> None:
    check_path(raw_path)
    root = route("/", "http://up.internal")
    assert RouteTable((root,)).target(root, raw_path, "") == Target("http://up.internal", raw_path)


@pytest.mark.parametrize(
    ("raw_path", "reason"),
    [
        # not an absolute path
        pytest.param("", ABSOLUTE, id="empty"),
        pytest.param("api/x", ABSOLUTE, id="relative"),
        pytest.param("*", ABSOLUTE, id="asterisk"),
        pytest.param("//evil.example/x", ABSOLUTE, id="scheme-relative"),
        pytest.param("http://evil.example/x", ABSOLUTE, id="105-absolute-form"),
        # item 105, as listed
        pytest.param("/api/orders/..%2F..%2Fadmin", ENCODED, id="105-encoded-slash"),
        pytest.param("/api/orders/%2e%2e/%2e%2e/admin", ENCODED, id="105-encoded-dots"),
        pytest.param("/api/orders/..;/admin", DOT, id="105-dot-dot-semicolon"),
        pytest.param("/api/orders/%252e%252e/admin", DOUBLE, id="105-double-encoded-dots"),
        pytest.param("/api/orders//evil.example/x", EMPTY, id="105-double-slash"),
        # dot segments
        pytest.param("/api/../admin", DOT, id="dot-dot"),
        pytest.param("/api/./x", DOT, id="dot"),
        pytest.param("/api/x/..", DOT, id="trailing-dot-dot"),
        pytest.param("/api/x/.", DOT, id="trailing-dot"),
        pytest.param("/..", DOT, id="root-dot-dot"),
        pytest.param("/api/.;x/y", DOT, id="dot-semicolon"),
        pytest.param("/api/..;jsessionid=1/admin", DOT, id="dot-dot-jsessionid"),
        # empty segments
        pytest.param("/api//", EMPTY, id="trailing-double-slash"),
        pytest.param("/api///x", EMPTY, id="triple-slash"),
        # encoded separators, dots, backslashes; any case
        pytest.param("/api/x%2Fy", ENCODED, id="encoded-slash-upper"),
        pytest.param("/api/x%2fy", ENCODED, id="encoded-slash-lower"),
        pytest.param("/api/%2E%2E/x", ENCODED, id="encoded-dots-upper"),
        pytest.param("/api/.%2e/x", ENCODED, id="half-encoded-dots"),
        pytest.param("/api/%2e/x", ENCODED, id="encoded-dot"),
        pytest.param("/api/x%5Cy", ENCODED, id="encoded-backslash-upper"),
        pytest.param("/api/x%5cy", ENCODED, id="encoded-backslash-lower"),
        pytest.param("/api/x\\y", ENCODED, id="backslash"),
        pytest.param("/api/..\\admin", ENCODED, id="dot-dot-backslash"),
        # double encoding
        pytest.param("/api/%252F", DOUBLE, id="double-encoded-slash"),
        pytest.param("/api/%252f", DOUBLE, id="double-encoded-slash-lower"),
        pytest.param("/api/%255C", DOUBLE, id="double-encoded-backslash"),
        pytest.param("/api/%2541", DOUBLE, id="double-encoded-letter"),
        pytest.param("/api/100%", DOUBLE, id="percent-at-the-end"),
        pytest.param("/api/%zz", DOUBLE, id="percent-without-hex-digits"),
        # control characters, raw and encoded
        pytest.param("/api/%00", ENCODED, id="encoded-nul"),
        pytest.param("/api/%0a", ENCODED, id="encoded-lf"),
        pytest.param("/api/%0D%0AX-Injected:%201", ENCODED, id="encoded-crlf"),
        pytest.param("/api/%1f", ENCODED, id="encoded-unit-separator"),
        pytest.param("/api/%7F", ENCODED, id="encoded-del"),
        pytest.param("/api/\x00", ENCODED, id="nul"),
        pytest.param("/api/\t", ENCODED, id="tab"),
        pytest.param("/api/\x1f", ENCODED, id="unit-separator"),
        pytest.param("/api/\x7f", ENCODED, id="del"),
    ],
)
def test_path_refused(raw_path: str, reason: str) -> None:
    with pytest.raises(PathRefused) as info:
        check_path(raw_path)
    assert str(info.value) == reason


@pytest.mark.parametrize(
    "raw_path",
    [
        # Each decodes once to %2e%2e (or %2F) and twice to ".." (or "/"): double encoding, like
        # %252e (refused), that an upstream which decodes twice reads as a dot segment or a
        # separator. The module promises to refuse double encoding.
        pytest.param("/api/%25%32%65%25%32%65/admin", id="percent-25-then-encoded-hex-digits"),
        pytest.param("/api/%2%65%2%65/admin", id="encoded-second-hex-digit"),
        pytest.param("/api/%%32%65%%32%65/admin", id="bare-percent-then-encoded-hex-digits"),
        pytest.param("/api/x%25%32%46admin", id="double-encoded-slash-via-hex-digits"),
        # the same one level deeper: three decodings give ".."
        pytest.param("/api/%25252e%25252e/admin", id="triple-encoded-dots"),
    ],
)
def test_double_encoding_in_other_spellings_is_refused(raw_path: str) -> None:
    with pytest.raises(PathRefused) as info:
        check_path(raw_path)
    assert str(info.value) == DOUBLE


# --- upstream URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        pytest.param("http://127.0.0.1:9000", "http://127.0.0.1:9000", id="loopback-port"),
        pytest.param(
            "https://orders.internal.test/", "https://orders.internal.test/", id="https-slash"
        ),
        pytest.param("http://[::1]:9000/v1", "http://[::1]:9000/v1", id="ipv6-base-path"),
        pytest.param("http://api.internal/v1/", "http://api.internal/v1/", id="base-path"),
        pytest.param("/demo-api", "/demo-api", id="gateway-path"),
        pytest.param("/demo-api/", "/demo-api", id="gateway-path-slash-trimmed"),
        pytest.param("/", "/", id="gateway-root"),
    ],
)
def test_upstream_accepted(upstream: str, expected: str) -> None:
    assert check_upstream(upstream) == expected


UPSTREAM_URL = "must be an http(s) URL such as http://127.0.0.1:9000, or a path of this gateway"
UPSTREAM_PARTS = "must not contain a query, fragment or user info"
UPSTREAM_PATH = "a path upstream must be a plain path such as /demo-api"


@pytest.mark.parametrize(
    ("upstream", "reason"),
    [
        pytest.param("ftp://files.internal/", UPSTREAM_URL, id="ftp"),
        pytest.param("ws://api.internal/", UPSTREAM_URL, id="websocket-scheme"),
        pytest.param("file:///etc/passwd", UPSTREAM_URL, id="file"),
        pytest.param("javascript:alert(1)", UPSTREAM_URL, id="javascript"),
        pytest.param("http://", UPSTREAM_URL, id="no-host"),
        pytest.param("http:///x", UPSTREAM_URL, id="empty-host"),
        pytest.param("//evil.example/x", UPSTREAM_URL, id="scheme-relative"),
        pytest.param("orders.internal.test", UPSTREAM_URL, id="bare-host"),
        pytest.param("", UPSTREAM_URL, id="empty"),
        pytest.param("http://api.internal/?a=1", UPSTREAM_PARTS, id="query"),
        pytest.param("http://api.internal/#f", UPSTREAM_PARTS, id="fragment"),
        pytest.param("http://user:pw@api.internal/", UPSTREAM_PARTS, id="userinfo"),
        pytest.param("http://api.internal@evil.example/", UPSTREAM_PARTS, id="userinfo-trick"),
        pytest.param("/demo-api?x=1", UPSTREAM_PATH, id="path-query"),
        pytest.param("/demo#x", UPSTREAM_PATH, id="path-fragment"),
        pytest.param("/demo%2e", UPSTREAM_PATH, id="path-encoded"),
        pytest.param("/a\\b", UPSTREAM_PATH, id="path-backslash"),
        pytest.param("/a b", UPSTREAM_PATH, id="path-space"),
        pytest.param("/a\x00", UPSTREAM_PATH, id="path-nul"),
    ],
)
def test_upstream_refused(upstream: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        check_upstream(upstream)


@pytest.mark.parametrize(
    "upstream",
    [
        # urlsplit(...).port raises for these when the proxy builds its pool, on every request
        pytest.param("http://api.internal:abc/", id="port-not-a-number"),
        pytest.param("http://api.internal:99999/", id="port-out-of-range"),
        # not a host name: RFC 3986 reg-name has no space or backslash
        pytest.param("http://api internal/", id="space-in-host"),
        pytest.param("http://api.internal\\.evil.example/", id="backslash-in-host"),
    ],
)
def test_upstream_authority_is_validated(upstream: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the code has no message for these yet
        check_upstream(upstream)


# --- the route table of gateway.json -----------------------------------------------------------


def routes_of(routes: list[dict[str, Any]], port: int = 8080) -> list[tuple[str, str]]:
    settings = GatewaySettings.model_validate({"listen": {"port": port}, "routes": routes})
    return [(r.prefix, r.upstream) for r in settings.routes]


def messages(routes: list[dict[str, Any]], port: int = 8080) -> list[str]:
    with pytest.raises(ValidationError) as info:
        GatewaySettings.model_validate({"listen": {"port": port}, "routes": routes})
    return [error["msg"] for error in info.value.errors()]


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        pytest.param(
            [{"prefix": "/api/", "upstream": "http://127.0.0.1:9000"}],
            [("/api/", "http://127.0.0.1:9000")],
            id="url",
        ),
        pytest.param(
            [{"prefix": "/api/", "upstream": "/demo-api"}],
            [("/api/", "http://127.0.0.1:8080/demo-api")],
            id="gateway-path-resolved",
        ),
        pytest.param(
            [{"prefix": "/api/", "upstream": "/demo-api/", "strip_prefix": True}],
            [("/api/", "http://127.0.0.1:8080/demo-api")],
            id="gateway-path-strip",
        ),
        pytest.param(
            [
                {"prefix": "/api/", "upstream": "http://a.internal"},
                {"prefix": "/api/v2/", "upstream": "http://b.internal"},
            ],
            [("/api/", "http://a.internal"), ("/api/v2/", "http://b.internal")],
            id="nested-prefixes",
        ),
        pytest.param(
            [{"prefix": "/oauth2x/", "upstream": "http://a.internal"}],
            [("/oauth2x/", "http://a.internal")],
            id="not-reserved-lookalike",
        ),
        pytest.param(
            [{"prefix": "/healthz/x/", "upstream": "http://a.internal"}],
            [("/healthz/x/", "http://a.internal")],
            id="below-health-is-free",
        ),
    ],
)
def test_gateway_routes_accepted(
    routes: list[dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    assert routes_of(routes) == expected


def reserved(prefix: str) -> str:
    return f"Value error, prefix {prefix} is reserved for the gateway"


def loops(upstream: str, prefix: str) -> str:
    return (
        f"Value error, the upstream {upstream} of {prefix} leads back under a proxied prefix: "
        "requests would loop"
    )


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        pytest.param(
            [{"prefix": "/oauth2/", "upstream": "http://a"}], [reserved("/oauth2/")], id="oauth2"
        ),
        pytest.param(
            [{"prefix": "/oauth2/token/", "upstream": "http://a"}],
            [reserved("/oauth2/token/")],
            id="below-oauth2",
        ),
        pytest.param(
            [{"prefix": "/.well-known/", "upstream": "http://a"}],
            [reserved("/.well-known/")],
            id="well-known",
        ),
        pytest.param(
            [{"prefix": "/.well-known/openid-configuration/", "upstream": "http://a"}],
            [reserved("/.well-known/openid-configuration/")],
            id="discovery",
        ),
        pytest.param(
            [{"prefix": "/healthz/", "upstream": "http://a"}], [reserved("/healthz/")], id="healthz"
        ),
        pytest.param(
            [{"prefix": "/readyz/", "upstream": "http://a"}], [reserved("/readyz/")], id="readyz"
        ),
        pytest.param(
            [{"prefix": "/metrics/", "upstream": "http://a"}], [reserved("/metrics/")], id="metrics"
        ),
        pytest.param(
            [{"prefix": "/a/", "upstream": "http://a"}, {"prefix": "/a/", "upstream": "http://b"}],
            ["Value error, prefix /a/ is configured twice"],
            id="duplicate-prefix",
        ),
        pytest.param(
            [{"prefix": "/api/", "upstream": "/api"}],
            [loops("/api", "/api/")],
            id="path-upstream-to-itself",
        ),
        pytest.param(
            [{"prefix": "/api/", "upstream": "/api", "strip_prefix": True}],
            [loops("/api", "/api/")],
            id="path-upstream-to-itself-stripped",
        ),
        pytest.param(
            [{"prefix": "/api/", "upstream": "/"}], [loops("/", "/api/")], id="path-upstream-root"
        ),
        pytest.param(
            [
                {"prefix": "/api/", "upstream": "/other"},
                {"prefix": "/other/", "upstream": "http://a"},
            ],
            [loops("/other", "/api/")],
            id="path-upstream-to-another-route",
        ),
        pytest.param(
            [{"prefix": "api/", "upstream": "http://a"}],
            ["Value error, must start and end with '/', e.g. /api/"],
            id="bad-prefix",
        ),
        pytest.param(
            [{"prefix": "/api/", "upstream": "ftp://a"}],
            [f"Value error, {UPSTREAM_URL}"],
            id="bad-upstream",
        ),
    ],
)
def test_gateway_routes_refused(routes: list[dict[str, Any]], expected: list[str]) -> None:
    assert messages(routes) == expected


def test_path_upstream_needs_a_fixed_port() -> None:
    assert messages([{"prefix": "/api/", "upstream": "/demo-api"}], port=0) == [
        "Value error, the upstream /demo-api of /api/ is a path of this gateway, which needs a "
        "fixed listen.port"
    ]


def test_path_upstream_with_dot_segments_cannot_hide_a_loop() -> None:
    """``/x/../api`` is ``/api`` to any server that removes dot segments (RFC 3986 section
    5.2.4), so ``/api/`` proxied to it comes back to ``/api/``: refused like ``/api``."""
    messages([{"prefix": "/api/", "upstream": "/x/../api"}])
