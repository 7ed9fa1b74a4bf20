"""Self-registration and account recovery (issue 12 item 5) through real HTTP, a real database
and a real SMTP server (aiosmtpd): the sign-in page's links, registering, the emailed
verification link, "forgot password?", the 30-minute single-use reset link that ends every
session, and everything that must fail: forged, truncated, expired and reused links, a form
from another origin, a site that has not switched them on, throttling.

SECURITY-CHECKLIST items: 15 (sealed, browser-bound forms: a POST from another origin is
refused), 138 (throttling per email and per address, 429 with Retry-After), 140 (no account
enumeration: the same status and body, and similar time, for known and unknown emails).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientResponse

from tests.http.checklist import serving
from tests.http.conftest import CLIENTS, ISSUER, RELAXED_LIMITS, authz_params, basic, hidden_flow
from tests.http.mail_support import SENDER, Inbox, eventually, smtp_server, smtp_url
from tests.support import Client, clock_of, light_passwords, write_conf

PASSWORD = "Erin-Passw0rd-2026"
NEW_PASSWORD = "Brand-New-Passw0rd-7"
ON = {"registration": True, "recovery": True}
LINK = re.compile(r"https://as\.example\.test(/oauth2/account/(?:verify|reset)\?token=[\w-]+)")


@dataclass
class Site:
    client: Client
    inbox: Inbox
    db: asyncpg.Connection

    async def mails(self, count: int) -> list[EmailMessage]:
        await eventually(lambda: len(self.inbox.messages) >= count, f"{count} mail(s)")
        return list(self.inbox.messages)


def conf(directory: Path, port: int, accounts: dict[str, Any], **limits: int) -> Path:
    return write_conf(
        directory,
        gateway={
            "issuer": ISSUER,
            "limits": {**RELAXED_LIMITS, **limits},
            "mail": {"sender": SENDER, "timeout": 5, "poll_interval": 0.1, "url": smtp_url(port)},
        },
        clients=CLIENTS,
        sites={"default": {"hosts": ["127.0.0.1", "localhost"], "accounts": accounts}},
    )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    await conn.execute(
        "DELETE FROM mail.outbox; DELETE FROM auth.throttle; "
        "DELETE FROM auth.users WHERE email LIKE '%@accounts.example'"
    )
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def site(
    tmp_path: Path, database_url: str, db: asyncpg.Connection, users: dict[str, str]
) -> AsyncIterator[Site]:
    inbox = Inbox()
    async with smtp_server(inbox) as port:
        limits = {"account_requests_per_email": 10}
        async with serving(conf(tmp_path / "conf", port, ON, **limits), database_url) as client:
            yield Site(client, inbox, db)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def link_in(message: EmailMessage) -> str:
    found = LINK.search(text_of(message))
    assert found, text_of(message)
    return found.group(1)


async def sign_in_page(client: Client) -> str:
    page = await client.get("/oauth2/authorize", params=authz_params(), allow_redirects=False)
    assert page.status == 200
    return await page.text()


def href(html: str, text: str) -> str:
    found = re.search(rf'<a href="([^"]+)">{re.escape(text)}</a>', html)
    assert found, f"no link {text!r}"
    return found.group(1).replace("&amp;", "&")


async def register(client: Client, email: str, **fields: str) -> ClientResponse:
    page = await client.get("/oauth2/account/register")
    form = {
        "flow": hidden_flow(await page.text()),
        "email": email,
        "name": "Erin Example",
        "username": email.split("@")[0],
        "password": PASSWORD,
        "password_again": PASSWORD,
        **fields,
    }
    return await client.post("/oauth2/account/register", data=form)


async def forgot(client: Client, email: str) -> ClientResponse:
    page = await client.get("/oauth2/account/forgot")
    form = {"flow": hidden_flow(await page.text()), "email": email}
    return await client.post("/oauth2/account/forgot", data=form)


async def use_link(client: Client, path: str, **fields: str) -> ClientResponse:
    page = await client.get(path)
    assert page.status == 200, await page.text()
    data = {"flow": hidden_flow(await page.text()), **fields}
    return await client.post(path.split("?")[0], data=data)


async def password_grant(client: Client, username: str, password: str) -> ClientResponse:
    return await client.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": username, "password": password,
              "scope": "openid offline_access"},
        headers=basic("conf", "s3cr3t"),
    )  # fmt: skip


async def add_user(db: asyncpg.Connection, name: str, email: str, password: str) -> None:
    hashed = light_passwords().hash(password)
    await db.execute("SELECT daemon.user_add($1, $2, $3, $4)", name, hashed, email, name)


def without_flow(html: str) -> str:
    return re.sub(r'name="flow" value="[^"]*"', "", html)


# --- the sign-in page ---------------------------------------------------------------------------


async def test_the_sign_in_page_links_to_both_and_they_keep_the_authorization_request(
    site: Site,
) -> None:
    html = await sign_in_page(site.client)
    for text in ("Create account", "Forgot password?"):
        page = await site.client.get(href(html, text))
        assert page.status == 200
        back = href(await page.text(), "Back to sign in")
        assert back.startswith("/oauth2/authorize?")
        again = await site.client.get(back, allow_redirects=False)
        assert again.status == 200
        assert "Sign in to continue" in await again.text()


async def test_a_site_without_the_switches_shows_no_links_and_no_pages(
    tmp_path: Path, database_url: str, users: dict[str, str]
) -> None:
    inbox = Inbox()
    async with (
        smtp_server(inbox) as port,
        serving(conf(tmp_path / "conf", port, {}), database_url) as client,
    ):
        html = await sign_in_page(client)
        assert "Create account" not in html
        assert "Forgot password?" not in html
        for path in ("/oauth2/account/register", "/oauth2/account/forgot"):
            assert (await client.get(path)).status == 404
            assert (await client.post(path, data={"email": "x@y.test"})).status == 404


# --- registration -------------------------------------------------------------------------------


async def test_registering_verifying_and_signing_in(site: Site) -> None:
    html = await sign_in_page(site.client)
    page = await site.client.get(href(html, "Create account"))
    form = {
        "flow": hidden_flow(await page.text()),
        "email": "erin@accounts.example",
        "name": "Erin Example",
        "username": "erin",
        "password": PASSWORD,
        "password_again": PASSWORD,
    }
    done = await site.client.post("/oauth2/account/register", data=form)
    assert done.status == 200
    assert "We sent a message to erin@accounts.example" in await done.text()

    # Pending: the password is right, but the account cannot sign in yet.
    refused = await password_grant(site.client, "erin", PASSWORD)
    assert refused.status == 400
    assert (await refused.json())["error"] == "invalid_grant"

    (mail,) = await site.mails(1)
    assert mail["To"] == "erin@accounts.example"
    assert mail["Subject"] == "Confirm your email address"
    path = link_in(mail)
    confirmed = await use_link(site.client, path)
    body = await confirmed.text()
    assert confirmed.status == 200
    assert "Your email address is confirmed" in body
    assert href(body, "Continue to sign in").startswith("/oauth2/authorize?")
    row = await site.db.fetchrow(
        "SELECT email_verified, pending_verification FROM auth.users WHERE username = 'erin'"
    )
    assert row is not None
    assert (row["email_verified"], row["pending_verification"]) == (True, False)
    assert (await password_grant(site.client, "erin", PASSWORD)).status == 200

    # Single use: the link again says so, and nothing changes.
    again = await site.client.get(path)
    assert again.status == 410
    assert "used already" in await again.text()


async def test_known_and_unknown_emails_get_the_same_answer(site: Site) -> None:
    """Item 140: the same status and body (but for the email typed), similar time; the owner of
    the known address gets a notice instead of a link, and nothing about the account changes."""
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    bodies: dict[str, str] = {}
    for i in range(3):
        for kind, email in (("known", "bob@example.test"), ("unknown", f"n{i}@accounts.example")):
            started = time.monotonic()
            answer = await register(site.client, email, username=f"{kind}{i}")
            timings[kind].append(time.monotonic() - started)
            assert answer.status == 200
            bodies[kind] = without_flow(await answer.text()).replace(email, "EMAIL")
    assert bodies["known"] == bodies["unknown"]
    assert abs(sorted(timings["known"])[1] - sorted(timings["unknown"])[1]) < 0.05
    mails = await site.mails(6)
    notices = [m for m in mails if m["To"] == "bob@example.test"]
    assert len(notices) == 3
    assert "already has an account" in text_of(notices[0])
    assert "token=" not in text_of(notices[0]).replace("forgot", "")
    assert (
        await site.db.fetchval("SELECT count(*) FROM auth.users WHERE username LIKE 'known%'") == 0
    )
    # Bob still signs in with his own password.
    assert (await password_grant(site.client, "bob", "B0b-Passw0rd!")).status == 200

    # Recovery too: known and unknown emails, one answer.
    answers = [
        await forgot(site.client, e) for e in ("bob@example.test", "nobody@accounts.example")
    ]
    assert {a.status for a in answers} == {200}
    texts = [without_flow(await a.text()) for a in answers]
    assert texts[0].replace("bob@example.test", "E") == texts[1].replace(
        "nobody@accounts.example", "E"
    )


async def test_registration_input_is_checked_and_a_taken_user_name_refused(site: Site) -> None:
    differ = await register(site.client, "f@accounts.example", password_again="other-Passw0rd")
    assert differ.status == 400
    assert "not the same" in await differ.text()
    taken = await register(site.client, "f@accounts.example", username="alice")
    assert taken.status == 409
    assert "user name is taken" in await taken.text()
    # A taken name is refused for a known email just the same (nothing about the email).
    taken_known = await register(site.client, "bob@example.test", username="alice")
    assert taken_known.status == 409
    assert without_flow(await taken.text()).replace("f@accounts.example", "E") == without_flow(
        await taken_known.text()
    ).replace("bob@example.test", "E")
    at = await register(site.client, "f@accounts.example", username="alice@example.test")
    assert at.status == 400
    # Invisible characters make a name that looks like another's: refused, as for invitations.
    hidden = await register(site.client, "f@accounts.example", username="ali\u200bce")
    assert hidden.status == 400
    assert "without spaces" in await hidden.text()
    bad = await register(site.client, "not-an-email")
    assert bad.status == 400
    assert (
        await site.db.fetchval("SELECT count(*) FROM auth.users WHERE email = 'f@accounts.example'")
        == 0
    )


async def test_registering_again_before_verifying_replaces_the_pending_account(site: Site) -> None:
    await register(site.client, "g@accounts.example", username="g1")
    await register(site.client, "g@accounts.example", username="g2")
    first, second = await site.mails(2)
    old = await site.client.get(link_in(first))
    assert old.status == 410
    assert (await use_link(site.client, link_in(second))).status == 200
    assert (await password_grant(site.client, "g2", PASSWORD)).status == 200
    assert (await password_grant(site.client, "g1", PASSWORD)).status == 400


# --- bad links ----------------------------------------------------------------------------------


async def test_forged_truncated_expired_and_other_purpose_links_are_refused(site: Site) -> None:
    await register(site.client, "h@accounts.example")
    (mail,) = await site.mails(1)
    path = link_in(mail)
    token = path.split("token=")[1]
    forged = await site.client.get(f"/oauth2/account/verify?token={'A' * 43}")
    assert forged.status == 404
    assert "not valid" in await forged.text()
    truncated = await site.client.get(f"/oauth2/account/verify?token={token[:-1]}")
    assert truncated.status == 404
    missing = await site.client.get("/oauth2/account/verify")
    assert missing.status == 404
    other = await site.client.get(f"/oauth2/account/reset?token={token}")
    assert other.status == 404  # a verification link is no reset link
    page = await site.client.get(path)
    flow = hidden_flow(await page.text())
    clock_of(site.client).advance(86400 + 1)
    expired = await site.client.get(path)
    assert expired.status == 410
    assert "expired" in await expired.text()
    late = await site.client.post("/oauth2/account/verify", data={"flow": flow})
    assert late.status in (400, 410)
    assert await site.db.fetchval(
        "SELECT pending_verification FROM auth.users WHERE email = 'h@accounts.example'"
    )


async def test_a_form_from_another_origin_or_forged_is_refused(site: Site) -> None:
    """Item 15: the sealed form is bound to this browser and this origin."""
    page = await site.client.get("/oauth2/account/register")
    form = {
        "flow": hidden_flow(await page.text()),
        "email": "i@accounts.example",
        "name": "I",
        "username": "i",
        "password": PASSWORD,
        "password_again": PASSWORD,
    }
    cross = await site.client.post(
        "/oauth2/account/register", data=form, headers={"Origin": "https://evil.example"}
    )
    assert cross.status == 403
    assert "another web site" in await cross.text()
    forged = await site.client.post("/oauth2/account/forgot", data={**form, "flow": "x"})
    assert forged.status == 403
    # The register form's seal does not open as a forgot form.
    swapped = await site.client.post("/oauth2/account/forgot", data=form)
    assert swapped.status == 403
    assert site.inbox.messages == []


# --- recovery -----------------------------------------------------------------------------------


async def test_a_reset_sets_the_password_and_ends_every_session(site: Site) -> None:
    await add_user(site.db, "judy", "judy@accounts.example", PASSWORD)
    html = await sign_in_page(site.client)
    before = await password_grant(site.client, "judy", PASSWORD)
    tokens = await before.json()
    assert before.status == 200, tokens

    page = await site.client.get(href(html, "Forgot password?"))
    sent = await site.client.post(
        "/oauth2/account/forgot",
        data={"flow": hidden_flow(await page.text()), "email": "JUDY@accounts.example"},
    )
    assert sent.status == 200
    assert "valid for 30 minutes" in await sent.text()
    (mail,) = await site.mails(1)
    assert mail["Subject"] == "Reset your password"
    path = link_in(mail)

    differ = await use_link(site.client, path, password=NEW_PASSWORD, password_again="x")
    assert differ.status == 400  # and the link is still good
    done = await use_link(site.client, path, password=NEW_PASSWORD, password_again=NEW_PASSWORD)
    body = await done.text()
    assert done.status == 200
    assert "signed out everywhere" in body
    assert href(body, "Continue to sign in").startswith("/oauth2/authorize?")

    refreshed = await site.client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=basic("conf", "s3cr3t"),
    )
    assert refreshed.status == 400
    assert (await refreshed.json())["error"] == "invalid_grant"
    userinfo = await site.client.get(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status == 401
    assert (await password_grant(site.client, "judy", PASSWORD)).status == 400
    assert (await password_grant(site.client, "judy", NEW_PASSWORD)).status == 200
    reused = await site.client.get(path)
    assert reused.status == 410
    audit = await site.db.fetch(
        "SELECT kind FROM audit.event e JOIN auth.users u ON u.id = e.user_id "
        "WHERE u.username = 'judy' ORDER BY e.id"
    )
    events = [r["kind"] for r in audit]
    assert "account.recover" in events
    assert "account.reset" in events
    assert "user.password" in events


async def test_a_reset_link_lasts_30_minutes(site: Site) -> None:
    await add_user(site.db, "kim", "kim@accounts.example", PASSWORD)
    await forgot(site.client, "kim@accounts.example")
    (mail,) = await site.mails(1)
    clock_of(site.client).advance(29 * 60)
    assert (await site.client.get(link_in(mail))).status == 200
    clock_of(site.client).advance(61)
    expired = await site.client.get(link_in(mail))
    assert expired.status == 410
    assert "Ask for a new link" in await expired.text()


async def test_no_mail_for_an_unknown_or_locked_email(site: Site) -> None:
    for email in ("nobody@accounts.example", "carol@example.test"):
        assert (await forgot(site.client, email)).status == 200
    await forgot(site.client, "bob@example.test")
    (mail,) = await site.mails(1)
    assert mail["To"] == "bob@example.test"
    assert await site.db.fetchval("SELECT count(*) FROM mail.outbox") == 1


# --- throttling ---------------------------------------------------------------------------------


async def test_requests_are_throttled_per_email_and_per_address(
    tmp_path: Path, database_url: str, db: asyncpg.Connection, users: dict[str, str]
) -> None:
    """Item 138: per email (known or not, alike) and per client address; 429 + Retry-After."""
    inbox = Inbox()
    limits = {"account_requests_per_email": 2, "account_requests_per_ip": 5,
              "account_lock_seconds": 60}  # fmt: skip
    async with (
        smtp_server(inbox) as port,
        serving(conf(tmp_path / "conf", port, ON, **limits), database_url) as client,
    ):
        for email in ("bob@example.test", "nobody@accounts.example"):
            statuses = [(await forgot(client, email)).status for _ in range(3)]
            assert statuses == [200, 200, 429]
        throttled = await forgot(client, "bob@example.test")
        assert throttled.status == 429
        assert 0 < int(throttled.headers["Retry-After"]) <= 60
        assert "Too many attempts" in await throttled.text()
        # Refusals are not counted: four so far from this address; the fifth reaches the
        # address's threshold, and then any email is refused from it.
        assert (await forgot(client, "other@accounts.example")).status == 200
        sixth = await forgot(client, "another@accounts.example")
        assert sixth.status == 429
        clock_of(client).advance(3601)
        assert (await forgot(client, "bob@example.test")).status == 200
