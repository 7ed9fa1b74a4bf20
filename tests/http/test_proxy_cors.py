"""Token handler CORS (SECURITY-CHECKLIST group H, items 92-98), through real HTTP: the gateway,
a recording upstream that must never see a preflight, and a real PostgreSQL.

The allowlist is the union of the clients' ``javascript_origins`` (``https://app.example.test``)
plus a route's own ``origins`` (``https://partner.example.test`` on ``/api/partner/`` only).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.http.proxy_support import (
    APP,
    AT,
    EVIL,
    PARTNER,
    SID,
    Answer,
    Gateway,
    cookie_header,
    running_gateway,
    send,
)

LOOK_ALIKES = [
    "https://evil.example",
    "https://app.example.test.evil.example",
    "https://evilapp.example.test",
    "https://sub.app.example.test",
    "http://app.example.test",
    "https://app.example.test:8443",
    "https://app.example.test/",
    "null",
    "HTTPS://APP.EXAMPLE.TEST",
]


@pytest.fixture
async def gw(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path / "conf", database_url) as gateway:
        yield gateway


async def preflight(
    gw: Gateway, path: str, origin: str, method: str = "POST", headers: str | None = None
) -> Answer:
    request = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        request["Access-Control-Request-Headers"] = headers
    return await send(gw, path, method="OPTIONS", headers=request, browser=False)


def vary(answer: Answer) -> set[str]:
    return {
        v.strip().lower() for line in answer.headers.getall("Vary", []) for v in line.split(",")
    }


def assert_no_grant(answer: Answer) -> None:
    names = {k.lower() for k in answer.headers}
    assert "access-control-allow-origin" not in names, answer.headers
    assert "access-control-allow-credentials" not in names, answer.headers


def assert_granted(answer: Answer, origin: str = APP) -> None:
    """Item 94/95: the exact origin reflected, credentials allowed, never ``*``, Vary: Origin."""
    assert answer.headers.getall("Access-Control-Allow-Origin", []) == [origin], answer.headers
    assert answer.headers.get("Access-Control-Allow-Credentials") == "true", answer.headers
    assert "origin" in vary(answer), answer.headers


# --- item 92 ------------------------------------------------------------------------------------


async def test_preflight_from_allowed_origin(gw: Gateway) -> None:
    """Item 92: ``OPTIONS /api/orders/create`` from the app origin asking for POST with
    ``content-type,x-csrf-token`` and no cookies gets 2xx, the origin reflected with credentials,
    POST among the methods, both headers listed explicitly (no ``*``), ``Vary: Origin``, a
    ``Max-Age`` of at most 86400, and is never forwarded."""
    answer = await preflight(gw, "/api/orders/create", APP, "POST", "content-type,x-csrf-token")
    assert 200 <= answer.status < 300, answer.text
    assert_granted(answer)
    methods = {m.strip() for m in answer.headers["Access-Control-Allow-Methods"].split(",")}
    assert "POST" in methods
    assert "*" not in methods
    allowed = {h.strip().lower() for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "x-csrf-token"} <= allowed
    assert "*" not in allowed
    assert {"origin", "access-control-request-headers"} <= vary(answer)
    max_age = int(answer.headers["Access-Control-Max-Age"])
    assert 0 < max_age <= 86400
    assert gw.upstream.requests == []


async def test_preflight_for_the_routes_csrf_header(gw: Gateway) -> None:
    """Item 92: the route's configured ``csrf_header`` is an allowed request header."""
    answer = await preflight(gw, "/api/csrf/create", APP, "PUT", "x-csrf-token, content-type")
    assert 200 <= answer.status < 300
    assert_granted(answer)
    assert gw.upstream.requests == []


# --- item 93 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", LOOK_ALIKES)
async def test_preflight_from_disallowed_origin_gets_no_grant(gw: Gateway, origin: str) -> None:
    """Item 93: a preflight from a look-alike, downgraded, other-port, trailing-slash, upper-case
    or ``null`` origin gets no ``Access-Control-Allow-*`` grant and is not forwarded."""
    answer = await preflight(gw, "/api/orders/create", origin, "POST", "content-type")
    assert_no_grant(answer)
    assert "Access-Control-Allow-Methods" not in answer.headers
    assert gw.upstream.requests == []


async def test_credentialed_get_from_disallowed_origin_is_refused(gw: Gateway) -> None:
    """Item 93: ``GET /api/orders/1`` with valid cookies and each disallowed ``Origin`` above gets
    no CORS grant, and (as item 93 requires, by item 85) 401 or 403 without reaching the
    upstream: a cross-site page must not drive the API with the user's cookies, even with GET."""
    signed = await gw.sign_in()
    forwarded = []
    for origin in LOOK_ALIKES:
        gw.upstream.clear()
        answer = await send(
            gw,
            "/api/orders/1",
            cookies=signed.cookie_header(),
            headers={"Origin": origin, "Sec-Fetch-Site": "cross-site"},
            browser=False,
        )
        assert_no_grant(answer)
        if answer.status not in (401, 403) or gw.upstream.requests:
            forwarded.append((origin, answer.status, len(gw.upstream.requests)))
    assert forwarded == [], f"cross-site GETs with cookies were forwarded: {forwarded}"


