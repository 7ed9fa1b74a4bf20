"""The built-in login page of the authorization endpoint, as a browser sees it.

A plain POST form (no JavaScript) with ``username``, ``password`` and the sealed ``flow``; English
or Russian by ``Accept-Language``; a wrong password re-renders the form without signing in; the
``SID`` cookie is ``HttpOnly`` and ``Secure``; ``prompt=login``, ``max_age`` and ``login_hint``.
SECURITY-CHECKLIST items 14 (page hardening), 113 (max_age / auth_time) and 140 (no account
enumeration) where they touch the login page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest
from bs4 import BeautifulSoup, Tag

from gateway.web.authorize import FLOW_TTL
from gateway.web.logout import LOGOUT_FORM
from tests.http.conftest import V, authz_params, basic, location_params
from tests.support import USERS, Client, clock_of, named_input

RP_CB = "https://rp.example.test/cb"
CYRILLIC = re.compile("[\u0400-\u04ff]")


async def open_login(
    client: Client, params: Mapping[str, str], language: str | None = None
) -> tuple[aiohttp.ClientResponse, BeautifulSoup]:
    headers = {"Accept-Language": language} if language is not None else {}
    response = await client.get(
        "/oauth2/authorize", params=params, headers=headers, allow_redirects=False
    )
    return response, BeautifulSoup(await response.text(), "html.parser")


def login_form(soup: BeautifulSoup) -> Tag:
    forms = soup.find_all("form")
    assert len(forms) == 1, soup.prettify()[:500]
    form = forms[0]
    assert isinstance(form, Tag)
    return form


def hidden_fields(form: Tag) -> dict[str, str]:
    return {
        str(i["name"]): str(i.get("value", ""))
        for i in form.find_all("input", attrs={"type": "hidden"})
    }


async def submit(
    client: Client,
    form: Tag,
    username: str,
    password: str,
    language: str | None = None,
) -> aiohttp.ClientResponse:
    headers = {"Accept-Language": language} if language is not None else {}
    return await client.post(
        str(form["action"]),
        data={**hidden_fields(form), "username": username, "password": password},
        headers=headers,
        allow_redirects=False,
    )


def set_cookie_names(response: aiohttp.ClientResponse) -> set[str]:
    return {
        value.split("=", 1)[0].strip()
        for value in response.headers.getall("Set-Cookie", [])
        if "=" in value
    }


def alert_text(soup: BeautifulSoup) -> str:
    alert = soup.find(role="alert")
    assert alert is not None, soup.prettify()[:500]
    return alert.get_text(strip=True)


async def redeem(client: Client, code: str) -> dict[str, Any]:
    token = await client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": RP_CB,
            "code_verifier": V,
        },
        headers=basic("conf", "s3cr3t"),
    )
    body: dict[str, Any] = await token.json()
    assert token.status == 200, body
    return body


async def sessions_of(db: asyncpg.Connection, users: dict[str, str], name: str) -> int:
    return int(
        await db.fetchval("SELECT count(*) FROM auth.session WHERE user_id = $1::uuid", users[name])
    )


async def sign_in_alice(client: Client) -> aiohttp.ClientResponse:
    _, soup = await open_login(client, authz_params("conf"))
    login = await submit(client, login_form(soup), "alice", USERS["alice"][0])
    assert login.status == 303, await login.text()
    return login


# --- the form -------------------------------------------------------------------------------------


async def test_login_page_is_a_plain_post_form(as_client: Client) -> None:
    """The login page: one POST form to /oauth2/login with a text ``username`` field, a
    ``password`` field and a hidden non-empty ``flow``; no <script> anywhere (works without
    JavaScript); submit is a real button; HTML is UTF-8 and not cacheable (item 14)."""
    response, soup = await open_login(as_client, authz_params("conf"))
    assert response.status == 200
    assert response.content_type == "text/html"
    assert response.charset == "utf-8"
    assert "no-store" in response.headers["Cache-Control"]
    assert soup.find("script") is None
    assert not soup.find_all(onclick=True)
    assert not soup.find_all(onsubmit=True)
    form = login_form(soup)
    assert str(form.get("method")).lower() == "post"
    assert form.get("action") == "/oauth2/login"
    username = form.find("input", attrs={"name": "username"})
    password = form.find("input", attrs={"name": "password"})
    assert username is not None
    assert username.get("type") == "text"
    assert password is not None
    assert password.get("type") == "password"
    assert not password.get("value")
    assert hidden_fields(form).get("flow")
    assert form.find(["button", "input"], attrs={"type": "submit"}) is not None
    # Labels point at the inputs, so the form is usable with assistive technology.
    assert {label.get("for") for label in form.find_all("label")} >= {"username", "password"}


async def test_login_form_works_without_javascript(as_client: Client) -> None:
    """Submitting exactly the fields of the HTML form signs in and sends the browser to the
    client with a code (303)."""
    login = await sign_in_alice(as_client)
    query, _ = location_params(login.headers["Location"])
    assert login.headers["Location"].startswith(RP_CB + "?")
    assert query["code"]
    assert query["state"] == "st-conf"


# --- language -------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["ru", "ru-RU,ru;q=0.9,en;q=0.8", "en;q=0.3, ru;q=0.7"])
async def test_russian_by_accept_language(as_client: Client, language: str) -> None:
    """``Accept-Language`` preferring Russian gives a Russian page: lang="ru", Cyrillic title,
    labels and button, no English UI text."""
    response, soup = await open_login(as_client, authz_params("conf"), language)
    assert response.status == 200
    assert soup.html is not None
    assert soup.html.get("lang") == "ru"
    title = soup.title.get_text() if soup.title else ""
    assert CYRILLIC.search(title), title
    form = login_form(soup)
    for label in form.find_all("label"):
        assert CYRILLIC.search(label.get_text()), label
    button = form.find("button")
    assert button is not None
    assert CYRILLIC.search(button.get_text())
    assert "Sign in" not in soup.get_text()
    assert "Password" not in soup.get_text()


@pytest.mark.parametrize("language", [None, "en-US,en;q=0.9", "de-DE,de;q=0.9", "en,ru;q=0.5"])
async def test_english_otherwise(as_client: Client, language: str | None) -> None:
    """Without a Russian preference the page is English (lang="en", no Cyrillic at all)."""
    response, soup = await open_login(as_client, authz_params("conf"), language)
    assert response.status == 200
    assert soup.html is not None
    assert soup.html.get("lang") == "en"
    assert not CYRILLIC.search(soup.get_text()), soup.get_text()
    assert "Sign in" in soup.get_text()
    assert "Password" in login_form(soup).get_text()


# --- wrong password ------------------------------------------------------------------------------


async def test_wrong_password_rerenders_form_without_session(
    as_client: Client, db: asyncpg.Connection, users: dict[str, str]
) -> None:
    """A wrong password re-renders the login form (no redirect) with a clear message, keeps the
    username, empties the password, sets no ``SID`` cookie and opens no session; the same form
    then still works with the right password."""
    _, soup = await open_login(as_client, authz_params("conf"))
    form = login_form(soup)
    before = await sessions_of(db, users, "alice")
    wrong = await submit(as_client, form, "alice", "not-her-password")
    assert wrong.status == 401
    assert "Location" not in wrong.headers
    assert "SID" not in set_cookie_names(wrong)
    again = BeautifulSoup(await wrong.text(), "html.parser")
    message = alert_text(again)
    assert "wrong" in message.lower(), message
    assert "password" in message.lower(), message
    retry = login_form(again)
    assert retry.get("action") == "/oauth2/login"
    assert named_input(retry, "username")["value"] == "alice"
    assert not named_input(retry, "password").get("value")
    assert hidden_fields(retry).get("flow")
    assert await sessions_of(db, users, "alice") == before
    assert "SID" not in {c.key for c in as_client.session.cookie_jar}
    ok = await submit(as_client, retry, "alice", USERS["alice"][0])
    assert ok.status == 303
    assert "SID" in set_cookie_names(ok)


async def test_wrong_password_message_in_russian(as_client: Client) -> None:
    """The wrong-password message follows Accept-Language: ru."""
    _, soup = await open_login(as_client, authz_params("conf"), "ru")
    wrong = await submit(as_client, login_form(soup), "alice", "nope", "ru")
    again = BeautifulSoup(await wrong.text(), "html.parser")
    assert CYRILLIC.search(alert_text(again))
    assert "SID" not in set_cookie_names(wrong)


async def test_unknown_and_locked_users_get_the_same_message(as_client: Client) -> None:
    """Item 140: an unknown user and the locked carol (right password) get the same status and
    message as a wrong password; none of them signs in."""
    _, soup = await open_login(as_client, authz_params("conf"))
    form = login_form(soup)
    answers = []
    for username, password in (
        ("alice", "wrong-password"),
        ("mallory", "wrong-password"),
        ("carol", USERS["carol"][0]),
    ):
        response = await submit(as_client, form, username, password)
        text = alert_text(BeautifulSoup(await response.text(), "html.parser"))
        answers.append((response.status, text))
        assert "SID" not in set_cookie_names(response)
    assert len(set(answers)) == 1, answers


# --- the session cookie ---------------------------------------------------------------------------


async def test_sid_cookie_is_httponly_and_secure(as_client: Client) -> None:
    """After a successful sign-in the ``SID`` cookie is HttpOnly and Secure, path /, host-only
    (no Domain), with a lifetime; the form's CSRF cookie is HttpOnly and Secure too."""
    login = await sign_in_alice(as_client)
    sid = login.cookies["SID"]
    assert sid.value
    assert sid["httponly"] is True
    assert sid["secure"] is True
    assert sid["path"] == "/"
    assert not sid["domain"]
    assert sid["max-age"]
    assert int(sid["max-age"]) > 0
    raw = [v for v in login.headers.getall("Set-Cookie") if v.startswith("SID=")]
    assert len(raw) == 1
    attributes = {a.strip().split("=")[0].lower() for a in raw[0].split(";")[1:]}
    assert {"httponly", "secure"} <= attributes
    page = await as_client.get(
        "/oauth2/authorize",
        params=authz_params("conf", prompt="login"),
        allow_redirects=False,
    )
    csrf = [c for c in as_client.session.cookie_jar if c.key == "__Host-GW-CSRF"]
    assert len(csrf) == 1
    assert csrf[0]["httponly"] is True
    assert csrf[0]["secure"] is True
    assert csrf[0]["path"] == "/"  # a __Host- cookie: no Domain, Path=/, Secure
    assert page.status == 200


