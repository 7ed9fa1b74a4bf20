"""Token handler: sign-in cookies, session binding, CSRF, logout, transparent refresh and bearer
handling (SECURITY-CHECKLIST group G, items 80-91, and item 100), through real HTTP: the gateway,
a recording upstream and a real PostgreSQL.

Items 76-79 and the login/callback parts of 91 (the token handler's own sign-in, /login/start
and /login/callback) are tested in tests/http/test_bff_login.py and, with an external provider,
tests/http/test_bff_external.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import pytest

from gateway.tokens.seal import Sealer
from tests.http.proxy_support import (
    APP,
    AT,
    EVIL,
    RT,
    SESSION_COOKIES,
    SID,
    Answer,
    Gateway,
    SignIn,
    add_users,
    assert_th401,
    bearer_claims,
    cleared,
    cookie_header,
    family_rows,
    parse_set_cookies,
    poll,
    renewed,
    running_gateway,
    send,
)
from tests.support import (
    create_database,
    drop_database,
    dsn_with_database,
    gateway_env,
    run_gateway,
)

JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.")
TOKEN_MEMBERS = ("access_token", "refresh_token", "id_token", "secret")
JSONCT = {"Content-Type": "application/json"}


@pytest.fixture
async def gw(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path / "conf", database_url) as gateway:
        yield gateway


@pytest.fixture
async def short_gw(
    tmp_path: Path, database_url: str, users: dict[str, str]
) -> AsyncIterator[Gateway]:
    """Access tokens live 2 s, the refresh grace is 1 s."""
    async with running_gateway(
        tmp_path / "conf", database_url, tokens={"access_ttl": 2, "refresh_grace": 1}
    ) as gateway:
        yield gateway


def assert_hardened(lines: list[str], *, names: tuple[str, ...] = SESSION_COOKIES) -> None:
    """Item 82: every session cookie is Secure, HttpOnly, Path=/, host-only, SameSite set (None
    only with Secure), and each ``Set-Cookie`` line fits in 4096 bytes."""
    parsed = parse_set_cookies(lines)
    assert set(names) <= set(parsed), lines
    for name in names:
        morsel = parsed[name][name]
        assert morsel["secure"], (name, lines)
        assert morsel["httponly"], (name, lines)
        assert morsel["path"] == "/", (name, lines)
        assert not morsel["domain"], (name, lines)
        assert morsel["samesite"] in ("Strict", "Lax", "None"), (name, lines)
    for line in lines:
        assert len(line.encode()) <= 4096, len(line)


def assert_cleared(answer: Answer) -> None:
    """The three session cookies are deleted (empty, ``Max-Age=0``) with their attributes."""
    assert set(SESSION_COOKIES) <= cleared(answer.set_cookies), answer.set_cookies
    assert_hardened(answer.set_cookies)


def assert_not_cleared(answer: Answer) -> None:
    assert not cleared(answer.set_cookies) & set(SESSION_COOKIES), answer.set_cookies


def flip(sealed: str, index: int) -> str:
    """The sealed value with one bit of its decoded body flipped."""
    kid, _, body = sealed.partition(".")
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw[index] ^= 0x01
    return kid + "." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


async def refresh_grant(gw: Gateway, client_id: str, refresh_token: str) -> Answer:
    return await send(
        gw,
        "/oauth2/token",
        method="POST",
        data={
            "grant_type": "refresh_token",
            "client_id": client_id,
            "refresh_token": refresh_token,
        },
        headers={"Origin": APP},
    )


async def seen_bearer(gw: Gateway, cookies: str) -> str:
    """The access token the upstream receives for a request with ``cookies``."""
    gw.upstream.clear()
    answer = await send(gw, "/api/orders/probe", cookies=cookies)
    assert answer.status == 200, answer.text
    assert len(gw.upstream.requests) == 1
    bearer = gw.upstream.requests[0].bearer
    assert bearer is not None
    return bearer


# --- items 82 and 83: the sign-in answer --------------------------------------------------------


async def test_sign_in_sets_hardened_sealed_cookies_and_no_token_reaches_javascript(
    gw: Gateway,
) -> None:
    """Items 82 and 83: ``POST /oauth2/token`` for the cookie-only SPA client sets
    ``__Secure-AT``, ``__Secure-RT`` and ``SID`` (Secure, HttpOnly, Path=/, no Domain, lines of
    at most 4096 bytes, SID lifetime within the refresh token's), answers ``no-store`` and carries
    no token in its body or headers: not the access token the upstream later receives, nor any
    JWT-shaped value, nor a token member."""
    signed = await gw.sign_in()
    assert_hardened(signed.set_cookies)
    assert signed.headers.get("Cache-Control") == "no-store"
    parsed = parse_set_cookies(signed.set_cookies)
    assert int(parsed[SID][SID]["max-age"]) <= 5184000
    body = signed.body
    assert not any(member in body for member in TOKEN_MEMBERS), body
    visible = signed.text + "\n".join(
        f"{k}: {v}" for k, v in signed.headers.items() if k.lower() != "set-cookie"
    )
    assert not JWT_LIKE.search(visible), visible
    bearer = await seen_bearer(gw, signed.cookie_header())
    for part in bearer.split("."):
        assert part[:24] not in visible
        assert all(part[:24] not in line for line in signed.set_cookies)


async def test_cookie_values_are_neither_jwts_nor_the_tokens(gw: Gateway) -> None:
    """Item 80 (confidentiality) and item 83: with a client that also returns the tokens in the
    body (so the test knows them), no cookie holds the access, refresh or ID token, nor any
    parseable JWT."""
    signed = await gw.sign_in(client_id="spab")
    body = signed.body
    tokens = [body["access_token"], body["refresh_token"], body["id_token"]]
    for name, value in signed.cookies.items():
        for token in tokens:
            assert token not in value, name
            assert token[-20:] not in value, name
        assert not JWT_LIKE.search(value), name
        with pytest.raises(jwt.DecodeError):
            jwt.get_unverified_header(value)


# --- items 80 and 81: integrity and binding -----------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    ["a-x", "b-flip-iv", "b-flip-ciphertext", "b-flip-tag", "c-other-key", "d-raw-jwt", "e-empty"],
)
async def test_tampered_access_cookie_is_refused(gw: Gateway, variant: str) -> None:
    """Item 80 (integrity): with a valid ``SID``, an ``__Secure-AT`` that is (a) ``x``, (b) the
    valid value with one bit flipped in the IV, ciphertext or tag, (c) the same access token
    sealed with another key under the same key id, (d) the raw access token or (e) empty gets
    ``TH401`` and nothing reaches the upstream."""
    signed = await gw.sign_in(client_id="spab")
    valid = signed.cookies[AT]
    raw_at = signed.body["access_token"]
    value = {
        "a-x": "x",
        "b-flip-iv": flip(valid, 0),
        "b-flip-ciphertext": flip(valid, 40),
        "b-flip-tag": flip(valid, -1),
        "c-other-key": Sealer([(valid.split(".")[0], os.urandom(32))]).seal(
            raw_at.encode(), purpose=f"cookie:{AT}"
        ),
        "d-raw-jwt": raw_at,
        "e-empty": "",
    }[variant]
    assert value != valid
    answer = await send(
        gw, "/api/orders/1", cookies=cookie_header({AT: value, SID: signed.cookies[SID]})
    )
    assert_th401(answer, gw.upstream)
    # Control: the untampered pair passes.
    ok = await send(gw, "/api/orders/1", cookies=signed.cookie_header((AT, SID)))
    assert ok.status == 200, ok.text


async def test_cookies_of_two_sessions_do_not_mix(gw: Gateway) -> None:
    """Item 81: alice's ``__Secure-AT`` and ``__Secure-RT`` with bob's ``SID`` get ``TH401``;
    alice's refresh token with bob's ``SID`` (no access token) does not refresh either."""
    alice = await gw.sign_in(username="alice")
    bob = await gw.sign_in(username="bob")
    mixed = cookie_header({AT: alice.cookies[AT], RT: alice.cookies[RT], SID: bob.cookies[SID]})
    assert_th401(await send(gw, "/api/orders/1", cookies=mixed), gw.upstream)
    only_refresh = cookie_header({RT: alice.cookies[RT], SID: bob.cookies[SID]})
    answer = await send(gw, "/api/orders/1", cookies=only_refresh)
    assert_th401(answer, gw.upstream)
    assert not renewed(answer.set_cookies), answer.set_cookies
    rows = await family_rows(gw.database_url, alice.body["session"])
    assert [r["generation"] for r in rows] == [0], rows


# --- items 84 and 85: CSRF ----------------------------------------------------------------------


async def test_route_requiring_csrf_header_refuses_post_without_it(gw: Gateway) -> None:
    """Item 84: on a route with ``csrf_header``, (a) a cookie-authenticated POST from the allowed
    origin without ``X-CSRF-Token`` gets 403 JSON and is not forwarded; (b) with the header it is
    forwarded with its body; (d) a GET without the header is forwarded: the product exempts safe
    methods (DESIGN.md section 6), so GETs must stay side-effect-free."""
    signed = await gw.sign_in()
    cookies = signed.cookie_header()
    refused = await send(
        gw, "/api/csrf/create", method="POST", cookies=cookies, headers=JSONCT, data=b'{"item":1}'
    )
    assert refused.status == 403, refused.text
    assert refused.json()["error"]
    assert gw.upstream.requests == []
    allowed = await send(
        gw,
        "/api/csrf/create",
        method="POST",
        cookies=cookies,
        headers={**JSONCT, "X-CSRF-Token": "1"},
        data=b'{"item":1}',
    )
    assert allowed.status == 200, allowed.text
    assert [(r.method, r.body) for r in gw.upstream.requests] == [("POST", b'{"item":1}')]
    gw.upstream.clear()
    read = await send(gw, "/api/csrf/1", cookies=cookies)
    assert read.status == 200, read.text
    assert len(gw.upstream.requests) == 1


CROSS_SITE = {
    "a-origin-evil": ({"Origin": EVIL, **JSONCT}, b'{"item":1}'),
    "b-origin-null": ({"Origin": "null", **JSONCT}, b'{"item":1}'),
    "c-no-origin-cross-site": ({"Sec-Fetch-Site": "cross-site", **JSONCT}, b'{"item":1}'),
    "d-text-plain-evil": (
        {"Origin": EVIL, "Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"},
        b'{"item":1}',
    ),
    "e-form-evil": (
        {
            "Origin": EVIL,
            "Content-Type": "application/x-www-form-urlencoded",
            "Sec-Fetch-Site": "cross-site",
        },
        b"item=1",
    ),
    "referer-evil": ({"Referer": f"{EVIL}/page", **JSONCT}, b'{"item":1}'),
    "no-origin-no-fetch-metadata": (JSONCT, b'{"item":1}'),
    "look-alike-origin": ({"Origin": "https://app.example.test.evil.example", **JSONCT}, b"{}"),
}


@pytest.mark.parametrize("path", ["/api/orders/create", "/api/csrf/create"])
@pytest.mark.parametrize("case", sorted(CROSS_SITE))
async def test_cross_site_unsafe_requests_are_refused(gw: Gateway, case: str, path: str) -> None:
    """Item 85: with valid cookies (and the CSRF header on the route that needs one), a POST from
    (a) ``https://evil.example``, (b) ``Origin: null``, (c) no Origin with
    ``Sec-Fetch-Site: cross-site``, (d) evil with a ``text/plain`` body, (e) evil with a form body,
    or with only an evil ``Referer``, no Origin/Referer/fetch metadata at all, or a look-alike
    origin gets 403, has no ``Access-Control-Allow-Origin`` and is not forwarded (so the
    ``text/plain`` body is never parsed by anyone)."""
    signed = await gw.sign_in()
    headers, body = CROSS_SITE[case]
    if path.startswith("/api/csrf/") and not case.startswith(("d-", "e-")):
        headers = {**headers, "X-CSRF-Token": "1"}
    answer = await send(
        gw,
        path,
        method="POST",
        cookies=signed.cookie_header(),
        headers=headers,
        data=body,
        browser=False,
    )
    assert answer.status in (401, 403), (answer.status, answer.text)
    assert "Access-Control-Allow-Origin" not in answer.headers, answer.headers
    assert "Access-Control-Allow-Credentials" not in answer.headers
    assert gw.upstream.requests == []


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_every_unsafe_method_needs_an_allowed_origin(gw: Gateway, method: str) -> None:
    """Items 84-85: the origin check covers PUT, PATCH and DELETE like POST."""
    signed = await gw.sign_in()
    answer = await send(
        gw, "/api/orders/1", method=method, cookies=signed.cookie_header(), headers={"Origin": EVIL}
    )
    assert answer.status == 403, answer.text
    assert gw.upstream.requests == []
    ok = await send(gw, "/api/orders/1", method=method, cookies=signed.cookie_header())
    assert ok.status == 200, ok.text
    assert [r.method for r in gw.upstream.requests] == [method]


@pytest.mark.parametrize(
    "headers",
    [
        {"Referer": f"{APP}/orders/new"},
        {"Sec-Fetch-Site": "same-origin"},
    ],
    ids=["referer-app", "same-origin-fetch-metadata"],
)
async def test_same_site_post_without_origin_is_forwarded(
    gw: Gateway, headers: dict[str, str]
) -> None:
    """Item 85 (the other side): with no ``Origin``, an allowed ``Referer`` origin or
    ``Sec-Fetch-Site: same-origin`` is enough."""
    signed = await gw.sign_in()
    answer = await send(
        gw,
        "/api/orders/create",
        method="POST",
        cookies=signed.cookie_header(),
        headers={**headers, **JSONCT},
        data=b"{}",
        browser=False,
    )
    assert answer.status == 200, answer.text
    assert len(gw.upstream.requests) == 1


# --- items 86 and 87: logout --------------------------------------------------------------------


async def test_logout_clears_cookies_revokes_refresh_and_ends_the_session(gw: Gateway) -> None:
    """Items 86 and 87: ``POST /oauth2/logout`` with the cookies from the SPA's origin answers
    2xx and deletes ``__Secure-AT``, ``__Secure-RT`` and ``SID`` with the attributes they were
    set with; the refresh token is revoked (``invalid_grant`` at the token endpoint); replaying
    the pre-logout cookies on the proxy gets ``TH401`` within about a second (server-side
    revocation through LISTEN/NOTIFY), as do the access or refresh cookie alone."""
    signed = await gw.sign_in(client_id="spab")
    cookies = signed.cookie_header()
    assert (await send(gw, "/api/orders/1", cookies=cookies)).status == 200
    gw.upstream.clear()
    out = await send(gw, "/oauth2/logout", method="POST", cookies=cookies)
    assert out.status in (200, 204), out.text
    assert_cleared(out)

    async def refused() -> Answer | None:
        answer = await send(gw, "/api/orders/1", cookies=cookies)
        return answer if answer.status == 401 else None

    started = time.monotonic()
    answer = await poll(refused, timeout=3.0)
    assert answer is not None, "the pre-logout cookies still work 3 s after logout"
    assert time.monotonic() - started < 2.0
    assert_th401(answer)
    gw.upstream.clear()
    for names in ((AT, SID), (AT,), (RT, SID), (RT,)):
        assert_th401(await send(gw, "/api/orders/1", cookies=signed.cookie_header(names)))
    assert gw.upstream.requests == []
    again = await refresh_grant(gw, "spab", signed.body["refresh_token"])
    assert again.status == 400, again.text
    assert again.json()["error"] == "invalid_grant"


async def test_logout_needs_post_from_an_allowed_origin(gw: Gateway) -> None:
    """Item 86 (b) and logout CSRF: ``GET /oauth2/logout`` and a POST from another origin do
    not sign out: no session cookie is cleared and the session keeps working."""
    signed = await gw.sign_in()
    cookies = signed.cookie_header()
    page = await send(gw, "/oauth2/logout", cookies=cookies)
    assert page.status in (200, 405), page.text
    assert_not_cleared(page)
    evil = await send(
        gw, "/oauth2/logout", method="POST", cookies=cookies, headers={"Origin": EVIL}
    )
    assert evil.status == 403, evil.text
    assert_not_cleared(evil)
    # Nothing to wait for: a logout ends the session in the database before it answers.
    conn = await asyncpg.connect(gw.database_url)
    try:
        ended = await conn.fetchval(
            "SELECT revoked_at FROM auth.session WHERE id = $1::uuid", signed.body["session"]
        )
    finally:
        await conn.close()
    assert ended is None
    still = await send(gw, "/api/orders/1", cookies=cookies)
    assert still.status == 200, still.text


# --- items 88 and 89: transparent refresh --------------------------------------------------------


async def assert_refreshed(
    gw: Gateway, answer: Answer, before: SignIn, old_bearer: str | None
) -> str:
    """The request was forwarded with a new, unexpired access token of the same session, and the
    answer renews all three cookies with hardened attributes; the new bearer."""
    assert answer.status == 200, answer.text
    assert len(gw.upstream.requests) == 1, [r.path_qs for r in gw.upstream.requests]
    bearer = gw.upstream.requests[0].bearer
    assert bearer is not None
    assert bearer != old_bearer, "the upstream received the old access token"
    claims = bearer_claims(bearer)
    assert claims["exp"] > gw.clock.time(), "the upstream received an expired access token"
    assert claims["sid"] == before.body["session"]
    fresh = renewed(answer.set_cookies)
    assert set(SESSION_COOKIES) <= set(fresh), answer.set_cookies
    assert fresh[AT] != before.cookies[AT]
    assert fresh[RT] != before.cookies[RT]
    assert_hardened(answer.set_cookies)
    assert answer.headers.get("Cache-Control") == "no-store"
    return bearer


async def test_expired_access_token_is_refreshed_transparently(short_gw: Gateway) -> None:
    """Item 88: once the access token has expired (TTL 2 s, the clock moved 3 s), a request with the
    cookies is forwarded with a new Bearer (never the expired one), answered 200 with new
    ``__Secure-AT``/``__Secure-RT``/``SID`` cookies, and after the refresh grace the previous
    refresh token gets ``invalid_grant`` at the token endpoint."""
    gw = short_gw
    signed = await gw.sign_in(client_id="spab")
    old_bearer = await seen_bearer(gw, signed.cookie_header())
    gw.clock.advance(3.0)
    gw.upstream.clear()
    answer = await send(gw, "/api/orders/1", cookies=signed.cookie_header())
    await assert_refreshed(gw, answer, signed, old_bearer)
    rows = await family_rows(gw.database_url, signed.body["session"])
    assert [r["generation"] for r in rows] == [0, 1], rows
    gw.clock.advance(1.5)
    replay = await refresh_grant(gw, "spab", signed.body["refresh_token"])
    assert replay.status == 400, replay.text
    assert replay.json()["error"] == "invalid_grant"


async def test_missing_access_cookie_is_refreshed_and_new_cookies_work(gw: Gateway) -> None:
    """Item 88 (refresh path without waiting): with only ``__Secure-RT`` and ``SID`` the request
    is refreshed inline: one new refresh-token generation, a new Bearer upstream, new cookies in
    the answer; the renewed cookies then work without another refresh."""
    signed = await gw.sign_in()
    old_bearer = await seen_bearer(gw, signed.cookie_header())
    gw.upstream.clear()
    answer = await send(gw, "/api/orders/1", cookies=signed.cookie_header((RT, SID)))
    new_bearer = await assert_refreshed(gw, answer, signed, old_bearer)
    rows = await family_rows(gw.database_url, signed.body["session"])
    assert [r["generation"] for r in rows] == [0, 1], rows
    fresh = renewed(answer.set_cookies)
    assert await seen_bearer(gw, cookie_header(fresh)) == new_bearer
    rows = await family_rows(gw.database_url, signed.body["session"])
    assert [r["generation"] for r in rows] == [0, 1], rows


async def test_superseded_refresh_cookie_after_grace_ends_the_session(gw: Gateway) -> None:
    """Items 88 and 90: after a transparent refresh whose new cookies the browser has used, the
    old cookie jar after the grace (1 s) is a replay: ``TH401`` with cleared cookies, and the
    session ends (the renewed cookies stop working too, RFC 9700 section 4.14.2). A stolen jar
    one generation old is no lost response once the browser has shown the new access token."""
    signed = await gw.sign_in()
    first = await send(gw, "/api/orders/1", cookies=signed.cookie_header((RT, SID)))
    assert first.status == 200, first.text
    fresh = renewed(first.set_cookies)
    assert (await send(gw, "/api/orders/2", cookies=cookie_header(fresh))).status == 200

    async def delivered() -> bool:
        rows = await family_rows(gw.database_url, signed.body["session"])
        return all(r["delivered_generation"] == 1 for r in rows)

    assert await poll(delivered, timeout=5.0), "the browser's use of the new token was not seen"
    gw.clock.advance(1.6)
    gw.upstream.clear()
    replay = await send(gw, "/api/orders/1", cookies=signed.cookie_header((RT, SID)))
    assert_th401(replay, gw.upstream)
    assert_cleared(replay)

    async def ended() -> bool:
        answer = await send(gw, "/api/orders/1", cookies=cookie_header({RT: fresh[RT]}))
        return answer.status == 401

    assert await poll(ended, timeout=3.0), "the renewed cookies survived a refresh-token replay"


async def test_a_lost_refresh_response_logs_nobody_out(gw: Gateway) -> None:
    """Issue 9 item 5: a transparent refresh whose answer never reached the browser (a closed
    tab, an aborted fetch): after the grace the browser comes back with its old cookies and is
    renewed again, not logged out; the successor it never received is dead, and if it shows up
    after all (a second holder), the session ends."""
    signed = await gw.sign_in()
    lost = await send(gw, "/api/orders/1", cookies=signed.cookie_header((RT, SID)))
    assert lost.status == 200, lost.text
    never_received = renewed(lost.set_cookies)
    gw.clock.advance(1.6)
    back = await send(gw, "/api/orders/1", cookies=signed.cookie_header((RT, SID)))
    assert back.status == 200, back.text
    current = renewed(back.set_cookies)
    assert current[RT] != never_received[RT]
    rows = await family_rows(gw.database_url, signed.body["session"])
    assert [r["generation"] for r in rows] == [0, 1, 2], rows
    assert (await send(gw, "/api/orders/2", cookies=cookie_header(current))).status == 200
    gw.clock.advance(1.6)
    stale = {RT: never_received[RT], SID: never_received[SID]}
    gw.upstream.clear()
    assert_th401(await send(gw, "/api/orders/3", cookies=cookie_header(stale)), gw.upstream)

    async def ended() -> bool:
        answer = await send(gw, "/api/orders/4", cookies=cookie_header({RT: current[RT]}))
        return answer.status == 401

    assert await poll(ended, timeout=3.0), "two holders of one family kept the session alive"


async def concurrent_refresh(gw: Gateway, signed: SignIn, cookies: str, old_bearer: str) -> None:
    """50 parallel requests with the same cookies that need a refresh: all 200, exactly one new
    refresh-token generation, one new Bearer for all, the session intact."""
    gw.upstream.clear()
    session = gw.bare()
    answers = await asyncio.wait_for(
        asyncio.gather(
            *(send(gw, f"/api/orders/{i}", cookies=cookies, session=session) for i in range(50))
        ),
        timeout=60,
    )
    assert [a.status for a in answers] == [200] * 50, [a.text for a in answers if a.status != 200]
    rows = await family_rows(gw.database_url, signed.body["session"])
    assert [r["generation"] for r in rows] == [0, 1], rows
    bearers = {r.bearer for r in gw.upstream.requests}
    assert len(gw.upstream.requests) == 50
    assert len(bearers) == 1, f"{len(bearers)} different access tokens went upstream"
    assert old_bearer not in bearers
    for answer in answers:
        assert set(SESSION_COOKIES) <= set(renewed(answer.set_cookies)), answer.set_cookies
    gw.clock.advance(1.5)  # past the grace: the renewed jar must hold the one live token
    final = renewed(answers[-1].set_cookies)
    later = await send(
        gw, "/api/orders/after", cookies=cookie_header({RT: final[RT], SID: final[SID]})
    )
    assert later.status == 200, later.text
    rows = await family_rows(gw.database_url, signed.body["session"])
    assert [r["generation"] for r in rows] == [0, 1, 2], rows


async def test_concurrent_requests_with_expired_token_refresh_once(short_gw: Gateway) -> None:
    """Item 89: after access-token expiry, 50 parallel requests with the same cookie jar all get
    200 and the database sees exactly one refresh (one new generation in the family)."""
    gw = short_gw
    signed = await gw.sign_in()
    old_bearer = await seen_bearer(gw, signed.cookie_header())
    gw.clock.advance(3.0)
    await concurrent_refresh(gw, signed, signed.cookie_header(), old_bearer)


async def test_concurrent_requests_without_access_cookie_refresh_once(gw: Gateway) -> None:
    """Item 89 (refresh path without waiting): 50 parallel requests carrying only
    ``__Secure-RT`` and ``SID`` share one refresh."""
    signed = await gw.sign_in()
    old_bearer = await seen_bearer(gw, signed.cookie_header())
    await concurrent_refresh(gw, signed, signed.cookie_header((RT, SID)), old_bearer)


# --- item 90: refresh failure and bounded retries -------------------------------------------------


async def test_revoked_refresh_token_gives_401_and_clears_cookies(short_gw: Gateway) -> None:
    """Item 90 (a): the refresh token is revoked at ``/oauth2/revoke``, the access token expires;
    the next request gets ``TH401`` with ``__Secure-AT``, ``__Secure-RT`` and ``SID`` cleared, and
    a request carrying only the refresh cookie likewise."""
    gw = short_gw
    signed = await gw.sign_in(client_id="spab")
    revoke = await send(
        gw,
        "/oauth2/revoke",
        method="POST",
        data={"token": signed.body["refresh_token"], "client_id": "spab"},
    )
    assert revoke.status == 200, revoke.text
    gw.clock.advance(3.0)
    gw.upstream.clear()
    for cookies in (signed.cookie_header(), signed.cookie_header((RT, SID))):
        answer = await send(gw, "/api/orders/1", cookies=cookies)
        assert_th401(answer, gw.upstream)
        assert_cleared(answer)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_upstream_401_is_retried_once_after_a_refresh(gw: Gateway, method: str) -> None:
    """Item 90 (b): an upstream that answers 401 to every token gets an idempotent request at
    most twice: once with the session's token, once after one refresh with the new token (same
    body); the SPA then sees the 401 with its challenge (item 91). No loop."""
    signed = await gw.sign_in()
    body = b'{"item":1}' if method == "PUT" else None
    answer = await send(
        gw,
        "/api/orders/always401",
        method=method,
        cookies=signed.cookie_header(),
        headers=JSONCT if body else None,
        data=body,
    )
    assert answer.status == 401, answer.text
    assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer"), answer.headers
    calls = gw.upstream.requests
    assert len(calls) == 2, [r.bearer for r in calls]
    assert calls[0].bearer != calls[1].bearer
    assert [c.body for c in calls] == [body or b""] * 2
    rows = await family_rows(gw.database_url, signed.body["session"])
    assert [r["generation"] for r in rows] == [0, 1], rows


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_upstream_401_never_replays_a_non_idempotent_request(
    gw: Gateway, method: str
) -> None:
    """Issue 9 item 4: a POST or PATCH refused with 401 reaches the upstream once; the SPA gets
    that 401 with the renewed cookies, and its own retry with them goes through."""
    signed = await gw.sign_in()
    body = b'{"transfer": 100}'
    first = await send(
        gw,
        "/api/orders/refuse-first",
        method=method,
        cookies=signed.cookie_header(),
        headers=JSONCT,
        data=body,
    )
    assert first.status == 401, first.text
    assert first.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert len(gw.upstream.requests) == 1
    new_cookies = renewed(first.set_cookies)
    assert {AT, RT} <= set(new_cookies), first.set_cookies
    retry = await send(
        gw,
        "/api/orders/refuse-first",
        method=method,
        cookies=cookie_header({**signed.cookies, **new_cookies}),
        headers=JSONCT,
        data=body,
    )
    assert retry.status == 200, retry.text
    assert [r.body for r in gw.upstream.requests] == [body, body]
    assert gw.upstream.requests[0].bearer != gw.upstream.requests[1].bearer


async def test_an_upstream_401_renews_each_token_once(gw: Gateway) -> None:
    """Issue 9 item 4: twenty POSTs that an upstream keeps refusing, each sent with the cookies
    the previous answer set: the refresh token rotates once, not twenty times, and every POST
    reaches the upstream once."""
    signed = await gw.sign_in()
    cookies = dict(signed.cookies)
    for _ in range(20):
        answer = await send(
            gw,
            "/api/orders/always401",
            method="POST",
            cookies=cookie_header(cookies),
            headers=JSONCT,
            data=b"{}",
        )
        assert answer.status == 401
        cookies.update(renewed(answer.set_cookies))
    assert len(gw.upstream.requests) == 20
    rows = await family_rows(gw.database_url, signed.body["session"])
    assert [r["generation"] for r in rows] == [0, 1], rows


async def test_upstream_401_without_refresh_cookie_is_not_retried(gw: Gateway) -> None:
    """Item 90 (b): without a refresh token there is nothing to retry with: one upstream call."""
    signed = await gw.sign_in()
    answer = await send(gw, "/api/orders/always401", cookies=signed.cookie_header((AT, SID)))
    assert answer.status == 401
    assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert len(gw.upstream.requests) == 1


# --- item 91: every 401 has a challenge -----------------------------------------------------------


async def test_every_token_handler_401_has_a_challenge(gw: Gateway) -> None:
    """Item 91: the token handler's 401s (no credentials, unknown cookies, garbage cookies, an
    invalid bearer) all carry ``WWW-Authenticate: Bearer ...`` and reach no upstream."""
    cases: list[tuple[str | None, dict[str, str]]] = [
        (None, {}),
        ("other=1", {}),
        (cookie_header({AT: "garbage", RT: "garbage", SID: "garbage"}), {}),
        (None, {"Authorization": "Bearer not-a-token"}),
        (None, {"Authorization": "Basic YTpi"}),
    ]
    for cookies, headers in cases:
        answer = await send(gw, "/api/orders/1", cookies=cookies, headers=headers)
        assert_th401(answer, gw.upstream)


# --- item 100: the gateway alone controls Authorization -------------------------------------------


async def test_client_bearer_never_rides_on_a_cookie_session(gw: Gateway) -> None:
    """Item 100 (a): valid cookies plus ``Authorization: Bearer attacker-token``: the attacker's
    token never reaches the upstream (the product verifies the header and refuses it: 401)."""
    signed = await gw.sign_in()
    answer = await send(
        gw,
        "/api/orders/1",
        cookies=signed.cookie_header(),
        headers={"Authorization": "Bearer attacker-token"},
    )
    assert answer.status in (400, 401), answer.text
    if answer.status == 401:
        assert_th401(answer)
    assert all("attacker-token" not in str(r.raw_headers) for r in gw.upstream.requests)
    assert gw.upstream.requests == []


async def test_valid_bearer_is_forwarded_without_cookie_refresh(gw: Gateway) -> None:
    """Item 100 (b), the product's choice (DESIGN.md section 6): a valid
    ``Authorization: Bearer`` is verified and forwarded as is; with it, a refresh cookie is not
    used (no new generation, no ``Set-Cookie``)."""
    signed = await gw.sign_in(client_id="spab")
    token = signed.body["access_token"]
    for cookies in (None, signed.cookie_header((RT, SID))):
        gw.upstream.clear()
        answer = await send(
            gw, "/api/orders/1", cookies=cookies, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status == 200, answer.text
        assert [r.bearer for r in gw.upstream.requests] == [token]
        assert answer.set_cookies == []
    rows = await family_rows(gw.database_url, signed.body["session"])
    assert [r["generation"] for r in rows] == [0], rows


async def test_two_authorization_lines_are_refused(gw: Gateway) -> None:
    """Item 100 (c): valid cookies plus two ``Authorization`` lines: 400 or 401, nothing
    forwarded."""
    signed = await gw.sign_in()
    answer = await send(
        gw,
        "/api/orders/1",
        cookies=signed.cookie_header(),
        headers=[("Authorization", "Bearer one"), ("Authorization", "Bearer two")],
    )
    assert answer.status in (400, 401), answer.text
    assert gw.upstream.requests == []


async def test_bearer_of_a_logged_out_session_is_refused(gw: Gateway) -> None:
    """Items 87 and 100: after logout the session's access token is refused as a Bearer too."""
    signed = await gw.sign_in(client_id="spab")
    token = signed.body["access_token"]
    out = await send(gw, "/oauth2/logout", method="POST", cookies=signed.cookie_header())
    assert out.status == 200, out.text

    async def refused() -> bool:
        answer = await send(gw, "/api/orders/1", headers={"Authorization": f"Bearer {token}"})
        return answer.status == 401

    assert await poll(refused, timeout=3.0)
    gw.upstream.clear()
    answer = await send(gw, "/api/orders/1", headers={"Authorization": f"Bearer {token}"})
    assert_th401(answer, gw.upstream)
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]


