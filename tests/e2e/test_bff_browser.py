"""The token handler in front of a real OpenID provider that nobody here wrote (panva's
oidc-provider, certified, run with Node.js on 127.0.0.1), driven by Chromium with a person's
clicks only (issue 11): a SPA on its own origin links to /login/start, the person signs in and
consents on the provider's own pages, lands back on the SPA signed in, calls an API through the
token handler (which forwards the provider's access token), keeps working across an access-token
expiry (a refresh at the provider) and signs out. Once with the provider's opaque access tokens,
once with JWT ones (verified against its keys)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.clock import Clock
from gateway.config import ConfigHolder, load_config
from gateway.keys import CLOCK
from tests.external_op import oidc_provider
from tests.support import GatewayTestServer, bound_socket, write_conf

pytestmark = pytest.mark.browser

SECRET = "bff-secret-at-the-provider-0123456789"
SPA_PAGE = """<!doctype html><title>SPA</title>
<a id="signin" href="{gw}/login/start?return_to={spa}/">Sign in</a>
<p id="who">...</p><button id="call">Call the API</button><p id="result"></p>
<button id="logout">Sign out</button>
<script>
const gw = "{gw}";
async function me() {{
  const r = await fetch(gw + "/login/user", {{credentials: "include"}});
  const who = r.ok ? (await r.json()).preferred_username : "signed out";
  document.getElementById("who").textContent = who;
}}
document.getElementById("call").onclick = async () => {{
  const r = await fetch(gw + "/api/whoami", {{credentials: "include"}});
  document.getElementById("result").textContent = r.status + " " + (await r.text());
}};
document.getElementById("logout").onclick = async () => {{
  await fetch(gw + "/oauth2/logout", {{method: "POST", credentials: "include"}});
  await me();
}};
me();
</script>"""


@dataclass
class Stack:
    gateway: str
    spa: str
    clock: Clock
    jwt_access_tokens: bool
    upstream_log: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(params=[False, True], ids=["opaque-tokens", "jwt-tokens"])
def provider(request: pytest.FixtureRequest) -> Iterator[tuple[str, socket.socket, bool]]:
    gw_sock = bound_socket()
    callback = f"http://localhost:{gw_sock.getsockname()[1]}/login/callback"
    jwt_access_tokens: bool = request.param
    with oidc_provider(
        client_id="bff",
        client_secret=SECRET,
        redirect_uri=callback,
        jwt_access_tokens=jwt_access_tokens,
    ) as issuer:
        yield issuer, gw_sock, jwt_access_tokens


@pytest.fixture
async def stack(
    tmp_path: Path, database_url: str, provider: tuple[str, socket.socket, bool]
) -> AsyncIterator[Stack]:
    issuer, gw_sock, jwt_access_tokens = provider
    spa_sock = bound_socket()
    gateway_url = f"http://localhost:{gw_sock.getsockname()[1]}"
    spa_url = f"http://localhost:{spa_sock.getsockname()[1]}"
    recorded: list[dict[str, Any]] = []

    async def api(request: web.Request) -> web.Response:
        recorded.append(
            {
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

    conf = write_conf(
        tmp_path / "conf",
        gateway={
            "issuer": gateway_url,
            "login": {"client": "bff", "provider": "op"},
            "routes": [
                {
                    "prefix": "/api/",
                    "upstream": str(upstream.make_url("/")).rstrip("/"),
                    "identity_headers": {"X-User-Name": "preferred_username"},
                }
            ],
        },
    )
    op_app = {
        "client_id": "bff",
        "client_secret": SECRET,
        "issuers": [issuer],
        "scopes": ["openid", "profile", "email", "offline_access"],
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
        return web.Response(
            text=SPA_PAGE.format(gw=gateway_url, spa=spa_url), content_type="text/html"
        )

    spa_app = web.Application()
    spa_app.router.add_get("/", page)
    spa = TestServer(spa_app, host="127.0.0.1", socket_factory=lambda *_: spa_sock)
    await spa.start_server()
    try:
        assert gateway.app is not None
        yield Stack(gateway_url, spa_url, gateway.app[CLOCK], jwt_access_tokens, recorded)
    finally:
        for server in (spa, gateway, upstream):
            await server.close()


async def test_a_spa_signs_in_at_a_real_provider_through_the_token_handler(
    stack: Stack, browser: Any
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{stack.spa}/")
    await page.wait_for_function("document.getElementById('who').textContent === 'signed out'")

    # The provider's own pages: its sign-in form, then its consent (offline access).
    await page.click("#signin")
    await page.wait_for_selector("input[name=login]")
    await page.fill("input[name=login]", "alice")
    await page.fill("input[name=password]", "any-password")
    await page.click("button[type=submit]")
    await page.wait_for_selector("button[type=submit]:has-text('Continue')")
    await page.click("button[type=submit]:has-text('Continue')")
    await page.wait_for_url(f"{stack.spa}/")
    await page.wait_for_function("document.getElementById('who').textContent === 'alice'")

    await page.click("#call")
    await page.wait_for_function("document.getElementById('result').textContent.startsWith('200')")
    first = stack.upstream_log[-1]
    assert first["user"] == "alice"
    assert first["cookie"] is None
    assert first["authorization"].startswith("Bearer ")
    token = first["authorization"].removeprefix("Bearer ")
    assert (token.count(".") == 2) is stack.jwt_access_tokens  # the provider's own token
    assert await page.evaluate("() => document.cookie") == ""

    # The provider's access token expires (it lives 600 s): the token handler refreshes it at
    # the provider and the call succeeds with a new one.
    stack.clock.advance(601)
    await page.evaluate("document.getElementById('result').textContent = ''")
    await page.click("#call")
    await page.wait_for_function("document.getElementById('result').textContent.startsWith('200')")
    assert stack.upstream_log[-1]["authorization"] != first["authorization"]
    assert stack.upstream_log[-1]["user"] == "alice"

    await page.click("#logout")
    await page.wait_for_function("document.getElementById('who').textContent === 'signed out'")
    await page.evaluate("document.getElementById('result').textContent = ''")
    await page.click("#call")
    await page.wait_for_function("document.getElementById('result').textContent.startsWith('401')")
    await context.close()