# --- prompt=login, max_age, login_hint ---------------------------------------------------------


async def test_prompt_login_forces_the_login_page(
    as_client: Client, db: asyncpg.Connection, users: dict[str, str]
) -> None:
    """With a live session, prompt=login still shows the login form (200, not a redirect);
    signing in again as the same user renews that session (so tokens already issued in it, a
    SPA's cookies, stay valid) and the new code's ID token has a fresh auth_time."""
    await sign_in_alice(as_client)
    direct = await as_client.get(
        "/oauth2/authorize", params=authz_params("conf"), allow_redirects=False
    )
    assert direct.status == 302  # the session works without a page...
    sessions = await sessions_of(db, users, "alice")
    clock_of(as_client).advance(2.1)
    started = clock_of(as_client).now()
    response, soup = await open_login(as_client, authz_params("conf", prompt="login"))
    assert response.status == 200  # ...but prompt=login asks for the password again
    form = login_form(soup)
    assert form.find("input", attrs={"name": "password"}) is not None
    login = await submit(as_client, form, "alice", USERS["alice"][0])
    assert login.status == 303
    assert await sessions_of(db, users, "alice") == sessions
    body = await redeem(as_client, location_params(login.headers["Location"])[0]["code"])
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["auth_time"] >= started  # the first sign-in was >= 2 s before `started`


