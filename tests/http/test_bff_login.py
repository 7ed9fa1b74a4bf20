"""Sign-in through the token handler with this gateway's own authorization server (issue 11;
SECURITY-CHECKLIST items 76-79): ``/login/start``, the real ``/oauth2/authorize`` and login page,
``/login/callback``, ``/login/user``, and what happens to every bad input on the way.

The test client is the browser: it keeps the cookies the gateway sets and sends them back.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientResponse, encode_basic_auth

from tests.http.checklist import serving
from tests.http.conftest import CLIENTS, ISSUER, RELAXED_LIMITS, hidden_flow
from tests.http.proxy_support import cleared, parse_set_cookies, renewed
from tests.support import USERS, Client, clock_of, write_conf

APP = "https://app.example.test"
AT, RT, SID, LOGIN = "__Secure-AT", "__Secure-RT", "SID", "__Host-GW-LOGIN"
BFF = {
    "client_id": "bff",
    "client_secret": "bff-s3cr3t",
    "javascript_origins": [APP],
    "scopes": ["openid", "profile", "email", "offline_access"],
    "grant_types": ["authorization_code", "refresh_token"],
}
# A third-party app of the same authorization server, with its own origin.
CRM = {
    "client_id": "crm",
    "redirect_uris": ["https://crm.example.test/cb"],
    "javascript_origins": ["https://crm.example.test"],
    "scopes": ["openid", "profile"],
    "grant_types": ["authorization_code"],
}


def bff_config(directory: Path, **login: Any) -> Path:
    return write_conf(
        directory,
        gateway={
            "issuer": ISSUER,
            "limits": RELAXED_LIMITS,
            "tokens": {"access_ttl": 60},
            "login": {"client": "bff", **login},
        },
        clients={**CLIENTS, "bff": BFF, "crm": CRM},
    )


@pytest.fixture
async def browser(
    tmp_path: Path, database_url: str, users: dict[str, str]
) -> AsyncIterator[Client]:
    async with serving(bff_config(tmp_path / "conf"), database_url) as client:
        yield client


def local(url: str) -> str:
    """The path and query of a URL of the gateway (its issuer is not this test server's)."""
    assert url.startswith(ISSUER + "/"), url
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def start(browser: Client, **params: str) -> ClientResponse:
    return await browser.get("/login/start", params=params, allow_redirects=False)


async def through_login_page(browser: Client, authorize: str, user: str = "alice") -> str:
    """From the authorization request to the callback URL the browser is sent to."""
    page = await browser.get(local(authorize), allow_redirects=False)
    if page.status in (302, 303):
        return page.headers["Location"]
    assert page.status == 200, await page.text()
    login = await browser.post(
        "/oauth2/login",
        data={"flow": hidden_flow(await page.text()), "username": user, "password": USERS[user][0]},
        allow_redirects=False,
    )
    assert login.status == 303, await login.text()
    return login.headers["Location"]


async def sign_in(browser: Client, **params: str) -> ClientResponse:
    """The whole flow; the callback's answer."""
    started = await start(browser, **params)
    assert started.status == 303, await started.text()
    callback = await through_login_page(browser, started.headers["Location"])
    return await browser.get(local(callback), allow_redirects=False)


def set_cookie_lines(response: ClientResponse) -> list[str]:
    return response.headers.getall("Set-Cookie", [])


# --- item 76 --------------------------------------------------------------------------------


async def test_login_start_builds_a_fresh_pkce_request_each_time(browser: Client) -> None:
    """Item 76: 303 to the authorization endpoint with code, the token handler's client, its
    callback, S256, a state of 256 bits and a nonce; a second start differs in all three; the
    transaction cookie is Secure, HttpOnly, SameSite=Lax and lives at most 600 s."""
    seen = []
    for _ in range(2):
        response = await start(browser, return_to=f"{APP}/after")
        assert response.status == 303
        location = urlsplit(response.headers["Location"])
        assert (
            f"{location.scheme}://{location.netloc}{location.path}" == f"{ISSUER}/oauth2/authorize"
        )
        query = {k: v[0] for k, v in parse_qs(location.query).items()}
        assert query["response_type"] == "code"
        assert query["client_id"] == "bff"
        assert query["redirect_uri"] == f"{ISSUER}/login/callback"
        assert query["code_challenge_method"] == "S256"
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", query["code_challenge"])
        assert len(query["state"]) >= 43
        assert len(query["nonce"]) >= 22
        assert query["scope"] == "openid profile email offline_access"
        seen.append((query["state"], query["nonce"], query["code_challenge"]))
        cookie = parse_set_cookies(set_cookie_lines(response))[LOGIN][LOGIN]
        assert cookie["secure"]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Lax"
        assert 0 < int(cookie["max-age"]) <= 600
        assert cookie["path"] == "/"
        assert not cookie["domain"]
        assert response.headers["Cache-Control"] == "no-store"
    for first, second in zip(seen[0], seen[1], strict=True):
        assert first != second


async def test_prompt_login_hint_and_ui_locales_pass_through(browser: Client) -> None:
    response = await start(browser, prompt="login", login_hint="alice", ui_locales="ru en")
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["prompt"] == ["login"]
    assert query["login_hint"] == ["alice"]
    assert query["ui_locales"] == ["ru en"]


@pytest.mark.parametrize(
    "return_to",
    [
        # SECURITY-CHECKLIST item 91 (the post-login return path is no open redirect).
        pytest.param("https://evil.example.test/", id="another-origin"),
        pytest.param("//evil.example.test/x", id="scheme-relative"),
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("https://app.example.test@evil.example.test/", id="userinfo"),
        pytest.param("https://app.example.test.evil.example/", id="look-alike"),
        pytest.param("/\\evil.example.test", id="backslash"),
        pytest.param("http://app.example.test/", id="other-scheme"),
    ],
)
async def test_return_to_must_be_an_origin_of_the_app(browser: Client, return_to: str) -> None:
    """No open redirect: an error page, no transaction cookie, no redirect anywhere."""
    response = await start(browser, return_to=return_to)
    assert response.status == 400
    assert response.content_type == "text/html"
    assert "return_to" in await response.text()
    assert LOGIN not in parse_set_cookies(set_cookie_lines(response))


async def test_return_to_a_path_or_the_apps_url(browser: Client) -> None:
    for given, expected in (
        (None, f"{ISSUER}/"),
        ("/account?tab=1", f"{ISSUER}/account?tab=1"),
        (f"{APP}/orders#top", f"{APP}/orders#top"),
    ):
        params = {"return_to": given} if given else {}
        done = await sign_in(browser, **params)
        assert done.status == 303, await done.text()
        assert done.headers["Location"] == expected


# --- item 77 --------------------------------------------------------------------------------


async def test_the_callback_sets_hardened_session_cookies(browser: Client) -> None:
    """Item 77: 303 to return_to; AT, RT and SID Secure, HttpOnly, Path=/, no Domain; the
    transaction cookie cleared; no token in the Location or the body."""
    done = await sign_in(browser, return_to=f"{APP}/home")
    assert done.status == 303
    assert done.headers["Location"] == f"{APP}/home"
    lines = set_cookie_lines(done)
    cookies = parse_set_cookies(lines)
    assert {AT, RT, SID} <= set(renewed(lines))
    for name in (AT, RT, SID):
        attributes = cookies[name][name]
        assert attributes["secure"], name
        assert attributes["httponly"], name
        assert attributes["path"] == "/"
        assert not attributes["domain"]
    assert int(cookies[SID][SID]["max-age"]) <= 5184000
    assert LOGIN in cleared(lines)
    body = await done.text()
    for value in renewed(lines).values():
        assert value not in done.headers["Location"]
    assert "eyJ" not in done.headers["Location"] + body


async def test_login_user_shows_who_is_signed_in(browser: Client) -> None:
    await sign_in(browser)
    response = await browser.get("/login/user", headers={"Origin": APP})
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["preferred_username"] == "alice"
    assert body["email"] == USERS["alice"][1]
    assert body["name"] == USERS["alice"][2]
    assert body["client_id"] == "bff"
    assert "openid" in body["scope"]
    assert body["session_expires_at"] > body["auth_time"]
    assert not any(isinstance(v, str) and v.startswith("eyJ") for v in body.values())
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert response.headers["Cache-Control"] == "no-store"


async def test_login_user_refreshes_an_expired_access_token(browser: Client) -> None:
    await sign_in(browser)
    clock_of(browser).advance(61)
    response = await browser.get("/login/user", headers={"Origin": APP})
    assert response.status == 200, await response.text()
    assert {AT, RT, SID} <= set(renewed(set_cookie_lines(response)))
    assert (await response.json())["access_token_expires_at"] > clock_of(browser).time()


async def test_login_user_when_signed_out_or_cross_site(browser: Client) -> None:
    signed_out = await browser.get("/login/user", headers={"Origin": APP})
    assert signed_out.status == 401
    assert signed_out.headers["WWW-Authenticate"].startswith("Bearer")  # item 91
    assert (await signed_out.json())["error"] == "unauthorized"
    await sign_in(browser)
    foreign = await browser.get("/login/user", headers={"Origin": "https://evil.example.test"})
    assert foreign.status == 403
    assert "Access-Control-Allow-Origin" not in foreign.headers
    # Another client's pages may call the authorization server, but not read who is signed
    # in to the token handler's applications.
    other_app = await browser.get("/login/user", headers={"Origin": "https://crm.example.test"})
    assert other_app.status == 403
    assert "Access-Control-Allow-Origin" not in other_app.headers
    own = await browser.get("/login/user", headers={"Origin": APP})
    assert own.status == 200
    assert own.headers["Access-Control-Allow-Origin"] == APP


# --- item 78 --------------------------------------------------------------------------------


async def callback_url(browser: Client) -> str:
    started = await start(browser, return_to=f"{APP}/")
    return await through_login_page(browser, started.headers["Location"])


def no_session(response: ClientResponse) -> None:
    assert not {AT, RT, SID} & set(renewed(set_cookie_lines(response)))


async def test_an_altered_state_is_refused(browser: Client) -> None:
    """Item 78 (a)."""
    url = local(await callback_url(browser))
    altered = re.sub(r"state=[^&]+", "state=AAAA" + "B" * 40, url)
    response = await browser.get(altered, allow_redirects=False)
    assert response.status == 400
    assert response.content_type == "text/html"
    assert "not for the sign-in this browser is waiting for" in await response.text()
    no_session(response)
    assert LOGIN not in cleared(set_cookie_lines(response))
    # A foreign answer does not end the transaction it was not for: the real one finishes.
    done = await browser.get(url, allow_redirects=False)
    assert done.status == 303


async def test_a_callback_in_another_browser_is_refused(
    browser: Client, tmp_path: Path, database_url: str
) -> None:
    """Item 78 (b): the right code and state, but not the browser that started."""
    url = local(await callback_url(browser))
    async with serving(bff_config(tmp_path / "other"), database_url) as other:
        response = await other.get(url, allow_redirects=False)
        assert response.status == 400
        assert "another browser" in await response.text()
        no_session(response)
    # ...and the first browser can still finish it.
    done = await browser.get(url, allow_redirects=False)
    assert done.status == 303


async def test_a_replayed_callback_is_refused(browser: Client) -> None:
    """Item 78 (c): the completed callback again, with the transaction cookie it came with."""
    started = await start(browser, return_to=f"{APP}/")
    transaction = renewed(set_cookie_lines(started))[LOGIN]
    url = local(await through_login_page(browser, started.headers["Location"]))
    assert (await browser.get(url, allow_redirects=False)).status == 303
    again = await browser.get(
        url, allow_redirects=False, headers={"Cookie": f"{LOGIN}={transaction}"}
    )
    assert again.status == 400
    assert "completed already" in await again.text()
    no_session(again)


async def test_an_error_from_the_server_reaches_the_app_without_a_session(
    browser: Client,
) -> None:
    """Item 78 (d): error=access_denied goes to return_to as login_error, no session."""
    started = await start(browser, return_to=f"{APP}/start?x=1")
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    response = await browser.get(
        "/login/callback",
        params={"error": "access_denied", "state": state},
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == f"{APP}/start?x=1&login_error=access_denied"
    no_session(response)
    assert LOGIN in cleared(set_cookie_lines(response))


async def test_prompt_none_without_a_session_comes_back_as_login_required(
    browser: Client,
) -> None:
    started = await start(browser, return_to=f"{APP}/", prompt="none")
    authorize = await browser.get(local(started.headers["Location"]), allow_redirects=False)
    assert authorize.status == 302
    response = await browser.get(local(authorize.headers["Location"]), allow_redirects=False)
    assert response.headers["Location"] == f"{APP}/?login_error=login_required"


async def test_an_expired_transaction_is_refused(browser: Client) -> None:
    url = local(await callback_url(browser))
    clock_of(browser).advance(601)
    response = await browser.get(url, allow_redirects=False)
    assert response.status == 400
    assert "expired" in await response.text()
    no_session(response)


# --- item 79 --------------------------------------------------------------------------------


async def test_an_sid_chosen_before_sign_in_is_worthless(browser: Client) -> None:
    """Item 79: the callback sets a new SID; the planted value gets 401 afterwards."""
    planted = "attacker-chosen-value"
    browser.session.cookie_jar.update_cookies({SID: planted})
    done = await sign_in(browser, return_to=f"{APP}/")
    new_sid = renewed(set_cookie_lines(done))[SID]
    assert new_sid != planted
    assert (await browser.get("/login/user", headers={"Origin": APP})).status == 200
    browser.session.cookie_jar.clear()
    browser.session.cookie_jar.update_cookies({SID: planted})
    user = await browser.get("/login/user", headers={"Origin": APP})
    assert user.status == 401


async def test_another_accounts_sid_planted_before_sign_in_stays_that_account(
    browser: Client,
) -> None:
    """Item 79 with a valid SID: the attacker plants the SID of their own account (bob); alice
    signs in (the application asks for the login page: prompt=login); she gets a session of her
    own, and bob's SID still reaches only bob. (Without prompt=login the planted session would
    answer silently, as single sign-on does: docs/threat-model.md, "Planted cookies".)"""
    await sign_in_as(browser, "bob")
    bob_jar = renewed_jar(browser)
    bob_sid = dict(bob_jar)[SID]
    browser.session.cookie_jar.clear()
    browser.session.cookie_jar.update_cookies({SID: bob_sid})
    done = await sign_in_as(browser, "alice", prompt="login")
    alice_sid = renewed(set_cookie_lines(done))[SID]
    assert alice_sid != bob_sid
    me = await browser.get("/login/user", headers={"Origin": APP})
    assert (await me.json())["preferred_username"] == "alice"
    browser.session.cookie_jar.clear()
    browser.session.cookie_jar.update_cookies(dict(bob_jar))
    still_bob = await browser.get("/login/user", headers={"Origin": APP})
    assert (await still_bob.json())["preferred_username"] == "bob"


async def test_the_login_page_and_the_password_grant_issue_a_new_sid(browser: Client) -> None:
    """Issue 11 item 4: every sign-in sets a SID of its own; a planted value is not kept."""
    planted = "attacker-chosen-value"
    browser.session.cookie_jar.update_cookies({SID: planted})
    page = await browser.get(
        "/oauth2/authorize",
        params={
            "response_type": "code",
            "client_id": "conf",
            "redirect_uri": "https://rp.example.test/cb",
            "scope": "openid",
            "state": "s",
        },
    )
    login = await browser.post(
        "/oauth2/login",
        data={
            "flow": hidden_flow(await page.text()),
            "username": "alice",
            "password": USERS["alice"][0],
        },
        allow_redirects=False,
    )
    assert login.status == 303
    page_sid = renewed(set_cookie_lines(login))[SID]
    assert page_sid != planted

    browser.session.cookie_jar.clear()
    browser.session.cookie_jar.update_cookies({SID: planted})
    token = await browser.post(
        "/oauth2/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": USERS["alice"][0],
            "scope": "openid offline_access",
        },
        headers={"Authorization": encode_basic_auth("conf", "s3cr3t")},
    )
    assert token.status == 200, await token.text()
    grant_sid = renewed(set_cookie_lines(token))[SID]
    assert grant_sid not in (planted, page_sid)


async def sign_in_as(browser: Client, user: str, **params: str) -> ClientResponse:
    started = await start(browser, return_to=f"{APP}/", **params)
    callback = await through_login_page(browser, started.headers["Location"], user)
    done = await browser.get(local(callback), allow_redirects=False)
    assert done.status == 303, await done.text()
    return done


def renewed_jar(browser: Client) -> list[tuple[str, str]]:
    return [(cookie.key, cookie.value) for cookie in browser.session.cookie_jar]


async def test_a_code_for_another_client_signs_nobody_in(browser: Client) -> None:
    """Code injection: a code the authorization server issued to another client (conf), put
    into this browser's callback with the right state, is refused at redemption."""
    started = await start(browser, return_to=f"{APP}/")
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    page = await browser.get(
        "/oauth2/authorize",
        params={
            "response_type": "code",
            "client_id": "conf",
            "redirect_uri": "https://rp.example.test/cb",
            "scope": "openid",
            "state": "rp",
        },
    )
    login = await browser.post(
        "/oauth2/login",
        data={
            "flow": hidden_flow(await page.text()),
            "username": "alice",
            "password": USERS["alice"][0],
        },
        allow_redirects=False,
    )
    foreign_code = parse_qs(urlsplit(login.headers["Location"]).query)["code"][0]
    browser.session.cookie_jar.clear()
    browser.session.cookie_jar.update_cookies({LOGIN: renewed(set_cookie_lines(started))[LOGIN]})
    response = await browser.get(
        "/login/callback", params={"code": foreign_code, "state": state}, allow_redirects=False
    )
    assert response.status == 400
    assert "Signing in did not work" in await response.text()
    no_session(response)
