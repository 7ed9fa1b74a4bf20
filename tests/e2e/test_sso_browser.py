"""The authorization server in a real browser (Debian's Chromium, driven by Playwright): every
page a person meets on the way through single sign-on, used only by a person's actions (fill,
click, follow redirects).

Two sites: the gateway at ``http://localhost:<port>`` and third-party applications (a team
chat, a CRM that asks for consent) at ``http://127.0.0.1:<port>``, each with its own back end
that runs the code flow with authlib (``relying_party.py``), plus an external OpenID provider on
127.0.0.1 with its own sign-in page (``tests/provider.py``). Issue 8 items 1 and 2;
SECURITY-CHECKLIST items 1, 8, 9, 14, 15, 55 and 66 as a browser exercises them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from gateway.keys import AUTHORITY
from gateway.web.authorize import FLOW_TTL
from tests.e2e.relying_party import RelyingParty, query_of, sign_in_on_the_login_page
from tests.provider import FakeProvider
from tests.support import USERS, GatewayTestServer, bound_socket, write_conf

pytestmark = pytest.mark.browser

ALICE = USERS["alice"][0]
PROVIDER_CLIENT = ("gateway-at-fake", "fake-provider-secret")


@dataclass
class Site:
    gateway: str
    server: TestServer
    chat: RelyingParty  # a confidential client that signs people in
    crm: RelyingParty  # a confidential client with a consent page
    provider: FakeProvider

    def clock_advance(self, seconds: float) -> None:
        self.server.app[AUTHORITY].clock.advance(seconds)


def _client(rp: RelyingParty, **extra: Any) -> dict[str, Any]:
    assert rp.client_secret is not None
    return {
        "client_id": rp.client_id,
        "client_secret": rp.client_secret,
        "redirect_uris": [rp.redirect_uri],
        "post_logout_redirect_uris": [rp.post_logout_uri],
        "scopes": ["openid", "profile", "email", "offline_access"],
        **extra,
    }


@pytest.fixture
async def site(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Site]:
    sock = bound_socket()
    gateway = f"http://localhost:{sock.getsockname()[1]}"
    chat = RelyingParty(gateway, "chat", "chat-secret-0123456789")
    crm = RelyingParty(gateway, "crm", "crm-secret-0123456789")
    provider = FakeProvider(*PROVIDER_CLIENT, callback=f"{gateway}/oauth2/code/fake")
    provider.accounts["alice@fake"] = {"sub": "fake-alice", "email": "alice@fake.test"}
    for started in (chat, crm):
        await started.start()
    await provider.start()
    conf = write_conf(
        tmp_path / "conf",
        gateway={"issuer": gateway},
        clients={"chat": _client(chat), "crm": _client(crm, consent=True)},
    )
    (conf.parent / "oauth2" / "fake.json").write_text(
        json.dumps(
            {
                "web": {
                    "client_id": PROVIDER_CLIENT[0],
                    "client_secret": PROVIDER_CLIENT[1],
                    "auth_uri": f"{provider.issuer}/authorize",
                    "token_uri": f"{provider.issuer}/token",
                    "jwks_uri": f"{provider.issuer}/jwks",
                    "issuers": [provider.issuer],
                }
            }
        )
    )
    holder = ConfigHolder(load_config(conf, environ={}))
    server = GatewayTestServer(
        create_app(holder, database_url=database_url), socket_factory=lambda *_: sock
    )
    await server.start_server()
    try:
        yield Site(gateway, server, chat, crm, provider)
    finally:
        await server.close()
        for rp in (chat, crm):
            await rp.close()
        assert provider.server is not None
        await provider.server.close()


async def test_a_third_party_app_signs_in_through_the_login_page(site: Site, browser: Any) -> None:
    """The chat sends the browser to /oauth2/authorize (code, PKCE S256, state, nonce); the
    person types the password into the built-in page; the browser lands on the chat's
    redirect_uri with a code and the same state; the chat redeems it and the ID token verifies
    against /oauth2/jwks. The login page was served with the real Origin on its POST."""
    page = await (await browser.new_context()).new_page()
    posts: list[dict[str, str]] = []
    page.on("request", lambda r: posts.append(r.headers) if r.method == "POST" else None)
    await page.goto(f"{site.chat.origin}/login")
    assert page.url.startswith(f"{site.gateway}/oauth2/authorize?")
    assert await page.title() == "Sign in"
    assert "Sign in to continue to chat" in await page.inner_text("h1")
    sent = query_of(site.chat.sent[-1])
    assert sent["code_challenge_method"] == "S256"
    assert sent["state"]
    assert sent["nonce"]

    await sign_in_on_the_login_page(page, "alice", ALICE)
    assert page.url.startswith(f"{site.chat.redirect_uri}?")
    assert await page.inner_text("#user") == "alice"
    assert query_of(page.url)["state"] == sent["state"]
    assert query_of(page.url)["iss"] == site.gateway
    (signed,) = site.chat.sign_ins
    assert signed.state == sent["state"]
    assert signed.claims["nonce"] == sent["nonce"]
    assert signed.claims["iss"] == site.gateway
    assert signed.claims["aud"] == "chat"
    assert posts[0]["origin"] == site.gateway  # Referrer-Policy: same-origin keeps it real


async def test_silent_sso_needs_no_page(site: Site, browser: Any) -> None:
    """Signed in once, the same browser comes back from another application with prompt=none:
    a code arrives with no page in between; the CRM (consent) gets consent_required instead."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{site.chat.origin}/login")
    await sign_in_on_the_login_page(page, "alice", ALICE)
    assert await page.inner_text("#user") == "alice"

    documents: list[str] = []
    page.on(
        "response", lambda r: documents.append(r.url) if r.request.is_navigation_request() else None
    )
    await page.goto(f"{site.chat.origin}/login?prompt=none")
    assert await page.inner_text("#user") == "alice"
    assert len(site.chat.sign_ins) == 2
    gateway_pages = [u for u in documents if u.startswith(site.gateway)]
    assert len(gateway_pages) == 1  # the authorization endpoint's redirect, no HTML page
    assert gateway_pages[0].startswith(f"{site.gateway}/oauth2/authorize?")