async def test_max_age_exceeded_shows_the_login_page(as_client: Client) -> None:
    """max_age=1 two seconds after sign-in shows the login page; a generous max_age answers
    with a code directly; after re-authentication auth_time is within max_age (item 113)."""
    await sign_in_alice(as_client)
    clock_of(as_client).advance(2.1)
    generous = await as_client.get(
        "/oauth2/authorize", params=authz_params("conf", max_age="3600"), allow_redirects=False
    )
    assert generous.status == 302
    assert location_params(generous.headers["Location"])[0]["code"]
    response, soup = await open_login(as_client, authz_params("conf", max_age="1"))
    assert response.status == 200
    login = await submit(as_client, login_form(soup), "alice", USERS["alice"][0])
    assert login.status == 303
    now = clock_of(as_client).now()
    body = await redeem(as_client, location_params(login.headers["Location"])[0]["code"])
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert now - claims["auth_time"] <= 1 + 1  # max_age plus rounding of whole seconds


async def test_max_age_with_prompt_none_is_login_required(as_client: Client) -> None:
    """max_age exceeded together with prompt=none cannot show a page: login_required."""
    await sign_in_alice(as_client)
    clock_of(as_client).advance(2.1)
    response = await as_client.get(
        "/oauth2/authorize",
        params=authz_params("conf", max_age="1", prompt="none"),
        allow_redirects=False,
    )
    assert response.status == 302
    assert location_params(response.headers["Location"])[0]["error"] == "login_required"


