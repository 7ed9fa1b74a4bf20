"""Self-registration and recovery in a real browser (Debian's Chromium through Playwright), with
the mail received by a real SMTP server (aiosmtpd): a person on a third-party application's
sign-in registers, opens the link from the email, confirms, and signs in to the application;
another forgets the password, opens the emailed link, chooses a new one and signs in with it.
(Issue 12 item 5; SECURITY-CHECKLIST items 15 and 140 in tests/http/test_accounts.py.)
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from tests.e2e.relying_party import RelyingParty, sign_in_on_the_login_page
from tests.http.mail_support import SENDER, Inbox, eventually, smtp_server, smtp_url
from tests.support import GatewayTestServer, bound_socket, light_passwords, write_conf

pytestmark = pytest.mark.browser

PASSWORD = "Erin-Passw0rd-2026"
NEW_PASSWORD = "Frank-New-Passw0rd-9"


@dataclass
class Site:
    gateway: str
    chat: RelyingParty
    inbox: Inbox

    async def link(self, count: int) -> str:
        await eventually(lambda: len(self.inbox.messages) >= count, "the email")
        body = self.inbox.messages[count - 1].get_body(("plain",))
        assert body is not None
        found = re.search(rf"{re.escape(self.gateway)}/oauth2/account/\S+", str(body.get_content()))
        assert found
        return found.group(0)


@pytest.fixture
async def site(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Site]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM auth.users WHERE email LIKE '%@accounts.example'")
    finally:
        await conn.close()
    sock = bound_socket()
    gateway = f"http://localhost:{sock.getsockname()[1]}"
    chat = RelyingParty(gateway, "chat", "chat-secret-0123456789")
    await chat.start()
    inbox = Inbox()
    async with smtp_server(inbox) as port:
        conf = write_conf(
            tmp_path / "conf",
            gateway={
                "issuer": gateway,
                "mail": {"sender": SENDER, "poll_interval": 0.1, "url": smtp_url(port)},
            },
            clients={
                "chat": {
                    "client_id": "chat",
                    "client_secret": chat.client_secret,
                    "redirect_uris": [chat.redirect_uri],
                    "scopes": ["openid", "profile", "email", "offline_access"],
                }
            },
            sites={
                "default": {
                    "hosts": ["localhost"],
                    "accounts": {"registration": True, "recovery": True},
                }
            },
        )
        holder = ConfigHolder(load_config(conf, environ={}))
        server = GatewayTestServer(
            create_app(holder, database_url=database_url), socket_factory=lambda *_: sock
        )
        await server.start_server()
        try:
            yield Site(gateway, chat, inbox)
        finally:
            await server.close()
            await chat.close()


async def test_a_person_registers_confirms_the_email_and_signs_in(site: Site, browser: Any) -> None:
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{site.chat.origin}/login")
    assert page.url.startswith(f"{site.gateway}/oauth2/authorize?")
    await page.click("text=Create account")
    assert await page.title() == "Create an account"
    await page.fill("#email", "erin@accounts.example")
    await page.fill("#name", "Erin Example")
    await page.fill("#username", "erin")
    await page.fill("#password", PASSWORD)
    await page.fill("#password_again", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    assert "We sent a message to erin@accounts.example" in await page.inner_text("body")

    # The link from the email, opened in the same browser: confirm, then back to the sign-in.
    await page.goto(await site.link(1))
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    assert "Your email address is confirmed" in await page.inner_text("body")
    await page.click("text=Continue to sign in")
    await page.wait_for_load_state()
    await sign_in_on_the_login_page(page, "erin", PASSWORD)
    assert page.url.startswith(f"{site.chat.redirect_uri}?")
    assert await page.inner_text("#user") == "erin"


async def test_forgot_password_email_new_password_sign_in(
    site: Site, browser: Any, database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        hashed = light_passwords().hash("Old-Passw0rd-1")
        await conn.execute(
            "SELECT daemon.user_add('frank', $1, 'frank@accounts.example', 'Frank')", hashed
        )
    finally:
        await conn.close()
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{site.chat.origin}/login")
    await page.click("text=Forgot password?")
    await page.fill("#email", "frank@accounts.example")
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    assert "valid for 30 minutes" in await page.inner_text("body")

    await page.goto(await site.link(1))
    assert await page.title() == "Choose a new password"
    await page.fill("#password", NEW_PASSWORD)
    await page.fill("#password_again", NEW_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    assert "Your password is changed" in await page.inner_text("body")
    await page.click("text=Continue to sign in")
    await page.wait_for_load_state()
    await sign_in_on_the_login_page(page, "frank", NEW_PASSWORD)
    assert page.url.startswith(f"{site.chat.redirect_uri}?")
    assert await page.inner_text("#user") == "frank"