async def test_a_wrong_password_shows_the_form_again(site: Site, browser: Any) -> None:
    """A wrong password: the same page with a readable message, the user name kept; then the
    right one signs in."""
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{site.chat.origin}/login")
    await sign_in_on_the_login_page(page, "alice", "not-her-password")
    assert page.url == f"{site.gateway}/oauth2/login"
    assert await page.inner_text("[role=alert]") == "The user name or password is wrong."
    assert await page.input_value("#username") == "alice"
    assert await page.input_value("#password") == ""
    await page.fill("#password", ALICE)
    await page.click("form[action='/oauth2/login'] button[type=submit]")
    await page.wait_for_load_state()
    assert await page.inner_text("#user") == "alice"


async def test_consent_deny_then_allow(site: Site, browser: Any, db: asyncpg.Connection) -> None:
    """The CRM asks for consent: Deny ends at its redirect_uri with error=access_denied and the
    state; the next attempt (already signed in: straight to the consent page) Allow gives a
    code, and the consent is remembered."""
    await db.execute("DELETE FROM auth.consent WHERE client_id = 'crm'")
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{site.crm.origin}/login")
    await sign_in_on_the_login_page(page, "bob", USERS["bob"][0])
    assert await page.title() == "Allow access"
    assert "crm asks for access to your account" in await page.inner_text("h1")
    await page.click("button[value=deny]")
    await page.wait_for_load_state()
    assert page.url.startswith(f"{site.crm.redirect_uri}?")
    assert query_of(page.url)["error"] == "access_denied"
    assert site.crm.errors[-1]["state"] == query_of(site.crm.sent[-1])["state"]

    await page.goto(f"{site.crm.origin}/login")
    assert await page.title() == "Allow access"
    await page.click("button[value=allow]")
    await page.wait_for_load_state()
    assert await page.inner_text("#user") == "bob"
    assert await db.fetchval("SELECT count(*) FROM auth.consent WHERE client_id = 'crm'") == 1


async def test_rp_initiated_logout_ends_the_session(site: Site, browser: Any) -> None:
    """Logout with id_token_hint: the confirmation page, one click, the registered
    post_logout_redirect_uri with the state; afterwards prompt=none answers login_required."""
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{site.chat.origin}/login")
    await sign_in_on_the_login_page(page, "alice", ALICE)
    await page.goto(f"{site.chat.origin}/logout")
    assert page.url.startswith(f"{site.gateway}/oauth2/logout?")
    assert await page.title() == "Sign out"
    await page.click("form[action='/oauth2/logout'] button[type=submit]")
    await page.wait_for_load_state()
    assert page.url.startswith(f"{site.chat.post_logout_uri}?")
    assert site.chat.goodbyes == [{"state": "bye-state"}]

    await page.goto(f"{site.chat.origin}/login?prompt=none")
    assert await page.inner_text("#error") == "login_required"


