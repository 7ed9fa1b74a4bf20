"""A site's OAuth pages in a real browser (Debian's Chromium, driven by Playwright), used only by
a person's actions (fill, click, follow redirects).

The gateway at ``http://localhost:<port>`` and ``http://127.0.0.1:<port>``: the site ``brand``
serves the host ``localhost`` with the built-in identifier step and its own callback and error
pages (on its front end, another origin); the site ``plain`` serves ``127.0.0.1`` with none of
them, so the built-in pages answer there. A third-party application (``relying_party.py``,
authlib, a public client: code flow with PKCE S256) signs people in. SECURITY-CHECKLIST items
66 (no open redirect) and 137-140 (the password step's one message) as a browser meets them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from tests.e2e.relying_party import RelyingParty, query_of
from tests.support import USERS, GatewayTestServer, bound_socket, write_conf

pytestmark = pytest.mark.browser

ALICE, BOB = USERS["alice"][0], USERS["bob"][0]


@dataclass
class Stack:
    gateway: str  # the brand site's host
    plain: str  # the same gateway under the plain site's host
    front: str  # the brand site's own front end (its callback and error pages)
    chat: RelyingParty


async def _front_page(request: web.Request) -> web.Response:
    body = f'<!doctype html><title>{escape(request.path)}</title><p id="path">{request.path}</p>'
    return web.Response(text=body, content_type="text/html")


@pytest.fixture
async def stack(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Stack]:
    sock = bound_socket()
    port = sock.getsockname()[1]
    gateway, plain = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    front_app = web.Application()
    front_app.router.add_get("/app/{page}", _front_page)
    front = TestServer(front_app, host="127.0.0.1")
    await front.start_server()
    front_origin = str(front.make_url("")).rstrip("/")
    chat = RelyingParty(gateway, "chat", None)
    await chat.start()
    conf = write_conf(
        tmp_path / "conf",
        gateway={"issuer": gateway},
        clients={
            "chat": {
                "client_id": "chat",
                "redirect_uris": [chat.redirect_uri],
                "scopes": ["openid", "profile", "email"],
            },
            # A developer's client that tests with redirect_uri=<issuer>/oauth2/callback.
            "dev": {
                "client_id": "dev",
                "client_secret": "dev-secret-0123456789",
                "redirect_uris": [f"{gateway}/oauth2/callback", f"{plain}/oauth2/callback"],
                "scopes": ["openid", "profile"],
                "grant_types": ["authorization_code", "implicit"],
                "pkce": "optional",
            },
        },
        sites={
            "brand": {
                "hosts": ["localhost"],
                "oauth2": {
                    "identifier": "/oauth2/identifier",
                    "callback": f"{front_origin}/app/callback",
                    "error": f"{front_origin}/app/error",
                },
            },
            "plain": {"hosts": ["127.0.0.1"]},
        },
    )
    holder = ConfigHolder(load_config(conf, environ={}))
    server = GatewayTestServer(
        create_app(holder, database_url=database_url), socket_factory=lambda *_: sock
    )
    await server.start_server()
    try:
        yield Stack(gateway, plain, front_origin, chat)
    finally:
        await server.close()
        await chat.close()
        await front.close()


async def new_page(browser: Any) -> Any:
    return await (await browser.new_context()).new_page()


async def give_name(page: Any, name: str) -> None:
    await page.fill("#username", name)
    await page.click("form[action='/oauth2/identifier'] button[type=submit]")
    await page.wait_for_load_state()


async def give_password(page: Any, password: str) -> None:
    await page.fill("#password", password)
    await page.click("form[action='/oauth2/login'] button[type=submit]")
    await page.wait_for_load_state()


async def test_identifier_then_password_then_back_at_the_client(stack: Stack, browser: Any) -> None:
    """The application's sign-in on the brand host: the identifier step, the password step with
    the name read-only, and back at the application signed in (its code redeemed with its PKCE
    verifier)."""
    page = await new_page(browser)
    await page.goto(f"{stack.chat.origin}/login")
    assert page.url.startswith(f"{stack.gateway}/oauth2/identifier?")
    assert await page.locator("#password").count() == 0
    await give_name(page, "alice")
    assert page.url == f"{stack.gateway}/oauth2/identifier"
    assert await page.input_value("#username") == "alice"
    assert await page.get_attribute("#username", "readonly") is not None
    await give_password(page, ALICE)
    assert page.url.startswith(f"{stack.chat.redirect_uri}?")
    assert await page.inner_text("#user") == "alice"
    sent = query_of(stack.chat.sent[-1])
    assert sent["code_challenge_method"] == "S256"
    assert len(stack.chat.sign_ins) == 1


async def test_a_wrong_password_then_not_you(stack: Stack, browser: Any) -> None:
    """A wrong password after the identifier step: the usual message on the same step; "Not
    you?" goes back to an empty identifier step, and someone else signs in."""
    page = await new_page(browser)
    await page.goto(f"{stack.chat.origin}/login?login_hint=alice")
    assert await page.input_value("#username") == "alice"
    await give_name(page, "alice")
    await give_password(page, "not-her-password")
    assert page.url == f"{stack.gateway}/oauth2/login"
    assert await page.inner_text("[role=alert]") == "The user name or password is wrong."
    assert await page.input_value("#username") == "alice"
    assert await page.get_attribute("#username", "readonly") is not None
    await page.click("#not-you")
    await page.wait_for_load_state()
    assert page.url.startswith(f"{stack.gateway}/oauth2/identifier?")
    assert "login_hint" not in page.url
    assert await page.input_value("#username") == ""
    await give_name(page, "bob")
    await give_password(page, BOB)
    assert await page.inner_text("#user") == "bob"