# --- items 94 and 95 ----------------------------------------------------------------------------


async def test_actual_response_reflects_origin_and_varies(gw: Gateway) -> None:
    """Item 95: (a) a GET with cookies from the app origin gets 200 with the origin reflected,
    credentials allowed and ``Vary: Origin``; (b) the same without ``Origin`` gets no
    Allow-Origin but still ``Vary: Origin``."""
    signed = await gw.sign_in()
    with_origin = await send(gw, "/api/orders/1", cookies=signed.cookie_header())
    assert with_origin.status == 200
    assert_granted(with_origin)
    without = await send(gw, "/api/orders/1", cookies=signed.cookie_header(), browser=False)
    assert without.status == 200
    assert_no_grant(without)
    assert "origin" in vary(without), without.headers


async def test_route_prefix_without_its_slash_gets_the_routes_cors(gw: Gateway) -> None:
    """``/api/orders`` is routed to the ``/api/orders/`` route, so it also gets that route's
    CORS and CSRF rule: a cookie-authenticated GET and POST from the app origin are forwarded
    with the origin reflected (routing and CORS share one prefix rule)."""
    signed = await gw.sign_in()
    get = await send(gw, "/api/orders", cookies=signed.cookie_header())
    assert get.status == 200, get.text
    assert_granted(get)
    post = await send(gw, "/api/orders", method="POST", cookies=signed.cookie_header(), data=b"{}")
    assert post.status == 200, post.text
    assert_granted(post)
    assert len(gw.upstream.requests) == 2


async def test_never_a_wildcard_with_credentials(gw: Gateway) -> None:
    """Item 94: across preflights, successes, errors (401, 403, 404, 405, 413, 502, 504) and an
    upstream that itself answers ``Access-Control-Allow-Origin: *``, every response either has
    no Allow-Origin or exactly the allowlisted request origin; never ``*`` with credentials and
    never an echo of an unlisted origin."""
    signed = await gw.sign_in()
    cookies = signed.cookie_header()
    answers: list[tuple[str, Answer]] = []
    for origin in (APP, EVIL, PARTNER):
        headers = {"Origin": origin}
        answers += [
            (origin, await preflight(gw, "/api/orders/1", origin, "DELETE")),
            (origin, await send(gw, "/api/orders/1", cookies=cookies, headers=headers)),
            (origin, await send(gw, "/api/orders/evil-headers", cookies=cookies, headers=headers)),
            (origin, await send(gw, "/api/orders/1", headers=headers)),
            (
                origin,
                await send(gw, "/api/orders/1", method="POST", cookies=cookies, headers=headers),
            ),
            (
                origin,
                await send(gw, "/api/ro/1", method="DELETE", cookies=cookies, headers=headers),
            ),
            (
                origin,
                await send(
                    gw,
                    "/api/small/1",
                    method="POST",
                    cookies=cookies,
                    headers=headers,
                    data=b"x" * 2000,
                ),
            ),
            (origin, await send(gw, "/api/down/1", cookies=cookies, headers=headers)),
            (origin, await send(gw, "/api/slow/slow?sleep=2", cookies=cookies, headers=headers)),
        ]
    statuses = {a.status for _, a in answers}
    assert {200, 204, 401, 403, 405, 413, 502, 504} <= statuses, statuses
    for origin, answer in answers:
        values = answer.headers.getall("Access-Control-Allow-Origin", [])
        assert "*" not in values, (origin, answer.status, answer.headers)
        assert values in ([], [origin]), (origin, answer.status, answer.headers)
        if origin == EVIL:
            assert_no_grant(answer)
        if answer.status != 204:
            assert "origin" in vary(answer), (answer.status, answer.headers)


# --- item 96 ------------------------------------------------------------------------------------


async def test_error_responses_are_readable_by_the_spa(gw: Gateway) -> None:
    """Item 96: a 401 for missing, garbage or expired-session cookies, a 403 for a missing CSRF
    header, a 405 and a 502 all carry the app origin and ``Allow-Credentials: true``, so the SPA
    can read why."""
    signed = await gw.sign_in()
    errors = [
        await send(gw, "/api/orders/1"),
        await send(gw, "/api/orders/1", cookies=cookie_header({AT: "x", SID: "y"})),
        await send(gw, "/api/orders/1", cookies=signed.cookie_header((SID,))),
        await send(gw, "/api/csrf/1", method="POST", cookies=signed.cookie_header()),
        await send(gw, "/api/ro/1", method="DELETE", cookies=signed.cookie_header()),
        await send(gw, "/api/down/1", cookies=signed.cookie_header()),
    ]
    assert [a.status for a in errors] == [401, 401, 401, 403, 405, 502], [a.text for a in errors]
    for answer in errors:
        assert_granted(answer)
    assert gw.upstream.requests == []


