"""The invitation link /oauth2/invitation (issue 12 item 4), through real HTTP and a real
database: the prefilled registration page, joining with an existing account, the way back to
the inviting application (initiate_login_uri, then its own code + PKCE flow answered from the
new session), and every link that cannot be used: forged, truncated, expired, used, revoked,
of a removed organisation; one link redeemed in two browsers at once; the invited email
registering first; a form posted from another site or replayed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import jwt
import pytest
from aiohttp import ClientResponse

from gateway.grants import organizations as orgs
from gateway.keys import CONFIG
from gateway.store import organizations as org_store
from tests.http.checklist import serving
from tests.http.conftest import ISSUER, RELAXED_LIMITS, hidden_flow
from tests.support import USERS, Client, clock_of, write_conf

HUB_LOGIN = "https://hub.example.test/login"
CLIENTS = {
    "hub": {
        "client_id": "hub",
        "redirect_uris": ["https://hub.example.test/cb"],
        "scopes": ["openid", "profile", "email", "organization"],
        "grant_types": ["authorization_code", "refresh_token"],
        "initiate_login_uri": HUB_LOGIN,
    },
    "plain": {
        "client_id": "plain",
        "redirect_uris": ["https://plain.example.test/cb"],
        "scopes": ["openid"],
        "grant_types": ["authorization_code"],
    },
}
NEW_PASSWORD = "Dana-Passw0rd-2026"


@pytest.fixture
async def site(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Client]:
    conn = await asyncpg.connect(database_url)  # the module's database: each test from scratch
    try:
        await conn.execute(
            "DELETE FROM auth.invitation; DELETE FROM auth.membership; "
            "DELETE FROM auth.organization; "
            "DELETE FROM auth.users WHERE email LIKE '%@acme.example'"
        )
        await org_store.org_add(conn, "acme", "Acme Ltd", (), "test")
    finally:
        await conn.close()
    conf = write_conf(
        tmp_path / "conf", gateway={"issuer": ISSUER, "limits": RELAXED_LIMITS}, clients=CLIENTS
    )
    async with serving(conf, database_url) as client:
        yield client


async def invite(
    site: Client, database_url: str, email: str, *, client_id: str | None = "hub", **kw: Any
) -> str:
    """An invitation made the way the CLI and the API make it; its link, as the email has it."""
    conn = await asyncpg.connect(database_url)
    try:
        made = await orgs.invite(
            conn, site.app[CONFIG].current, alias="acme", email=email, client_id=client_id,
            actor="test", **kw,
        )  # fmt: skip
    finally:
        await conn.close()
    assert made.link.startswith(f"{ISSUER}/oauth2/invitation?token=")
    return made.link.removeprefix(ISSUER)


async def fetch_one(database_url: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchrow(query, *args)
    finally:
        await conn.close()


async def register(
    site: Client, page: ClientResponse, language: str = "en", **fields: str
) -> ClientResponse:
    form = {
        "flow": hidden_flow(await page.text()),
        "name": "Dana Scully",
        "username": "dana",
        "password": NEW_PASSWORD,
        "password_again": NEW_PASSWORD,
        **fields,
    }
    return await site.post(
        "/oauth2/invitation",
        data=form,
        allow_redirects=False,
        headers={"Accept-Language": language},
    )


def readonly_value(html: str, element_id: str) -> str:
    match = re.search(rf'<input[^>]*id="{element_id}"[^>]*>', html)
    assert match, f"no #{element_id}"
    tag = match.group(0)
    assert "readonly" in tag, tag
    assert "name=" not in tag, tag  # shown, never posted: the invitation decides it
    value = re.search(r'value="([^"]*)"', tag)
    assert value
    return value.group(1)


# --- no account yet: the prefilled registration page ----------------------------------------


async def test_the_link_opens_a_prefilled_registration_page(
    site: Client, database_url: str
) -> None:
    page = await site.get(await invite(site, database_url, "dana@acme.example"))
    html = await page.text()
    assert page.status == 200, html
    assert readonly_value(html, "email") == "dana@acme.example"
    assert readonly_value(html, "organization") == "Acme Ltd"
    assert readonly_value(html, "account_type") == "Organisation member"
    assert 'name="name"' in html
    assert 'name="password"' in html
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    russian = await site.get(
        await invite(site, database_url, "dana@acme.example"), headers={"Accept-Language": "ru"}
    )
    assert "Присоединиться к Acme Ltd" in await russian.text()
    mismatch = await register(site, russian, language="ru", password_again="другой")
    assert "Пароли не совпадают." in await mismatch.text()  # the page's language, too


async def test_registering_creates_a_verified_member_and_goes_back_to_the_app(
    site: Client, database_url: str
) -> None:
    link = await invite(site, database_url, "dana@acme.example", role="admin")
    done = await register(site, await site.get(link))
    assert done.status == 303, await done.text()
    target = urlsplit(done.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == HUB_LOGIN
    assert parse_qs(target.query) == {"iss": [ISSUER], "login_hint": ["dana@acme.example"]}
    user = await fetch_one(
        database_url,
        "SELECT u.id, u.username, u.name, u.email_verified, m.role FROM auth.users u "
        "JOIN auth.membership m ON m.user_id = u.id WHERE u.email = 'dana@acme.example'",
    )
    assert (user["username"], user["name"], user["email_verified"], user["role"]) == (
        "dana",
        "Dana Scully",
        True,
        "admin",
    )
    invitation = await fetch_one(database_url, "SELECT used_at, used_by FROM auth.invitation")
    assert invitation["used_by"] == user["id"]

    # The application starts its own code + PKCE S256 flow: answered from the new session,
    # without asking again, and its tokens carry the organisation.
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    authorize = await site.get(
        "/oauth2/authorize",
        params={
            "response_type": "code",
            "client_id": "hub",
            "redirect_uri": "https://hub.example.test/cb",
            "scope": "openid organization",
            "state": "s1",
            "nonce": "n1",
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
            "login_hint": "dana@acme.example",
            "prompt": "none",
        },
        allow_redirects=False,
    )
    assert authorize.status in (302, 303), await authorize.text()
    code = parse_qs(urlsplit(authorize.headers["Location"]).query)["code"][0]
    tokens = await site.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://hub.example.test/cb",
            "client_id": "hub",
            "code_verifier": verifier,
        },
    )
    body = await tokens.json()
    assert tokens.status == 200, body
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["organization"] == ["acme"]


async def test_without_an_application_to_return_to_the_page_says_the_account_is_ready(
    site: Client, database_url: str
) -> None:
    link = await invite(site, database_url, "dana@acme.example", client_id=None)
    done = await register(site, await site.get(link))
    assert done.status == 200
    assert "You are a member of Acme Ltd" in await done.text()
    plain = await register(
        site, await site.get(await invite(site, database_url, "eve@acme.example",
                                          client_id="plain")), username="eve")  # fmt: skip
    assert plain.status == 200  # a client without initiate_login_uri
    assert "Your account is ready" in await plain.text()


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        pytest.param({"password_again": "something else"}, 400, "not the same", id="mismatch"),
        pytest.param({"password": "", "password_again": ""}, 400, "empty", id="empty-password"),
        pytest.param({"name": "   "}, 400, "Enter your name", id="blank-name"),
        pytest.param({"username": "has space"}, 400, "without spaces", id="username-space"),
        pytest.param({"username": "alice"}, 409, "taken", id="username-taken"),
        pytest.param({"username": USERS["bob"][1]}, 400, "must be your own email",
                     id="someones-email"),
        pytest.param({"username": "ali\u200bce"}, 400, "without spaces", id="zero-width"),
    ],
)  # fmt: skip
async def test_a_registration_that_cannot_be_stored_keeps_the_page(
    site: Client, database_url: str, fields: dict[str, str], status: int, message: str
) -> None:
    link = await invite(site, database_url, "dana@acme.example")
    again = await register(site, await site.get(link), **fields)
    html = await again.text()
    assert again.status == status, html
    assert message in html
    assert readonly_value(html, "email") == "dana@acme.example"
    assert await fetch_one(database_url, "SELECT used_at FROM auth.invitation WHERE used_at IS "
                                         "NOT NULL") is None  # fmt: skip
    ok = await register(site, again)  # the page it answered with still works
    assert ok.status == 303


# --- an account has the email: sign in, then join -----------------------------------------------


async def test_an_existing_account_signs_in_and_joins(site: Client, database_url: str) -> None:
    link = await invite(site, database_url, USERS["bob"][1])
    page = await site.get(link)
    html = await page.text()
    assert page.status == 200
    assert "Join Acme Ltd?" in html
    assert readonly_value(html, "username") == USERS["bob"][1]
    wrong = await site.post(
        "/oauth2/invitation",
        data={"flow": hidden_flow(html), "password": "not-bobs"},
        allow_redirects=False,
    )
    assert wrong.status == 401
    assert "wrong" in await wrong.text()
    joined = await site.post(
        "/oauth2/invitation",
        data={"flow": hidden_flow(await wrong.text()), "password": USERS["bob"][0]},
        allow_redirects=False,
    )
    assert joined.status == 303, await joined.text()
    assert joined.headers["Location"].startswith(HUB_LOGIN + "?")
    role = await fetch_one(
        database_url,
        "SELECT m.role FROM auth.membership m JOIN auth.users u ON u.id = m.user_id "
        "WHERE u.username = 'bob'",
    )
    assert role["role"] == "member"


async def test_a_browser_signed_in_as_that_account_only_confirms(
    site: Client, database_url: str
) -> None:
    first = await site.get(await invite(site, database_url, USERS["bob"][1]))
    signed = await site.post(
        "/oauth2/invitation",
        data={"flow": hidden_flow(await first.text()), "password": USERS["bob"][0]},
        allow_redirects=False,
    )
    assert signed.status == 303
    conn = await asyncpg.connect(database_url)
    try:
        await org_store.org_add(conn, "globex", "Globex", (), "test")
        made = await orgs.invite(conn, site.app[CONFIG].current, alias="globex",
                                 email=USERS["bob"][1], client_id="hub", actor="test")  # fmt: skip
    finally:
        await conn.close()
    page = await site.get(made.link.removeprefix(ISSUER))
    html = await page.text()
    assert "You are signed in as bob@example.test" in html
    assert 'name="password"' not in html
    joined = await site.post(
        "/oauth2/invitation", data={"flow": hidden_flow(html)}, allow_redirects=False
    )
    assert joined.status == 303, await joined.text()


# --- links that cannot be used: a page that says which, and nothing changes --------------------


async def problem(site: Client, link: str, status: int, text: str) -> None:
    page = await site.get(link)
    html = await page.text()
    assert page.status == status, html
    assert text in html
    assert "ask an administrator of the organisation to invite you again" in html


async def test_forged_truncated_and_unknown_links(site: Client, database_url: str) -> None:
    link = await invite(site, database_url, "dana@acme.example")
    await problem(site, link[:-5], 404, "not valid")  # truncated
    await problem(site, link[:-1] + ("A" if link[-1] != "A" else "B"), 404, "not valid")
    await problem(site, "/oauth2/invitation", 404, "not valid")
    await problem(site, "/oauth2/invitation?token=%3Cscript%3E", 404, "not valid")


async def test_an_expired_link(site: Client, database_url: str) -> None:
    expired = await invite(site, database_url, "old@acme.example")
    page = await site.get(expired)
    assert page.status == 200
    clock_of(site).advance(7 * 86400 + 1)  # organizations.invitation_ttl, the default 7 days
    await problem(site, expired, 410, "has expired")
    late = await register(site, page)  # the page opened in time, posted too late
    assert late.status == 400
    assert "open too long and has expired" in await late.text()
    assert (
        await fetch_one(database_url, "SELECT 1 FROM auth.users WHERE email = 'old@acme.example'")
        is None
    )


async def test_used_revoked_and_removed(site: Client, database_url: str) -> None:
    used = await invite(site, database_url, "dana@acme.example")
    assert (await register(site, await site.get(used))).status == 303
    await problem(site, used, 410, "has been used")

    revoked = await invite(site, database_url, "frank@acme.example")
    conn = await asyncpg.connect(database_url)
    try:
        await org_store.org_revoke_invite(conn, "acme", "frank@acme.example", "test")
        await problem(site, revoked, 410, "withdrawn")
        removed = await invite(site, database_url, "gina@acme.example")
        await org_store.org_remove(conn, "acme", "test")
    finally:
        await conn.close()
    await problem(site, removed, 410, "no longer exists")
    users = await fetch_one(
        database_url, "SELECT count(*) AS n FROM auth.users WHERE email LIKE '%@acme.example'"
    )
    assert users["n"] == 1  # only dana, who registered before the rest


async def test_one_link_in_two_browsers_at_once_exactly_one_wins(
    site: Client, database_url: str, tmp_path: Path
) -> None:
    link = await invite(site, database_url, "dana@acme.example")
    conf = site.app[CONFIG].current.path
    async with serving(conf, database_url) as other:
        pages = [await site.get(link), await other.get(link)]
        answers = await asyncio.gather(
            register(site, pages[0], username="dana1"),
            register(other, pages[1], username="dana2"),
        )
        texts = [await a.text() for a in answers]  # read while both servers still run
    statuses = sorted(a.status for a in answers)
    assert statuses == [303, 410], texts
    loser = next(t for a, t in zip(answers, texts, strict=True) if a.status == 410)
    assert "has been used" in loser
    count = await fetch_one(database_url, "SELECT count(*) AS n FROM auth.users WHERE "
                                          "email = 'dana@acme.example'")  # fmt: skip
    assert count["n"] == 1


async def test_the_invited_email_registered_first_so_the_page_offers_to_join(
    site: Client, database_url: str
) -> None:
    link = await invite(site, database_url, "dana@acme.example")
    page = await site.get(link)  # the registration page, opened before...
    conn = await asyncpg.connect(database_url)
    try:  # ...the same person signed up another way
        await conn.execute(
            "SELECT daemon.user_add('dana.s', (SELECT password_hash FROM auth.users "
            "WHERE username = 'alice'), 'dana@acme.example', 'Dana')"
        )
    finally:
        await conn.close()
    answer = await register(site, page)
    html = await answer.text()
    assert answer.status == 409, html
    assert "Join Acme Ltd?" in html
    assert await fetch_one(database_url, "SELECT 1 FROM auth.membership") is None


async def test_a_form_posted_from_another_site_or_in_another_browser_is_refused(
    site: Client, database_url: str
) -> None:
    link = await invite(site, database_url, "dana@acme.example")
    page = await site.get(link)
    flow = hidden_flow(await page.text())
    data = {"flow": flow, "name": "D", "username": "d", "password": "p-1234567",
            "password_again": "p-1234567"}  # fmt: skip
    cross = await site.post(
        "/oauth2/invitation", data=data, headers={"Origin": "https://evil.example"}
    )
    assert cross.status == 403
    assert "another web site" in await cross.text()
    site.session.cookie_jar.clear()  # another browser: the form's nonce cookie is not there
    foreign = await site.post("/oauth2/invitation", data=data)
    assert foreign.status == 403
    assert await fetch_one(database_url, "SELECT 1 FROM auth.membership") is None
