"""Sign-in through the token handler in front of an external OpenID provider (issue 11 item 2),
and everything that can go wrong with one: a bad ID token, a provider that is down or slow or
rotates its keys or refuses a refresh; refreshes at the provider under the gateway's own rules
(one at a time, the same successor within the grace, a lost response recovered, a replay
refused); sign-out revoking at the provider.

The provider here is the tests' own (tests/provider.py: discovery, rotating refresh tokens,
revocation, key rotation, faults on demand); tests/e2e/test_bff_browser.py runs a real one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg
import jwt
import pytest
from aiohttp import ClientResponse
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.keys import CONFIG
from tests.http.checklist import serving
from tests.http.conftest import ISSUER, RELAXED_LIMITS
from tests.http.proxy_support import Upstream, cleared, parse_set_cookies, poll, renewed
from tests.provider import FakeProvider
from tests.support import Client, clock_of, write_conf

APP = "https://app.example.test"
AT, RT, SID = "__Secure-AT", "__Secure-RT", "SID"
SECRET = "bff-op-secret-0123456789"
ALICE = {
    "sub": "op-alice",
    "preferred_username": "alice.op",
    "name": "Alice at the provider",
    "email": "alice@op.example.test",
}


@dataclass
class Site:
    browser: Client
    provider: FakeProvider
    upstream: Upstream
    database_url: str


def external_config(
    directory: Path, provider: FakeProvider, upstream: Upstream, **tokens: int
) -> Path:
    path = write_conf(
        directory,
        gateway={
            "issuer": ISSUER,
            "limits": RELAXED_LIMITS,
            "tokens": {"refresh_grace": 2, **tokens},
            "login": {"client": "bff", "provider": "op"},
            "routes": [
                {
                    "prefix": "/api/",
                    "upstream": upstream.root,
                    "identity_headers": {"X-User-Name": "preferred_username"},
                }
            ],
        },
    )
    app = {
        "client_id": "bff",
        "client_secret": SECRET,
        "issuers": [provider.issuer],
        "scopes": ["openid", "profile", "email", "offline_access"],
        "javascript_origins": [APP],
    }
    (directory / "oauth2" / "op.json").write_text(json.dumps({"bff": app}))
    return path


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider("bff", SECRET, f"{ISSUER}/login/callback", accounts={"alice": ALICE})
    await fake.start()
    yield fake
    assert fake.server is not None
    await fake.server.close()


@pytest.fixture
async def site(tmp_path: Path, database_url: str, provider: FakeProvider) -> AsyncIterator[Site]:
    upstream = Upstream()
    await upstream.start()
    try:
        conf = external_config(tmp_path / "conf", provider, upstream)
        async with serving(conf, database_url) as browser:
            yield Site(browser, provider, upstream, database_url)
    finally:
        await upstream.close()


def local(url: str) -> str:
    assert url.startswith(ISSUER + "/"), url
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def start(site: Site) -> str:
    """/login/start; the provider's authorization URL."""
    response = await site.browser.get(
        "/login/start", params={"return_to": f"{APP}/home"}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    assert location.startswith(f"{site.provider.issuer}/authorize?")
    return location


async def callback(
    site: Site, location: str, claims: dict[str, Any] | None = None
) -> ClientResponse:
    back = site.provider.authorize(location, claims or {**ALICE, "auth_time": int(time.time())})
    return await site.browser.get(f"/login/callback?{urlencode(back)}", allow_redirects=False)


async def sign_in(site: Site) -> ClientResponse:
    done = await callback(site, await start(site))
    assert done.status == 303, await done.text()
    return done


def lines(response: ClientResponse) -> list[str]:
    return response.headers.getall("Set-Cookie", [])


async def api(site: Site, cookies: str | None = None) -> ClientResponse:
    headers = {"Origin": APP}
    if cookies is not None:
        headers["Cookie"] = cookies
        site.browser.session.cookie_jar.clear()
    return await site.browser.get("/api/orders", headers=headers)


def jar(site: Site) -> str:
    return "; ".join(f"{c.key}={c.value}" for c in site.browser.session.cookie_jar)


# --- signing in ------------------------------------------------------------------------------


async def test_sign_in_calls_the_api_with_the_providers_token(site: Site) -> None:
    location = await start(site)
    query = parse_qs(urlsplit(location).query)
    assert query["client_id"] == ["bff"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["prompt"] == ["consent"]  # offline_access asks for consent (OIDC Core 11)
    done = await callback(site, location)
    assert done.status == 303
    assert done.headers["Location"] == f"{APP}/home"
    assert {AT, RT, SID} <= set(renewed(lines(done)))
    # The code went to the provider's token endpoint with HTTP Basic client authentication.
    assert site.provider.token_requests[-1]["client_secret"] == SECRET

    user = await site.browser.get("/login/user", headers={"Origin": APP})
    body = await user.json()
    assert user.status == 200, body
    assert body["sub"] == "op-alice"
    assert body["preferred_username"] == "alice.op"
    assert body["issuer"] == site.provider.issuer

    answer = await api(site)
    assert answer.status == 200, await answer.text()
    forwarded = site.upstream.requests[-1]
    assert forwarded.bearer == site.provider.access_tokens[-1]
    assert forwarded.header("X-User-Name") == "alice.op"
    assert forwarded.header("Cookie") is None


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        pytest.param({"iss": "https://evil.example.test"}, "untrusted issuer", id="wrong-iss"),
        pytest.param({"aud": "someone-else"}, "InvalidAudienceError", id="wrong-aud"),
        pytest.param({"nonce": "not-ours"}, "nonce", id="wrong-nonce"),
        pytest.param({"exp": 1000}, "ExpiredSignatureError", id="expired"),
    ],
)
async def test_a_bad_id_token_signs_nobody_in(
    site: Site, tamper: dict[str, Any], reason: str
) -> None:
    site.provider.tamper = tamper
    done = await callback(site, await start(site))
    assert done.status == 400
    assert done.content_type == "text/html"
    text = await done.text()
    assert reason in text
    assert 'id="restart"' in text
    assert not {AT, RT, SID} & set(renewed(lines(done)))