async def test_logout_without_a_redirect_says_signed_out(site: Site, browser: Any) -> None:
    """The gateway's own logout link: confirmation page, then the "signed out" page."""
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{site.chat.origin}/login")
    await sign_in_on_the_login_page(page, "alice", ALICE)
    await page.goto(f"{site.gateway}/oauth2/logout")
    await page.click("form[action='/oauth2/logout'] button[type=submit]")
    await page.wait_for_load_state()
    assert await page.inner_text("main") == "You are signed out."
    await page.goto(f"{site.chat.origin}/login?prompt=none")
    assert await page.inner_text("#error") == "login_required"


async def test_an_external_provider_links_after_the_password(
    site: Site, browser: Any, db: asyncpg.Connection
) -> None:
    """ "Sign in with Fake": the provider's own page, back to the gateway, which asks once for
    the local password to link the provider account, then on to the chat. The next sign-in
    with the provider goes straight through."""
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{site.chat.origin}/login")
    await page.click("button:has-text('Sign in with Fake')")
    await page.wait_for_load_state()
    assert page.url.startswith(f"{site.provider.issuer}/authorize?")
    await page.fill("#account", "alice@fake")
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    assert page.url.startswith(f"{site.gateway}/oauth2/code/fake?")
    notice = await page.inner_text(".notice")
    assert "link your Fake account (fake-alice)" in notice
    await sign_in_on_the_login_page(page, "alice", ALICE)
    assert await page.inner_text("#user") == "alice"
    linked = await db.fetchval(
        "SELECT u.username FROM auth.identity i JOIN auth.users u ON u.id = i.user_id "
        "WHERE i.issuer = $1 AND i.subject = 'fake-alice'",
        site.provider.issuer,
    )
    assert linked == "alice"

    fresh = await (await browser.new_context()).new_page()
    await fresh.goto(f"{site.chat.origin}/login")
    await fresh.click("button:has-text('Sign in with Fake')")
    await fresh.fill("#account", "alice@fake")
    await fresh.click("button[type=submit]")
    await fresh.wait_for_load_state()
    assert await fresh.inner_text("#user") == "alice"
    assert len(site.chat.sign_ins) == 2


async def test_an_expired_page_starts_again(site: Site, browser: Any) -> None:
    """A login page left open past its lifetime: the refused page says it expired and "Start
    again" brings back the login page of the same request, which then signs in."""
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{site.chat.origin}/login")
    site.clock_advance(FLOW_TTL + 1)
    await sign_in_on_the_login_page(page, "alice", ALICE)
    assert await page.title() == "Sign-in interrupted"
    assert "has expired" in await page.inner_text("[role=alert]")
    site.clock_advance(-FLOW_TTL - 1)  # back to the applications' time, for the ID token's iat
    await page.click("#restart")
    await page.wait_for_load_state()
    assert await page.title() == "Sign in"
    await sign_in_on_the_login_page(page, "alice", ALICE)
    assert await page.inner_text("#user") == "alice"
    assert query_of(page.url)["state"] == query_of(site.chat.sent[-1])["state"]


async def test_a_page_without_cookies_says_so_in_russian(site: Site, browser: Any) -> None:
    """A browser that lost the page's cookie (blocked, cleared) gets the refused page in its
    own language, telling it to allow cookies; nothing signs in."""
    context = await browser.new_context(
        locale="ru-RU", extra_http_headers={"Accept-Language": "ru"}
    )
    page = await context.new_page()
    await page.goto(f"{site.chat.origin}/login")
    await context.clear_cookies()
    await sign_in_on_the_login_page(page, "alice", ALICE)
    assert await page.title() == "Вход прерван"
    assert "cookie" in await page.inner_text("[role=alert]")
    assert site.chat.sign_ins == []


async def test_a_bad_request_shows_the_error_page(site: Site, browser: Any) -> None:
    """An authorization request that cannot be trusted (an unregistered redirect_uri) is an
    error page, never a redirect (item 66)."""
    page = await (await browser.new_context()).new_page()
    await page.goto(
        f"{site.gateway}/oauth2/authorize?response_type=code&client_id=chat"
        "&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&state=s"
    )
    assert page.url.startswith(f"{site.gateway}/oauth2/authorize?")
    assert await page.title() == "Sign-in error"
    assert "invalid_request" in await page.inner_text("[role=alert]")
    assert "Go back to the application" in await page.inner_text("main")
