"""A real browser (Debian's Chromium, driven by Playwright) against the token handler.

Three origins on localhost: the gateway, a SPA page (an allowed origin) and a foreign page (not
allowed). The SPA signs in with ``fetch(..., {credentials: 'include'})``, calls the API, cannot
read the tokens, and keeps working across an access-token expiry; the foreign page can neither
read responses nor get a cookie-authenticated POST through; an origin added on disk works within
seconds, without a restart. (Issue 4; SECURITY-CHECKLIST items 83, 85, 88, 89, 93.)
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.clock import Clock
from gateway.config import ConfigHolder, load_config
from gateway.keys import CLOCK, CONFIG
from tests.e2e.conftest import CHROMIUM
from tests.support import GatewayTestServer, bound_socket, gateway_env, write_conf

pytestmark = pytest.mark.browser

PAGE = "<!doctype html><title>{title}</title><p>{title}</p>"


@dataclass
class Stack:
    gateway: str
    spa: str
    foreign: str
    conf: Path
    clock: Clock  # the gateway's: moved instead of waiting for an access token to expire
    upstream_log: list[dict[str, Any]] = field(default_factory=list)


async def _page_server(title: str, sock: socket.socket) -> TestServer:
    app = web.Application()

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE.format(title=title), content_type="text/html")

    app.router.add_get("/", page)
    server = TestServer(app, host="127.0.0.1", socket_factory=lambda *_: sock)
    await server.start_server()
    return server


@pytest.fixture
async def stack(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Stack]:
    gw_sock, spa_sock, foreign_sock = bound_socket(), bound_socket(), bound_socket()
    gw_port, spa_port, foreign_port = (
        s.getsockname()[1] for s in (gw_sock, spa_sock, foreign_sock)
    )
    recorded: list[dict[str, Any]] = []

    async def api(request: web.Request) -> web.Response:
        recorded.append(
            {
                "method": request.method,
                "path": request.path,
                "authorization": request.headers.get("Authorization", ""),
                "user": request.headers.get("X-User-Name"),
                "cookie": request.headers.get("Cookie"),
            }
        )
        return web.json_response({"user": request.headers.get("X-User-Name")})

    upstream_app = web.Application()
    upstream_app.router.add_route("*", "/{tail:.*}", api)
    upstream = TestServer(upstream_app, host="127.0.0.1")
    await upstream.start_server()

    spa_origin = f"http://localhost:{spa_port}"
    conf = write_conf(
        tmp_path / "conf",
        gateway={
            "issuer": f"http://localhost:{gw_port}",
            "tokens": {"access_ttl": 2, "refresh_grace": 30},
            "routes": [
                {
                    "prefix": "/api/",
                    "upstream": str(upstream.make_url("/")).rstrip("/"),
                    "strip_prefix": True,
                    "identity_headers": {"X-User-Name": "preferred_username"},
                }
            ],
        },
        clients={
            "spa": {
                "client_id": "spa",
                "javascript_origins": [spa_origin],
                "redirect_uris": [f"{spa_origin}/cb"],
                "scopes": ["openid", "profile", "offline_access"],
                "grant_types": ["authorization_code", "refresh_token", "password"],
                "token_delivery": "cookies",
            }
        },
    )
    holder = ConfigHolder(load_config(conf))
    gateway = GatewayTestServer(
        create_app(holder, database_url=database_url),
        host="127.0.0.1",
        socket_factory=lambda *_: gw_sock,
    )
    await gateway.start_server()
    spa = await _page_server("spa", spa_sock)
    foreign = await _page_server("foreign", foreign_sock)
    try:
        yield Stack(
            f"http://localhost:{gw_port}",
            spa_origin,
            f"http://localhost:{foreign_port}",
            conf,
            gateway.app[CLOCK],
            recorded,
        )
    finally:
        for server in (foreign, spa, gateway, upstream):
            await server.close()


SIGN_IN = """async (gateway) => {
  const response = await fetch(gateway + "/oauth2/token", {
    method: "POST",
    credentials: "include",
    headers: {"Content-Type": "application/x-www-form-urlencoded"},
    body: new URLSearchParams({grant_type: "password", client_id: "spa", username: "alice",
      password: "Correct-Horse-9", scope: "openid profile offline_access"}),
  });
  return {status: response.status, body: await response.json()};
}"""
CALL = """async (url) => {
  const response = await fetch(url, {credentials: "include"});
  return {status: response.status, body: await response.text()};
}"""
CALL_MANY = """async ([url, count]) => {
  const responses = await Promise.all(
    Array.from({length: count}, () => fetch(url, {credentials: "include"})));
  return responses.map((r) => r.status);
}"""
FOREIGN_READ = """async (url) => {
  try {
    const response = await fetch(url, {credentials: "include"});
    return "read " + response.status + " " + (await response.text());
  } catch (error) {
    return "blocked";
  }
}"""
FOREIGN_POST = """async (url) => {
  await fetch(url, {method: "POST", credentials: "include", mode: "no-cors",
    headers: {"Content-Type": "text/plain"}, body: '{"amount": 1000}'});
  return "sent";
}"""


async def test_spa_in_a_real_browser(stack: Stack, browser: Any) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(stack.spa + "/")

    signed_in = await page.evaluate(SIGN_IN, stack.gateway)
    assert signed_in["status"] == 200, signed_in
    assert "access_token" not in signed_in["body"]
    assert "refresh_token" not in signed_in["body"]

    first = await page.evaluate(CALL, stack.gateway + "/api/whoami")
    assert first["status"] == 200, first
    assert json.loads(first["body"]) == {"user": "alice"}
    assert await page.evaluate("() => document.cookie") == ""
    cookies = {c["name"]: c for c in await context.cookies(stack.gateway)}
    assert {"__Secure-AT", "__Secure-RT", "SID"} <= set(cookies)
    assert all(cookies[name]["httpOnly"] for name in ("__Secure-AT", "__Secure-RT", "SID"))
    assert stack.upstream_log[-1]["authorization"].startswith("Bearer ")
    assert stack.upstream_log[-1]["cookie"] is None
    token_before = stack.upstream_log[-1]["authorization"]

    # Across an access-token expiry: every call succeeds, one refresh serves them all.
    stack.clock.advance(3)
    statuses = await page.evaluate(CALL_MANY, [stack.gateway + "/api/whoami", 20])
    assert statuses == [200] * 20
    after = {entry["authorization"] for entry in stack.upstream_log[-20:]}
    assert len(after) == 1
    assert after != {token_before}
    for _ in range(2):  # and again, with the renewed cookies
        stack.clock.advance(2.5)
        again = await page.evaluate(CALL, stack.gateway + "/api/whoami")
        assert again["status"] == 200, again

    # A foreign origin can neither read responses nor push a cookie-authenticated POST.
    foreign = await context.new_page()
    await foreign.goto(stack.foreign + "/")
    assert await foreign.evaluate(FOREIGN_READ, stack.gateway + "/api/whoami") == "blocked"
    posts_before = sum(1 for e in stack.upstream_log if e["method"] == "POST")
    assert await foreign.evaluate(FOREIGN_POST, stack.gateway + "/api/transfer") == "sent"
    # fetch() resolved: the gateway has answered, so a POST it let through has reached the API.
    assert sum(1 for e in stack.upstream_log if e["method"] == "POST") == posts_before

    # Ops allow the foreign origin on disk; it works within seconds, without a restart.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "origins",
            "add",
            stack.foreign,
            "--client",
            "spa",
            "--config",
            str(stack.conf),
        ],
        capture_output=True,
        text=True,
        env=gateway_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 10
    outcome = ""
    while time.monotonic() < deadline:
        outcome = await foreign.evaluate(FOREIGN_READ, stack.gateway + "/api/whoami")
        if outcome.startswith("read 200"):
            break
        await asyncio.sleep(0.2)  # the configuration watcher polls the files
    assert outcome == 'read 200 {"user": "alice"}'
    await context.close()


def test_chromium_is_installed() -> None:
    """The browser tests need Debian's chromium; scripts/test installs it."""
    assert shutil.which("chromium") or CHROMIUM.exists()