@pytest.mark.parametrize("max_age", ["-1", "abc", "1.5"])
async def test_malformed_max_age_is_invalid_request(as_client: Client, max_age: str) -> None:
    """A max_age that is not a non-negative integer -> RQ(error=invalid_request)."""
    response = await as_client.get(
        "/oauth2/authorize", params=authz_params("conf", max_age=max_age), allow_redirects=False
    )
    assert response.status == 302
    query, _ = location_params(response.headers["Location"])
    assert query["error"] == "invalid_request"
    assert query["state"] == "st-conf"


async def test_login_hint_prefills_the_username(as_client: Client) -> None:
    """login_hint=alice fills the username field; the password stays empty."""
    _, soup = await open_login(as_client, authz_params("conf", login_hint="alice@example.test"))
    form = login_form(soup)
    assert named_input(form, "username")["value"] == "alice@example.test"
    assert not named_input(form, "password").get("value")
    _, plain = await open_login(as_client, authz_params("conf"))
    assert not named_input(login_form(plain), "username").get("value")


# --- refused and expired forms: one HTML answer ---------------------------------------------------


def refused(html: str) -> tuple[str, str | None]:
    """(the alert's text, the "Start again" link or None) of a refused-form page."""
    soup = BeautifulSoup(html, "html.parser")
    link = soup.find("a", attrs={"id": "restart"})
    return alert_text(soup), str(link["href"]) if link is not None else None


