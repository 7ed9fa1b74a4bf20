"""Seed 002's whole story in Chromium, with a person's clicks only (issue 12, "Done when").

An organisation admin's application (a service client holding ``organizations.manage``) invites
dana@acme.example through ``/admin/v1/organizations``. The email arrives at a real SMTP server
started here (aiosmtpd on 127.0.0.1). Dana opens its link: the registration page is filled in
(the email fixed, the organisation's name shown and locked, the account type fixed); she enters
her name and a password. The browser goes to the inviting application's ``initiate_login_uri``,
which starts its own authorization request with a public client, code + PKCE S256 (no
"Missing code_challenge_method"); the gateway answers it without asking again, and the tokens
the application receives carry ``organization: ["acme"]``. The application is a real relying
party (authlib, tests/e2e/relying_party.py) on its own origin.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from tests.e2e.relying_party import RelyingParty, query_of
from tests.http.conftest import basic
from tests.http.mail_support import SENDER, Inbox, eventually, smtp_server, smtp_url
from tests.support import GatewayTestServer, bound_socket, write_conf

pytestmark = pytest.mark.browser

SERVICE = ("admin-app", "admin-app-secret-0123456789")
PASSWORD = "Dana-Passw0rd-2026"


@dataclass
class Story:
    gateway: GatewayTestServer
    issuer: str
    hub: RelyingParty
    inbox: Inbox


@pytest.fixture
async def story(tmp_path: Path, database_url: str) -> AsyncIterator[Story]:
    inbox = Inbox()
    async with smtp_server(inbox) as port:
        sock = bound_socket()
        issuer = f"http://localhost:{sock.getsockname()[1]}"
        hub = RelyingParty(issuer, "hub", None, scope="openid profile email organization")
        await hub.start()
        conf = write_conf(
            tmp_path / "conf",
            gateway={
                "issuer": issuer,
                "mail": {
                    "url": smtp_url(port),
                    "sender": SENDER,
                    "poll_interval": 0.1,
                    "dir": str(tmp_path / "mail"),
                },
            },
            clients={
                "admin-app": {
                    "client_id": SERVICE[0],
                    "client_secret": SERVICE[1],
                    "scopes": ["organizations.manage"],
                    "grant_types": ["client_credentials"],
                },
                "hub": {  # public: PKCE S256 is required of it
                    "client_id": "hub",
                    "redirect_uris": [hub.redirect_uri],
                    "scopes": ["openid", "profile", "email", "organization"],
                    "initiate_login_uri": f"{hub.origin}/login",
                },
            },
        )
        app = create_app(ConfigHolder(load_config(conf, environ={})), database_url=database_url)
        gateway = GatewayTestServer(app, host="127.0.0.1", socket_factory=lambda *_: sock)
        await gateway.start_server()
        try:
            yield Story(gateway, issuer, hub, inbox)
        finally:
            await gateway.close()
            await hub.close()


async def admin_api(story: Story, path: str, body: dict[str, Any]) -> Any:
    """What the organisation admin's application does from its back end: a client-credentials
    token with the management scope, then a POST to the admin API."""
    async with aiohttp.ClientSession() as http:
        token = await http.post(
            f"{story.issuer}/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "organizations.manage"},
            headers=basic(*SERVICE),
        )
        assert token.status == 200, await token.text()
        access = (await token.json())["access_token"]
        answer = await http.post(
            f"{story.issuer}{path}", json=body, headers={"Authorization": f"Bearer {access}"}
        )
        assert answer.status == 201, await answer.text()
        return await answer.json()


async def test_an_invited_person_registers_and_the_app_gets_the_organisation(
    story: Story, browser: Any
) -> None:
    await admin_api(story, "/admin/v1/organizations", {"alias": "acme", "name": "Acme Ltd"})
    invited = await admin_api(
        story,
        "/admin/v1/organizations/acme/invitations",
        {"email": "dana@acme.example", "client_id": "hub"},
    )
    assert "link" not in invited

    await eventually(lambda: len(story.inbox.messages) == 1, "the invitation email")
    email = story.inbox.messages[0]
    assert email["To"] == "dana@acme.example"
    assert "Acme Ltd" in str(email["Subject"])
    text = email.get_body(preferencelist=("plain",))
    html = email.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    links = re.findall(r"https?://\S+/oauth2/invitation\?token=[\w-]+", text.get_content())
    assert len(links) == 1
    link = links[0]
    assert link.startswith(f"{story.issuer}/oauth2/invitation?token=")
    assert link in html.get_content()

    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(link)
    assert await page.input_value("#email") == "dana@acme.example"
    assert await page.get_attribute("#email", "readonly") is not None
    assert await page.input_value("#organization") == "Acme Ltd"
    assert await page.get_attribute("#organization", "readonly") is not None
    assert await page.input_value("#account_type") == "Organisation member"
    await page.fill("#name", "Dana Scully")
    await page.fill("#username", "dana")
    await page.fill("#password", PASSWORD)
    await page.fill("#password_again", PASSWORD)
    await page.click("button[type=submit]")

    # The application's initiate_login_uri, its own code + PKCE S256 request, its callback.
    await page.wait_for_selector("#user")
    assert await page.inner_text("#user") == "dana"
    assert await page.inner_text("#organizations") == "acme"
    assert story.hub.initiated[-1] == {"iss": story.issuer, "login_hint": "dana@acme.example"}
    sent = query_of(story.hub.sent[-1])
    assert sent["code_challenge_method"] == "S256"
    assert sent["client_id"] == "hub"
    signed_in = story.hub.sign_ins[-1]
    assert signed_in.claims["organization"] == ["acme"]
    access = jwt.decode(signed_in.tokens["access_token"], options={"verify_signature": False})
    assert access["organization"] == ["acme"]

    # The link again, in the same browser: used, and the page says so.
    await page.goto(link)
    assert "has been used" in await page.inner_text("[role=alert]")
    await context.close()