async def test_the_demo_page_in_a_browser(tmp_path: Path, database_url: str, browser: Any) -> None:
    """Issues 8 and 11: the sample configuration as ``./scripts/serve --port P`` runs it, opened
    at the address the log prints. The demo SPA signs in the way browser apps should: a "Sign
    in" link to /login/start, the built-in login page (a wrong password first), back to the
    SPA, which asks /login/user who is signed in, calls the API through the token handler,
    keeps working across an access-token expiry, and signs out. The page never sees a cookie,
    and the first "not signed in" probe is no red failure."""
    from tests.support import sample_server

    gateway = sample_server(tmp_path / "conf", database_url)
    await gateway.start_server()
    try:
        assert gateway.app is not None
        clock = gateway.app[CLOCK]
        page = await (await browser.new_context()).new_page()
        issuer = gateway.app[CONFIG].current.gateway.public_issuer()
        assert issuer == f"http://127.0.0.1:{gateway.port}"  # derived from the port
        await page.goto(f"{issuer}/")
        await page.wait_for_selector("#signed-out:not([hidden])")
        probe = page.locator("#log tr").first
        assert await probe.get_attribute("class") == "info"
        assert "not signed in" in await probe.inner_text()
        assert await page.is_hidden("#message")

        await page.click("#signin")
        await page.wait_for_selector("form[action='/oauth2/login']")
        assert page.url.startswith(f"{issuer}/oauth2/authorize?")
        await page.fill("#username", "demo")
        await page.fill("#password", "wrong")
        await page.click("form[action='/oauth2/login'] button[type=submit]")
        assert await page.inner_text("[role=alert]") == "The user name or password is wrong."
        await page.fill("#password", "demo")
        await page.click("form[action='/oauth2/login'] button[type=submit]")
        await page.wait_for_selector("#signed-in:not([hidden])")
        assert page.url == f"{issuer}/"
        assert await page.inner_text("#who") == "demo"
        assert "Demo User" in await page.inner_text("#session")
        assert await page.is_hidden("#message")

        await page.click("#call")
        first = page.locator("#log tr.ok", has_text="/api/whoami").first
        await first.wait_for()
        token_before = (await first.locator("td").nth(3).inner_text()).strip()
        assert token_before
        clock.advance(61)  # the demo client's access tokens live 60 s
        await page.click("#call")
        await page.locator("#log tr.ok", has_text="/api/whoami").nth(1).wait_for()
        newest = page.locator("#log tr", has_text="/api/whoami").first
        assert await newest.get_attribute("class") == "ok"
        token_after = (await newest.locator("td").nth(3).inner_text()).strip()
        assert token_after
        assert token_after != token_before
        assert await page.evaluate("() => document.cookie") == ""

        await page.click("#logout")
        await page.wait_for_selector("#signed-out:not([hidden])")
        await page.reload()
        await page.wait_for_selector("#signed-out:not([hidden])")

        # An authorization server's refusal comes back as login_error, said in words.
        await page.goto(f"{issuer}/?login_error=access_denied")
        await page.wait_for_selector("#message:not([hidden])")
        assert await page.inner_text("#message") == "Signing in did not finish: access denied."
    finally:
        await gateway.close()