async def test_a_provider_that_is_down_or_failing_signs_nobody_in(site: Site) -> None:
    location = await start(site)
    site.provider.fail_with = 500
    done = await callback(site, location)
    assert done.status == 400
    assert "refused the code" in await done.text()
    assert not {AT, RT, SID} & set(renewed(lines(done)))
    assert site.provider.server is not None
    await site.provider.server.close()
    clock_of(site.browser).advance(3600)  # past the cached discovery document
    page = await site.browser.get(
        "/login/start", params={"return_to": f"{APP}/"}, allow_redirects=False
    )
    assert page.status == 502
    assert "cannot be reached" in await page.text()


async def test_a_slow_provider_gets_an_answer_within_its_timeout(site: Site) -> None:
    location = await start(site)
    site.provider.delay = 8.0
    started = time.monotonic()
    done = await callback(site, location)
    took = time.monotonic() - started
    assert done.status == 400
    assert "TimeoutError" in await done.text()
    assert took < 7.5, took  # the provider call's 5 s bound, not the provider's 8 s
    assert not {AT, RT, SID} & set(renewed(lines(done)))


async def test_the_providers_key_rotation_is_followed(site: Site) -> None:
    await sign_in(site)
    site.provider.rotate_key()
    clock_of(site.browser).advance(6)  # a new key is fetched at most every 5 s
    site.browser.session.cookie_jar.clear()
    done = await sign_in(site)
    assert {AT, RT, SID} <= set(renewed(lines(done)))


def foreign_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_an_id_token_signed_by_another_key_signs_nobody_in(site: Site) -> None:
    site.provider.sign_with = foreign_key()  # same kid, someone else's key
    done = await callback(site, await start(site))
    assert done.status == 400
    assert "signature" in (await done.text()).lower()
    assert not {AT, RT, SID} & set(renewed(lines(done)))


