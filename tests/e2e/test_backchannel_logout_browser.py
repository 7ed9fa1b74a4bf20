"""Back-channel logout, end to end (issue 14 item 1, "Done when"): a third-party app (a real
relying party on its own origin, tests/e2e/relying_party.py, registered with a
``backchannel_logout_uri``) signs its user in through the gateway in Chromium (code flow, PKCE
S256); when the session ends at the gateway (the person signs out in the browser, or an
operator runs ``gateway user lock`` as the real command), the app's back end receives a logout
token for each of the user's sessions, which it verifies as the spec's section 2.6 says (pyjwt,
the gateway's JWKS over HTTP).

SECURITY-CHECKLIST items 54 (a lock ends every session, and the apps hear of it) and 86/87."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from tests.e2e.relying_party import RelyingParty, sign_in_on_the_login_page
from tests.http.mail_support import eventually
from tests.support import (
    USERS,
    GatewayTestServer,
    bound_socket,
    gateway_env,
    run_gateway,
    write_conf,
)

pytestmark = pytest.mark.browser

ALICE = USERS["alice"][0]


@dataclass
class Site:
    gateway: str
    chat: RelyingParty
    conf: Path
    database_url: str


@pytest.fixture
async def site(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Site]:
    sock = bound_socket()
    gateway = f"http://127.0.0.1:{sock.getsockname()[1]}"
    chat = RelyingParty(gateway, "chat", "chat-secret-0123456789")
    await chat.start()
    conf = write_conf(
        tmp_path / "conf",
        gateway={"issuer": gateway, "backchannel_logout": {"poll_interval": 0.1}},
        clients={
            "chat": {
                "client_id": chat.client_id,
                "client_secret": chat.client_secret,
                "redirect_uris": [chat.redirect_uri],
                "post_logout_redirect_uris": [chat.post_logout_uri],
                "scopes": ["openid", "profile", "email"],
                "backchannel_logout_uri": chat.backchannel_logout_uri,
            }
        },
    )
    holder = ConfigHolder(load_config(conf, environ={}))
    server = GatewayTestServer(
        create_app(holder, database_url=database_url),
        host="127.0.0.1",
        socket_factory=lambda *_: sock,
    )
    await server.start_server()
    try:
        yield Site(gateway, chat, conf, database_url)
    finally:
        await server.close()
        await chat.close()


async def sign_in_to_the_chat(site: Site, browser: Any) -> Any:
    """A person opens the chat and signs in on the gateway's page (a browser of their own)."""
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{site.chat.origin}/login")
    assert await page.title() == "Sign in"
    await sign_in_on_the_login_page(page, "alice", ALICE)
    assert page.url.startswith(f"{site.chat.redirect_uri}?")
    assert await page.inner_text("#user") == "alice"
    return page


async def test_signing_out_in_the_browser_tells_the_app(
    site: Site, browser: Any, db: asyncpg.Connection
) -> None:
    page = await sign_in_to_the_chat(site, browser)
    (signed,) = site.chat.sign_ins
    assert site.chat.logouts == []

    # The chat's "sign out": RP-initiated logout at the gateway, one click on its page.
    await page.goto(f"{site.chat.origin}/logout")
    assert page.url.startswith(f"{site.gateway}/oauth2/logout?")
    await page.click("form[action='/oauth2/logout'] button[type=submit]")
    await page.wait_for_load_state()
    assert page.url.startswith(f"{site.chat.post_logout_uri}?")

    await eventually(lambda: len(site.chat.logouts) == 1, "the chat's logout token")
    assert site.chat.refused_logouts == []
    (logout,) = site.chat.logouts
    assert logout["sid"] == signed.claims["sid"]
    assert logout["sub"] == signed.claims["sub"]
    assert logout["aud"] == "chat"
    assert logout["iss"] == site.gateway
    assert site.chat.logout_headers[0]["typ"] == "logout+jwt"

    async def sent() -> bool:
        # The app may answer before the sender has recorded its answer.
        state = await db.fetchval(
            "SELECT state FROM auth.backchannel_logout WHERE session_id = $1::text::uuid",
            signed.claims["sid"],
        )
        return bool(state == "sent")

    await eventually(sent, "the outbox to say sent")


async def test_gateway_user_lock_tells_the_app_about_every_session(
    site: Site, browser: Any
) -> None:
    """Two browsers, two sessions; ``gateway user lock alice`` (the real command, its own
    process) ends both, and the app receives one logout token for each."""
    await sign_in_to_the_chat(site, browser)
    await sign_in_to_the_chat(site, browser)
    sids = {s.claims["sid"] for s in site.chat.sign_ins}
    assert len(sids) == 2
    env = gateway_env(GATEWAY_DATABASE_URL=site.database_url, GATEWAY_CONFIG=str(site.conf))
    locked: subprocess.CompletedProcess[str] = await asyncio.to_thread(
        run_gateway, "user", "lock", "alice", env=env
    )
    assert locked.returncode == 0, locked.stderr
    assert "2 sessions ended" in locked.stdout

    await eventually(lambda: len(site.chat.logouts) == 2, "a logout token per session")
    assert site.chat.refused_logouts == []
    assert {c["sid"] for c in site.chat.logouts} == sids
    assert {c["sub"] for c in site.chat.logouts} == {s.claims["sub"] for s in site.chat.sign_ins}
    await asyncio.sleep(0.5)
    assert len(site.chat.logouts) == 2  # once each
