"""A rate-limited route in Chromium: a SPA on an allowed origin signs in, calls the route until
the gateway answers 429, and can read that answer (CORS headers on it): the status, the JSON body
and the exposed ``Retry-After``. A page on a foreign origin cannot read it. (README, "Rate
limits"; draft-ietf-oauth-browser-based-apps section 6.1.3.3.2; SECURITY-CHECKLIST item 137:
429 with ``Retry-After``.)"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from tests.support import USERS, GatewayTestServer, bound_socket, write_conf

pytestmark = pytest.mark.browser

PAGE = "<!doctype html><title>{title}</title><p>{title}</p>"
SIGN_IN = """async ([gateway, password]) => {
  const response = await fetch(gateway + "/oauth2/token", {
    method: "POST",
    credentials: "include",
    headers: {"Content-Type": "application/x-www-form-urlencoded"},
    body: new URLSearchParams({grant_type: "password", client_id: "spa", username: "alice",
      password, scope: "openid profile offline_access"}),
  });
  return response.status;
}"""
CALL_UNTIL_LIMITED = """async (url) => {
  const seen = [];
  for (let i = 0; i < 10; i++) {
    const response = await fetch(url, {credentials: "include"});
    seen.push({status: response.status, retryAfter: response.headers.get("Retry-After"),
      body: await response.text()});
    if (response.status === 429) break;
  }
  return seen;
}"""
FOREIGN_READ = """async (url) => {
  try {
    const response = await fetch(url, {credentials: "include"});
    return "read " + response.status;
  } catch (error) {
    return "blocked";
  }
}"""


@dataclass
class Stack:
    gateway: str
    spa: str
    foreign: str


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

    async def api(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    upstream_app = web.Application()
    upstream_app.router.add_route("*", "/{tail:.*}", api)
    upstream = TestServer(upstream_app, host="127.0.0.1")
    await upstream.start_server()

    spa_origin = f"http://localhost:{spa_port}"
    conf = write_conf(
        tmp_path / "conf",
        gateway={
            "issuer": f"http://localhost:{gw_port}",
            "routes": [
                {
                    "prefix": "/api/",
                    "upstream": str(upstream.make_url("/")).rstrip("/"),
                    "rate_limit": {"rate": 0.01, "burst": 3},
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
    gateway = GatewayTestServer(
        create_app(ConfigHolder(load_config(conf, environ={})), database_url=database_url),
        host="127.0.0.1",
        socket_factory=lambda *_: gw_sock,
    )
    await gateway.start_server()
    spa = await _page_server("spa", spa_sock)
    foreign = await _page_server("foreign", foreign_sock)
    try:
        yield Stack(f"http://localhost:{gw_port}", spa_origin, f"http://localhost:{foreign_port}")
    finally:
        for server in (foreign, spa, gateway, upstream):
            await server.close()


async def test_a_spa_reads_the_429_of_a_rate_limited_route(stack: Stack, browser: Any) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(stack.spa + "/")
    assert await page.evaluate(SIGN_IN, [stack.gateway, USERS["alice"][0]]) == 200

    seen = await page.evaluate(CALL_UNTIL_LIMITED, stack.gateway + "/api/orders")
    assert [entry["status"] for entry in seen] == [200, 200, 200, 429], seen
    limited = seen[-1]
    assert limited["retryAfter"] == "100"  # 0.01 a second: one request every 100 s
    assert '"error": "too_many_requests"' in limited["body"]

    foreign = await context.new_page()
    await foreign.goto(stack.foreign + "/")
    assert await foreign.evaluate(FOREIGN_READ, stack.gateway + "/api/orders") == "blocked"
    await context.close()