async def test_a_jwt_access_token_is_verified_and_bounds_the_cookie(site: Site) -> None:
    site.provider.jwt_access = True
    site.provider.expires_in = 3600
    site.provider.access_lifetime = 120  # the JWT says less than expires_in does
    done = await sign_in(site)
    access = parse_set_cookies(lines(done))[AT][AT]
    token = site.provider.access_tokens[-1]
    expiry = jwt.decode(token, options={"verify_signature": False})["exp"]
    # The browser's cookie lives no longer than the provider's token (RFC 9068 exp).
    assert 0 < int(access["max-age"]) <= expiry - int(time.time()) + 1 <= 122
    answer = await api(site)
    assert answer.status == 200, await answer.text()
    assert site.upstream.requests[-1].bearer == token


async def test_a_jwt_access_token_signed_by_another_key_signs_nobody_in(site: Site) -> None:
    site.provider.jwt_access = True
    site.provider.access_signer = foreign_key()
    done = await callback(site, await start(site))
    assert done.status == 400
    assert "access token is not valid" in await done.text()
    assert not {AT, RT, SID} & set(renewed(lines(done)))


async def test_a_jwt_access_token_for_someone_else_signs_nobody_in(site: Site) -> None:
    site.provider.jwt_access = True
    site.provider.access_sub = "op-mallory"
    done = await callback(site, await start(site))
    assert done.status == 400
    assert "someone else" in await done.text()
    assert not {AT, RT, SID} & set(renewed(lines(done)))


# --- refreshing at the provider ------------------------------------------------------------


async def test_an_expired_access_token_is_refreshed_at_the_provider(site: Site) -> None:
    await sign_in(site)
    first = site.provider.access_tokens[-1]
    clock_of(site.browser).advance(61)
    answer = await api(site)
    assert answer.status == 200, await answer.text()
    assert len(site.provider.refresh_requests) == 1
    assert site.upstream.requests[-1].bearer == site.provider.access_tokens[-1] != first
    assert {AT, RT, SID} <= set(renewed(lines(answer)))
    again = await api(site)
    assert again.status == 200
    assert len(site.provider.refresh_requests) == 1  # the renewed cookies work as they are


async def test_a_refused_refresh_signs_the_browser_out(site: Site) -> None:
    await sign_in(site)
    site.provider.refuse_refresh = True
    clock_of(site.browser).advance(61)
    answer = await api(site)
    assert answer.status == 401
    assert {AT, RT, SID} <= cleared(lines(answer))


async def test_a_provider_down_during_a_refresh_keeps_the_session(site: Site) -> None:
    await sign_in(site)
    site.provider.fail_with = 503
    clock_of(site.browser).advance(61)
    answer = await api(site)
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    assert not cleared(lines(answer))
    site.provider.fail_with = None
    answer = await api(site)
    assert answer.status == 200, await answer.text()


async def test_parallel_requests_refresh_once(site: Site) -> None:
    await sign_in(site)
    clock_of(site.browser).advance(61)
    cookies = jar(site)
    site.browser.session.cookie_jar.clear()
    answers = await asyncio.gather(
        *(
            site.browser.get("/api/orders", headers={"Origin": APP, "Cookie": cookies})
            for _ in range(20)
        )
    )
    assert [a.status for a in answers] == [200] * 20
    assert len(site.provider.refresh_requests) == 1
    assert len({r.bearer for r in site.upstream.requests[-20:]}) == 1


