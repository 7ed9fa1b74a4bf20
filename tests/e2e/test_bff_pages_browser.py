"""The token handler's own pages in Chromium (issue 11; SECURITY-CHECKLIST item 78): what a
person sees when a sign-in through /login/start cannot finish, and that the page's "Start
again" link gets them signed in.

- an old callback link opened from history or a bookmark: no sign-in of this browser is
  waiting for it, the page says so and signs nobody in;
- two tabs signing in at once: the tab that answers with the other tab's state gets the refusal
  page, and the other tab's sign-in still finishes;
- the provider's token endpoint failing when the code comes back: the page says the sign-in did
  not work, and "Start again" succeeds once the provider is back.

The provider is the tests' own (tests/provider.py: a sign-in page with one field, faults on
demand); tests/e2e/test_bff_browser.py runs a real one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from tests.provider import FakeProvider
from tests.support import GatewayTestServer, bound_socket, write_conf

pytestmark = pytest.mark.browser

SECRET = "bff-op-secret-0123456789"
ALICE = {"sub": "op-alice", "preferred_username": "alice.op", "name": "Alice"}
SPA_PAGE = """<!doctype html><title>SPA</title>
<a id="signin" href="{gw}/login/start?return_to={spa}/">Sign in</a><p id="who">...</p>
<script>
fetch("{gw}/login/user", {{credentials: "include"}})
  .then(r => r.ok ? r.json() : {{preferred_username: "signed out"}})
  .then(u => document.getElementById("who").textContent = u.preferred_username);
</script>"""


@dataclass
class Stack:
    gateway: str
    spa: str
    provider: FakeProvider


@pytest.fixture
async def stack(tmp_path: Path, database_url: str) -> AsyncIterator[Stack]:
    gw_sock, spa_sock = bound_socket(), bound_socket()
    gateway_url = f"http://localhost:{gw_sock.getsockname()[1]}"
    spa_url = f"http://localhost:{spa_sock.getsockname()[1]}"
    provider = FakeProvider(
        "bff", SECRET, f"{gateway_url}/login/callback", accounts={"alice": ALICE}
    )
    await provider.start()
    conf = write_conf(
        tmp_path / "conf",
        gateway={"issuer": gateway_url, "login": {"client": "bff", "provider": "op"}},
    )
    op_app = {
        "client_id": "bff",
        "client_secret": SECRET,
        "issuers": [provider.issuer],
        "scopes": ["openid", "profile"],
        "javascript_origins": [spa_url],
    }
    (conf.parent / "oauth2" / "op.json").write_text(json.dumps({"bff": op_app}))
    gateway = GatewayTestServer(
        create_app(ConfigHolder(load_config(conf, environ={})), database_url=database_url),
        host="127.0.0.1",
        socket_factory=lambda *_: gw_sock,
    )
    await gateway.start_server()

    async def page(_request: web.Request) -> web.Response:
        text = SPA_PAGE.format(gw=gateway_url, spa=spa_url)
        return web.Response(text=text, content_type="text/html")

    spa_app = web.Application()
    spa_app.router.add_get("/", page)
    spa = TestServer(spa_app, host="127.0.0.1", socket_factory=lambda *_: spa_sock)
    await spa.start_server()
    try:
        yield Stack(gateway_url, spa_url, provider)
    finally:
        for server in (spa, gateway):
            await server.close()
        assert provider.server is not None
        await provider.server.close()


async def signed_in_as(page: Any, stack: Stack, name: str) -> None:
    await page.wait_for_url(f"{stack.spa}/")
    await page.wait_for_function(f"document.getElementById('who').textContent === '{name}'")


async def session_cookies(context: Any) -> set[str]:
    return {c["name"] for c in await context.cookies()} & {"__Secure-AT", "__Secure-RT", "SID"}


async def test_an_old_callback_link_signs_nobody_in(stack: Stack, browser: Any) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    response = await page.goto(f"{stack.gateway}/login/callback?code=old-code&state=old-state")
    assert response is not None
    assert response.status == 400
    alert = await page.inner_text("[role=alert]")
    assert alert.startswith("This sign-in was started in another browser"), alert
    assert await page.locator("#restart").count() == 0  # nothing here to start again from
    assert "Go back to the application and sign in again." in await page.inner_text("body")
    assert await session_cookies(context) == set()
    await context.close()


async def test_two_tabs_signing_in_at_once(stack: Stack, browser: Any) -> None:
    context = await browser.new_context()
    first, second = await context.new_page(), await context.new_page()
    for tab in (first, second):
        await tab.goto(f"{stack.spa}/")
        await tab.wait_for_function("document.getElementById('who').textContent === 'signed out'")
        await tab.click("#signin")
        await tab.wait_for_selector("#account")

    # The first tab answers with its own state, but this browser now waits for the second's.
    await first.fill("#account", "alice")
    await first.click("button[type=submit]")
    alert = await first.inner_text("[role=alert]")
    assert alert.startswith("This answer is not for the sign-in this browser is waiting for")
    assert await first.locator("#restart").count() == 1
    assert await session_cookies(context) == set()

    # The second tab's sign-in is unharmed by the refused answer.
    await second.fill("#account", "alice")
    await second.click("button[type=submit]")
    await signed_in_as(second, stack, "alice.op")
    assert await session_cookies(context) == {"__Secure-AT", "__Secure-RT", "SID"}
    await context.close()


async def test_a_provider_failing_at_the_callback_then_start_again(
    stack: Stack, browser: Any
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{stack.spa}/")
    await page.click("#signin")
    await page.fill("#account", "alice")
    stack.provider.fail_with = 503  # the code comes back, the token endpoint is down
    await page.click("button[type=submit]")
    alert = await page.inner_text("[role=alert]")
    assert alert.startswith("Signing in did not work:"), alert
    assert "503" in alert
    assert await session_cookies(context) == set()

    stack.provider.fail_with = None
    await page.click("#restart")
    await page.fill("#account", "alice")
    await page.click("button[type=submit]")
    await signed_in_as(page, stack, "alice.op")
    assert await session_cookies(context) == {"__Secure-AT", "__Secure-RT", "SID"}
    await context.close()