async def test_form_post_with_origin_null_signs_in(as_client: Client) -> None:
    """Item 14's note: a browser may put ``Origin: null`` on the page's own form POST (a page
    that hides its referrer, privacy modes); the sealed flow bound to this browser is the CSRF
    defence, so the sign-in goes through (303 with a code and SID)."""
    _, soup = await open_login(as_client, authz_params("conf"))
    form = login_form(soup)
    response = await as_client.post(
        "/oauth2/login",
        data={**hidden_fields(form), "username": "alice", "password": USERS["alice"][0]},
        headers={"Origin": "null"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    assert location_params(response.headers["Location"])[0]["code"]
    assert "SID" in set_cookie_names(response)


async def test_origin_null_does_not_pass_a_foreign_flow(as_client: Client) -> None:
    """``Origin: null`` is no pass: a flow sealed for another browser is still refused (403 page,
    no SID), so a sandboxed attacker frame gains nothing from it."""
    _, soup = await open_login(as_client, authz_params("conf"))
    form = login_form(soup)
    as_client.session.cookie_jar.clear()
    response = await as_client.post(
        "/oauth2/login",
        data={**hidden_fields(form), "username": "alice", "password": USERS["alice"][0]},
        headers={"Origin": "null"},
        allow_redirects=False,
    )
    text, restart = refused(await response.text())
    assert response.status == 403
    assert "another browser" in text
    assert restart is not None
    assert restart.startswith("/oauth2/authorize?")
    assert "SID" not in set_cookie_names(response)


async def test_forged_form_is_a_page_in_the_users_language(as_client: Client) -> None:
    """A forged flow: a 403 HTML page in Russian for a Russian browser, saying the form could
    not be read and to go back to the application; no JSON, no error code, no restart link
    (nothing in a forged form can be trusted)."""
    await open_login(as_client, authz_params("conf"))
    response = await as_client.post(
        "/oauth2/login",
        data={"flow": "k1.forged", "username": "alice", "password": "x"},
        headers={"Accept-Language": "ru"},
        allow_redirects=False,
    )
    html = await response.text()
    assert response.status == 403
    assert response.content_type == "text/html"
    soup = BeautifulSoup(html, "html.parser")
    assert soup.html is not None
    assert soup.html.get("lang") == "ru"
    text, restart = refused(html)
    assert CYRILLIC.search(text), text
    assert restart is None
    assert soup.find("code") is None  # no error code, only words
    assert "Вернитесь в приложение" in soup.get_text()


async def test_expired_login_form_starts_again(as_client: Client) -> None:
    """A login form submitted after its 15 minutes: 400 page "expired" with a "Start again"
    link; the link opens the login page of the same request, which then signs in and returns
    the original state to the client."""
    _, soup = await open_login(as_client, authz_params("conf", state="keep-me"))
    clock_of(as_client).advance(FLOW_TTL + 1)
    late = await submit(as_client, login_form(soup), "alice", USERS["alice"][0])
    text, restart = refused(await late.text())
    assert late.status == 400
    assert "expired" in text
    assert "SID" not in set_cookie_names(late)
    assert restart is not None
    again = await as_client.get(restart, allow_redirects=False)
    assert again.status == 200
    fresh = BeautifulSoup(await again.text(), "html.parser")
    login = await submit(as_client, login_form(fresh), "alice", USERS["alice"][0])
    assert login.status == 303
    query, _ = location_params(login.headers["Location"])
    assert query["state"] == "keep-me"
    assert query["code"]


async def test_expired_logout_form_starts_again(as_client: Client) -> None:
    """The logout confirmation form after its lifetime: 400 page with a link back to the same
    logout request (not signed out meanwhile)."""
    await sign_in_alice(as_client)
    page = await as_client.get(
        "/oauth2/logout",
        params={"client_id": "conf", "post_logout_redirect_uri": "https://rp.example.test/bye"},
    )
    form = login_form(BeautifulSoup(await page.text(), "html.parser"))
    clock_of(as_client).advance(LOGOUT_FORM.ttl + 1)
    late = await as_client.post(
        str(form["action"]), data=hidden_fields(form), allow_redirects=False
    )
    text, restart = refused(await late.text())
    assert late.status == 400
    assert "expired" in text
    assert restart is not None
    assert restart.startswith("/oauth2/logout?")
    assert "post_logout_redirect_uri=https%3A%2F%2Frp.example.test%2Fbye" in restart
    still = await as_client.get(
        "/oauth2/authorize", params=authz_params("conf", prompt="none"), allow_redirects=False
    )
    assert location_params(still.headers["Location"])[0]["code"]


async def test_relying_party_logout_form_post_asks_for_confirmation(as_client: Client) -> None:
    """RP-Initiated Logout allows POST: a relying party's own form (another origin, no flow)
    gets the confirmation page, not a JSON 403; confirming signs out and goes to the
    registered post_logout_redirect_uri."""
    await sign_in_alice(as_client)
    posted = await as_client.post(
        "/oauth2/logout",
        data={"client_id": "conf", "post_logout_redirect_uri": "https://rp.example.test/bye"},
        headers={"Origin": "https://rp.example.test"},
        allow_redirects=False,
    )
    assert posted.status == 200
    assert posted.content_type == "text/html"
    form = login_form(BeautifulSoup(await posted.text(), "html.parser"))
    done = await as_client.post(
        str(form["action"]), data=hidden_fields(form), allow_redirects=False
    )
    assert done.status == 303
    assert done.headers["Location"] == "https://rp.example.test/bye"


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        ("https://as.example.test", True),  # the issuer's origin
        ("https://{host}", True),  # the gateway under the name the browser used
        ("http://{host}", False),  # the same name over another scheme
        ("https://evil.example", False),
    ],
)
async def test_which_origins_may_post_a_form(
    as_client: Client, origin: str, accepted: bool
) -> None:
    """Review: the alias check compared host names only, so a page over http could post the
    https gateway's form; it now needs the issuer's scheme too."""
    _, soup = await open_login(as_client, authz_params("conf"))
    form = login_form(soup)
    host = f"{as_client.host}:{as_client.port}"
    response = await as_client.post(
        "/oauth2/login",
        data={**hidden_fields(form), "username": "alice", "password": USERS["alice"][0]},
        headers={"Origin": origin.format(host=host)},
        allow_redirects=False,
    )
    assert response.status == (303 if accepted else 403), await response.text()