# --- DESIGN.md section 6: database down ---------------------------------------------------------


async def test_database_down_valid_tokens_pass_refresh_gets_503(
    tmp_path: Path, pg_admin_dsn: str, template_db: str
) -> None:
    """DESIGN.md section 6 (failure): with the database gone, a request with a valid access
    token still passes (no database on the hot path); one that needs a refresh gets 503 with
    ``Retry-After`` and CORS headers, reaches no upstream, and keeps the session (no cookie is
    cleared)."""
    name = await create_database(pg_admin_dsn, template_db)
    dsn = dsn_with_database(pg_admin_dsn, name)
    try:
        await add_users(dsn)
        async with running_gateway(tmp_path / "conf", dsn) as gw:
            signed = await gw.sign_in()
            assert (await send(gw, "/api/orders/1", cookies=signed.cookie_header())).status == 200
            await drop_database(pg_admin_dsn, name)
            gw.upstream.clear()
            ok = await send(gw, "/api/orders/2", cookies=signed.cookie_header())
            assert ok.status == 200, ok.text
            assert len(gw.upstream.requests) == 1
            gw.upstream.clear()
            started = time.monotonic()
            down = await send(gw, "/api/orders/3", cookies=signed.cookie_header((RT, SID)))
            assert down.status == 503, down.text
            assert time.monotonic() - started < 15
            assert down.headers.get("Retry-After", "").isdigit(), down.headers
            assert down.headers.get("Access-Control-Allow-Origin") == APP
            assert_not_cleared(down)
            assert not renewed(down.set_cookies)
            assert gw.upstream.requests == []
            body: dict[str, Any] = json.loads(down.text)
            assert body["error"]
    finally:
        await drop_database(pg_admin_dsn, name)