async def test_a_lost_refresh_response_is_recovered_and_a_replay_refused(site: Site) -> None:
    """The refresh's answer never reached the browser: after the grace the old cookies get the
    same successor, with no second call to the provider; once the browser has used the
    successor, the old cookies coming back are a replay."""
    await sign_in(site)
    old = jar(site)
    clock_of(site.browser).advance(61)
    lost = await api(site, old)
    assert lost.status == 200
    assert len(site.provider.refresh_requests) == 1

    clock_of(site.browser).advance(3)  # past the 2 s grace
    recovered = await api(site, old)
    assert recovered.status == 200, await recovered.text()
    assert len(site.provider.refresh_requests) == 1  # the stored successor, not a new refresh
    current = "; ".join(f"{k}={v}" for k, v in renewed(lines(recovered)).items())

    used = await api(site, current)
    assert used.status == 200

    async def delivered() -> bool:
        conn = await asyncpg.connect(site.database_url)
        try:
            return bool(await conn.fetchval("SELECT bool_or(delivered) FROM auth.external_refresh"))
        finally:
            await conn.close()

    assert await poll(delivered, timeout=5.0)
    replay = await api(site, old)
    assert replay.status == 401
    assert {AT, RT, SID} <= cleared(lines(replay))
    assert len(site.provider.refresh_requests) == 1


