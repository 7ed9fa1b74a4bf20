"""The demo (issue 4 item 9): with the sample configuration a newcomer opens the gateway's root
page, signs in as demo/demo and calls the demo API through the token handler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient

from gateway.config import load_config
from gateway.keys import CONFIG
from tests.http.conftest import hidden_flow
from tests.support import Client, sample_server


@pytest.fixture
async def demo(database_url: str, tmp_path: Path) -> AsyncIterator[Client]:
    """The committed sample configuration as ``serve --port PORT`` runs it."""
    server = sample_server(tmp_path / "conf", database_url)
    await server.start_server()
    assert server.app[CONFIG].current.gateway.demo
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
    client = TestClient(server, cookie_jar=jar)
    await client.start_server()
    yield client
    await client.close()


async def test_the_demo_spa_signs_in_and_calls_the_api(
    demo: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    page = await demo.get("/")
    assert page.status == 200
    html = await page.text()
    assert '<script src="/demo/demo.js"></script>' in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    script = await demo.get("/demo/demo.js")
    assert script.status == 200
    assert 'credentials: "include"' in await script.text()

    assert (await demo.get("/api/whoami")).status == 401
    # The page's origin is the gateway's own address, derived from the port it listens on.
    base = f"http://127.0.0.1:{demo.port}"
    origin = {"Origin": base}
    assert (await demo.get("/login/user", headers=origin)).status == 401
    # "Sign in" is a navigation to /login/start; the login page; back to the SPA.
    start = await demo.get("/login/start", params={"return_to": "/"}, allow_redirects=False)
    assert start.status == 303
    assert start.headers["Location"].startswith(f"{base}/oauth2/authorize?")
    page = await demo.get(start.headers["Location"].removeprefix(base))
    assert page.status == 200
    login = await demo.post(
        "/oauth2/login",
        data={"flow": hidden_flow(await page.text()), "username": "demo", "password": "demo"},
        headers=origin,
        allow_redirects=False,
    )
    assert login.status == 303, await login.text()
    back = await demo.get(login.headers["Location"].removeprefix(base), allow_redirects=False)
    assert back.status == 303
    assert back.headers["Location"] == f"{base}/"
    assert "access_token" not in await back.text()
    user = await demo.get("/login/user", headers=origin)
    assert user.status == 200
    assert (await user.json())["preferred_username"] == "demo"
    whoami = await demo.get("/api/whoami", headers=origin)
    data = await whoami.json()
    assert whoami.status == 200, data
    assert data["user"] == "demo"
    assert data["identity_headers"]["X-User-Name"] == "demo"
    assert data["token"]["client_id"] == "bff"
    # The demo's client has no password grant (the browser never runs a grant).
    refused = await demo.post(
        "/oauth2/token",
        data={"grant_type": "password", "client_id": "bff", "username": "demo", "password": "demo"},
        headers=origin,
    )
    assert refused.status in (400, 401)
    # The gateway's own page is no rejected cross-origin caller.
    assert not [r for r in caplog.records if r.name == "gateway.http.cors"]


async def test_the_demo_api_refuses_calls_without_the_gateway(
    demo: Client,
) -> None:
    direct = await demo.get("/demo-api/whoami", headers={"X-User-Name": "admin"})
    assert direct.status == 401
    forged = await demo.get("/demo-api/whoami", headers={"Authorization": "Bearer x.y.z"})
    assert forged.status == 401


def test_demo_is_off_unless_configured(tmp_path: Path) -> None:
    """Without a ``demo`` key the demo is off (the sample conf turns it on explicitly)."""
    import json

    from tests.support import write_conf

    path = write_conf(tmp_path / "conf")
    settings = json.loads(path.read_text())
    del settings["demo"]
    path.write_text(json.dumps(settings))
    config = load_config(path, environ={})
    assert config.gateway.demo is False