# --- operator commands: gateway user passwd | lock | unlock -----------------------------------


async def test_password_change_and_lock_end_sessions_everywhere(
    gw: Gateway, tmp_path: Path
) -> None:
    """Item 54 (b) done the way an operator does it: ``gateway user passwd`` ends every session of
    the user, so the proxy refuses the old cookies within seconds (LISTEN/NOTIFY), the old
    refresh token is ``invalid_grant``, the old password no longer signs in and the new one does.
    ``gateway user lock`` refuses every sign-in and ends sessions; ``unlock`` allows sign-in."""
    env = gateway_env(
        GATEWAY_DATABASE_URL=gw.database_url,
        GATEWAY_CONFIG=str(tmp_path / "conf" / "gateway.json"),
    )

    async def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_gateway, *args, env=env, stdin=stdin)

    added = await cli("user", "add", "erin", "--password-stdin", stdin="Erin-0ld-pass\n")
    assert added.returncode == 0, added.stderr

    async def sign_in(password: str) -> Answer:
        return await send(
            gw,
            "/oauth2/token",
            method="POST",
            data={
                "grant_type": "password",
                "client_id": "spab",
                "username": "erin",
                "password": password,
                "scope": "openid offline_access orders.read",
            },
            headers={"Origin": APP},
        )

    first, second = await sign_in("Erin-0ld-pass"), await sign_in("Erin-0ld-pass")
    assert first.status == second.status == 200, first.text
    cookies = cookie_header(renewed(first.set_cookies))
    assert (await send(gw, "/api/orders/1", cookies=cookies)).status == 200
    bearer = {"Authorization": f"Bearer {second.json()['access_token']}"}
    assert (await send(gw, "/oauth2/userinfo", headers=bearer)).status == 200

    changed = await cli("user", "passwd", "ERIN", "--password-stdin", stdin="Erin-n3w-pass\n")
    assert (changed.returncode, changed.stderr) == (0, ""), changed.stderr
    assert changed.stdout.strip() == "ERIN: password changed; 2 sessions ended"

    async def refused() -> Answer | None:
        answer = await send(gw, "/api/orders/1", cookies=cookies)
        return answer if answer.status == 401 else None

    assert await poll(refused, timeout=3.0) is not None, "the old cookies still work"
    assert (await send(gw, "/oauth2/userinfo", headers=bearer)).status == 401
    stale = await refresh_grant(gw, "spab", second.json()["refresh_token"])
    assert (stale.status, stale.json()["error"]) == (400, "invalid_grant")
    old = await sign_in("Erin-0ld-pass")
    assert (old.status, old.json()["error"]) == (400, "invalid_grant")
    fresh = await sign_in("Erin-n3w-pass")
    assert fresh.status == 200, fresh.text

    locked = await cli("user", "lock", "erin")
    assert locked.stdout.strip() == "erin: locked; 1 session ended", locked.stderr
    refused_lock = await sign_in("Erin-n3w-pass")
    assert (refused_lock.status, refused_lock.json()["error"]) == (400, "invalid_grant")
    stale = await refresh_grant(gw, "spab", fresh.json()["refresh_token"])
    assert stale.status == 400, stale.text
    unlocked = await cli("user", "unlock", "erin")
    assert unlocked.stdout.strip() == "erin: unlocked; 0 sessions ended", unlocked.stderr
    assert (await sign_in("Erin-n3w-pass")).status == 200