async def test_sign_out_revokes_the_refresh_token_at_the_provider(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    done = await sign_in(site)
    refresh_token = next(iter(site.provider.refresh_tokens))
    out = await site.browser.post("/oauth2/logout", headers={"Origin": APP})
    assert out.status == 200, await out.text()
    assert {AT, RT, SID} <= cleared(lines(out))
    assert site.provider.revoked == [refresh_token]
    assert "could not revoke" not in caplog.text  # an empty 200 is the RFC 7009 answer
    assert renewed(lines(done))  # it had a session before
    user = await site.browser.get("/login/user", headers={"Origin": APP})
    assert user.status == 401


async def test_sign_out_after_the_provider_changed_sends_the_token_nowhere(site: Site) -> None:
    """A session of provider A, signed out after the configuration switched the token handler to
    provider B: A's refresh token must travel neither to A (no longer configured) nor to B,
    and the sign-out still completes."""
    await sign_in(site)
    second = FakeProvider("bff", SECRET, f"{ISSUER}/login/callback")
    await second.start()
    try:
        holder = site.browser.app[CONFIG]
        conf = holder.current.path
        other = {
            "client_id": "bff",
            "client_secret": SECRET,
            "issuers": [second.issuer],
            "javascript_origins": [APP],
        }
        (conf.parent / "oauth2" / "op2.json").write_text(json.dumps({"bff": other}))
        settings = json.loads(conf.read_text())
        settings["login"]["provider"] = "op2"
        conf.write_text(json.dumps(settings))
        assert holder.reload()
        out = await site.browser.post("/oauth2/logout", headers={"Origin": APP})
        assert out.status == 200, await out.text()
        assert {AT, RT, SID} <= cleared(lines(out))
        assert site.provider.revoked == []
        assert second.revoked == []
    finally:
        assert second.server is not None
        await second.server.close()


# --- the session in the database (review of issue 11) ---------------------------------------


async def test_a_provider_that_keeps_its_refresh_token_refreshes_again_and_again(
    site: Site,
) -> None:
    """Google (by default), Okta and Auth0 without rotation answer a refresh without a new
    refresh token: the same one is presented at the next expiry, and that is no replay."""
    site.provider.rotate_refresh = False
    await sign_in(site)
    token = next(iter(site.provider.refresh_tokens))
    for round_ in range(3):
        clock_of(site.browser).advance(61)
        answer = await api(site)
        assert answer.status == 200, (round_, await answer.text())
        again = await api(site)  # the browser shows it received the new access token
        assert again.status == 200
    assert site.provider.refresh_requests == [token, token, token]


async def test_a_signed_out_sessions_cookies_are_refused_by_every_replica(
    site: Site, tmp_path: Path
) -> None:
    """Item 87: cookies copied before sign-out do not work afterwards, on a replica that was
    not the one signed out at (nor one started after it), by access token or by refresh."""
    await sign_in(site)
    copied = jar(site)
    out = await site.browser.post("/oauth2/logout", headers={"Origin": APP})
    assert out.status == 200
    conf = site.browser.app[CONFIG].current.path
    async with serving(conf, site.database_url) as replica:

        async def ready() -> bool:  # a balancer sends nothing to a replica before this
            return (await replica.get("/readyz")).status == 200

        assert await poll(ready, timeout=10.0)
        answer = await replica.get("/api/orders", headers={"Origin": APP, "Cookie": copied})
        assert answer.status == 401, await answer.text()
        clock_of(replica).advance(61)  # the access token expires: a refresh is refused too
        again = await replica.get("/api/orders", headers={"Origin": APP, "Cookie": copied})
        assert again.status == 401
    assert site.provider.refresh_requests == []


async def test_a_session_ends_at_its_absolute_lifetime(
    tmp_path: Path, database_url: str, provider: FakeProvider
) -> None:
    upstream = Upstream()
    await upstream.start()
    try:
        conf = external_config(tmp_path / "conf", provider, upstream, session_ttl=100)
        async with serving(conf, database_url) as browser:
            site = Site(browser, provider, upstream, database_url)
            done = await sign_in(site)
            session = parse_set_cookies(lines(done))[SID][SID]
            assert 0 < int(session["max-age"]) <= 100
            clock_of(browser).advance(61)
            refreshed = await api(site)
            assert refreshed.status == 200
            assert int(parse_set_cookies(lines(refreshed))[SID][SID]["max-age"]) <= 39
            clock_of(browser).advance(61)
            over = await api(site)
            assert over.status == 401
            assert len(provider.refresh_requests) == 1  # the provider is not asked again
    finally:
        await upstream.close()


async def test_keys_unavailable_during_a_refresh_keep_the_providers_answer(site: Site) -> None:
    """The provider has answered a refresh (and may have rotated its refresh token): keys that
    cannot be fetched just then must not throw that answer away (OIDC Core 3.1.3.7 (6))."""
    site.provider.jwt_access = True
    await sign_in(site)
    site.provider.rotate_key()  # the new access token names a key the gateway has not seen
    site.provider.jwks_down = True
    clock_of(site.browser).advance(61)
    answer = await api(site)
    assert answer.status == 200, await answer.text()
    assert site.upstream.requests[-1].bearer == site.provider.access_tokens[-1]
    assert {AT, RT} <= set(renewed(lines(answer)))


async def test_tokens_too_large_for_a_cookie_sign_nobody_in(site: Site) -> None:
    site.provider.access_token_size = 5000
    done = await callback(site, await start(site))
    assert done.status == 400
    text = await done.text()
    assert "too large for browser cookies" in text
    assert 'id="restart"' in text
    assert not {AT, RT, SID} & set(renewed(lines(done)))


async def test_a_response_lost_long_ago_continues_from_its_refresh_token(site: Site) -> None:
    """The stored successor's access token has expired too by the time the old cookies come
    back: the token handler goes on from the successor's refresh token (the provider rotated
    it), and the API gets a live access token, not a spent one."""
    await sign_in(site)
    old = jar(site)
    clock_of(site.browser).advance(61)
    assert (await api(site, old)).status == 200  # its answer never reaches the browser
    assert len(site.provider.refresh_requests) == 1
    successor_token = next(iter(site.provider.refresh_tokens))

    clock_of(site.browser).advance(120)  # the successor's access token has expired as well
    later = await api(site, old)
    assert later.status == 200, await later.text()
    assert site.provider.refresh_requests[1:] == [successor_token]
    assert site.upstream.requests[-1].bearer == site.provider.access_tokens[-1]


async def test_a_refresh_reaches_the_browser_when_the_upstream_then_fails(site: Site) -> None:
    """The refresh rotated the provider's refresh token; the upstream is down afterwards: the
    502 still carries the new cookies, or the browser would hold a spent refresh token."""
    await sign_in(site)
    clock_of(site.browser).advance(61)
    await site.upstream.close()
    answer = await api(site)
    assert answer.status == 502, await answer.text()
    assert (await answer.json())["error"] == "bad_gateway"
    assert len(site.provider.refresh_requests) == 1
    assert {AT, RT, SID} <= set(renewed(lines(answer)))