async def test_an_untrusted_request_ends_at_the_sites_error_page(
    stack: Stack, browser: Any
) -> None:
    """An unknown client on the brand host: the browser lands on the site's error page with the
    reference's query, not on the redirect URI the request named; on the plain host the
    built-in error page says what is wrong."""
    request = urlencode(
        {
            "client_id": "nobody",
            "redirect_uri": "https://evil.example/cb",
            "response_type": "code",
            "state": "s",
        }
    )
    page = await new_page(browser)
    await page.goto(f"{stack.gateway}/oauth2/authorize?{request}")
    parts = urlsplit(page.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{stack.front}/app/error"
    query = dict(parse_qsl(parts.query))
    assert query["code"] == "400"
    assert query["error"] == "invalid_client"
    assert query["error_description"]
    assert await page.inner_text("#path") == "/app/error"

    await page.goto(f"{stack.plain}/oauth2/authorize?{request}")
    assert page.url.startswith(f"{stack.plain}/oauth2/authorize?")
    assert "invalid_client" in await page.inner_text("[role=alert]")


async def test_callback_with_the_sites_page_keeps_query_and_fragment(
    stack: Stack, browser: Any
) -> None:
    """The developer's client with redirect_uri=<issuer>/oauth2/callback on the brand host: the
    code (after the identifier and password steps) reaches the site's callback page in the
    query; an implicit answer's token stays in the fragment, which the browser carries over."""
    page = await new_page(browser)
    code_request = {
        "client_id": "dev",
        "redirect_uri": f"{stack.gateway}/oauth2/callback",
        "response_type": "code",
        "scope": "openid",
        "state": "dev-state",
        "nonce": "n",
    }
    await page.goto(f"{stack.gateway}/oauth2/authorize?{urlencode(code_request)}")
    await give_name(page, "alice")
    await give_password(page, ALICE)
    parts = urlsplit(page.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{stack.front}/app/callback"
    query = dict(parse_qsl(parts.query))
    assert query["state"] == "dev-state"
    assert query["iss"] == stack.gateway
    assert query["code"]

    token_request = {**code_request, "response_type": "token", "state": "implicit-state"}
    await page.goto(f"{stack.gateway}/oauth2/authorize?{urlencode(token_request)}")
    parts = urlsplit(page.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{stack.front}/app/callback"
    fragment = dict(parse_qsl(parts.fragment))
    assert fragment["state"] == "implicit-state"
    assert fragment["access_token"]
    assert "access_token" not in parts.query


async def test_callback_without_a_site_page_shows_the_code(stack: Stack, browser: Any) -> None:
    """On the plain host the same client ends at the gateway's built-in callback page, which
    shows the code and state it received."""
    page = await new_page(browser)
    request = {
        "client_id": "dev",
        "redirect_uri": f"{stack.plain}/oauth2/callback",
        "response_type": "code",
        "scope": "openid",
        "state": "plain-state",
        "nonce": "n",
    }
    await page.goto(f"{stack.plain}/oauth2/authorize?{urlencode(request)}")
    assert await page.locator("#password").count() == 1  # the single login form here
    await page.fill("#username", "alice")
    await give_password(page, ALICE)
    assert page.url.startswith(f"{stack.plain}/oauth2/callback?")
    rows = {
        await row.locator("th").inner_text(): await row.locator("td").inner_text()
        for row in await page.locator("#callback-params tr").all()
    }
    assert rows["state"] == "plain-state"
    assert rows["code"] == query_of(page.url)["code"]
    assert rows["iss"] == stack.gateway