async def test_user_commands_explain_bad_input(gw: Gateway, tmp_path: Path) -> None:
    """An unknown user is exit 1 with one readable line; a missing or empty password is exit 2;
    nothing changes in the database either way."""
    env = gateway_env(
        GATEWAY_DATABASE_URL=gw.database_url,
        GATEWAY_CONFIG=str(tmp_path / "conf" / "gateway.json"),
    )
    cases = [
        (
            ("user", "passwd", "nobody", "--password-stdin"),
            "x-Pass-123",
            1,
            "error: there is no user 'nobody'",
        ),
        (("user", "lock", "nobody"), "", 1, "error: there is no user 'nobody'"),
        (("user", "passwd", "alice"), "", 2, None),
        (("user", "passwd", "alice", "--password-stdin"), "\n", 2, "error: the password is empty"),
    ]
    before = await first_value(
        gw.database_url, "SELECT password_hash FROM auth.users WHERE username = 'alice'"
    )
    for args, stdin, code, message in cases:
        result = await asyncio.to_thread(run_gateway, *args, env=env, stdin=stdin)
        assert result.returncode == code, (args, result.stderr)
        assert "Traceback" not in result.stderr
        if message:
            assert result.stderr.strip() == message
    after = await first_value(
        gw.database_url, "SELECT password_hash FROM auth.users WHERE username = 'alice'"
    )
    assert after == before


async def first_value(database_url: str, query: str) -> Any:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()