# --- item 97 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method"),
    [("/api/orders/1", "DELETE"), ("/api/orders/1", "PATCH"), ("/api/csrf/1", "DELETE")],
)
async def test_preflight_succeeds_without_credentials(gw: Gateway, path: str, method: str) -> None:
    """Item 97: a preflight without cookies or CSRF header, for DELETE and PATCH, gets 2xx with
    the grant (never 401/403) and is never forwarded."""
    answer = await preflight(gw, path, APP, method, "content-type")
    assert 200 <= answer.status < 300, answer.text
    assert_granted(answer)
    assert method in answer.headers["Access-Control-Allow-Methods"]
    assert gw.upstream.requests == []


async def test_preflight_for_a_method_the_route_refuses(gw: Gateway) -> None:
    """Items 97 and 106: a preflight for DELETE on a read-only route is answered by the gateway
    (not forwarded) and does not list DELETE among allowed methods."""
    answer = await preflight(gw, "/api/ro/1", APP, "DELETE")
    assert 200 <= answer.status < 300
    assert "DELETE" not in answer.headers.get("Access-Control-Allow-Methods", "")
    assert gw.upstream.requests == []


async def test_route_origins_extend_the_allowlist_for_that_route_only(gw: Gateway) -> None:
    """DESIGN.md section 6: a route's ``origins`` are allowed on that route (preflight, actual
    request and CSRF check) and nowhere else."""
    signed = await gw.sign_in()
    cookies = signed.cookie_header()
    on_route = await preflight(gw, "/api/partner/1", PARTNER, "POST")
    assert_granted(on_route, PARTNER)
    post = await send(
        gw, "/api/partner/1", method="POST", cookies=cookies, headers={"Origin": PARTNER}
    )
    assert post.status == 200, post.text
    assert_granted(post, PARTNER)
    assert len(gw.upstream.requests) == 1
    gw.upstream.clear()
    assert_no_grant(await preflight(gw, "/api/orders/1", PARTNER, "POST"))
    elsewhere = await send(
        gw, "/api/orders/1", method="POST", cookies=cookies, headers={"Origin": PARTNER}
    )
    assert elsewhere.status == 403
    assert_no_grant(elsewhere)
    assert gw.upstream.requests == []


# --- item 98 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/oauth2/jwks"])
async def test_public_metadata_is_open_without_credentials(gw: Gateway, path: str) -> None:
    """Item 98: discovery and JWKS answer ``Access-Control-Allow-Origin: *`` and never
    ``Allow-Credentials``, for any origin."""
    for origin in (APP, EVIL):
        answer = await send(gw, path, headers={"Origin": origin}, browser=False)
        assert answer.status == 200, answer.text
        assert answer.headers.getall("Access-Control-Allow-Origin", []) == ["*"]
        assert "Access-Control-Allow-Credentials" not in answer.headers


async def test_token_and_userinfo_answer_the_registered_origin_only(gw: Gateway) -> None:
    """Item 98: ``OPTIONS`` and ``POST /oauth2/token`` and ``GET /oauth2/userinfo`` with a Bearer
    from the app origin get exactly that origin (never ``*``); an unlisted origin gets nothing.
    (The token endpoint also allows credentials: the SPA's sign-in sets the session cookies
    through it, DESIGN.md section 7.)"""
    pre = await preflight(gw, "/oauth2/token", APP, "POST", "content-type")
    assert 200 <= pre.status < 300
    assert pre.headers.getall("Access-Control-Allow-Origin", []) == [APP]
    signed = await gw.sign_in(client_id="spab")
    assert signed.headers.getall("Access-Control-Allow-Origin", []) == [APP]
    assert signed.headers.get("Access-Control-Allow-Credentials") == "true"
    token = signed.body["access_token"]
    info = await send(
        gw, "/oauth2/userinfo", headers={"Authorization": f"Bearer {token}"}, browser=True
    )
    assert info.status == 200, info.text
    assert info.headers.getall("Access-Control-Allow-Origin", []) == [APP]
    assert "origin" in vary(info)
    for path in ("/oauth2/token", "/oauth2/userinfo"):
        evil_pre = await preflight(gw, path, EVIL, "POST", "content-type")
        assert_no_grant(evil_pre)
    evil_info = await send(
        gw, "/oauth2/userinfo", headers={"Authorization": f"Bearer {token}", "Origin": EVIL}
    )
    assert_no_grant(evil_info)
