"""The "temporarily unavailable" page in Chromium (issue 8: every HTML page is opened by a real
browser): a person submits the login form while the database hangs (a private PostgreSQL,
SIGSTOPped), reads a 503 page in words that says nothing was lost, and signs in once the
database is back by sending the same form again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from tests.faults import PrivatePostgres, private_postgres
from tests.http.conftest import C
from tests.http.proxy_support import APP, write_proxy_conf
from tests.support import USERS, GatewayTestServer, bound_socket

pytestmark = pytest.mark.browser

DATABASE = {"pool_min": 1, "pool_max": 5, "connect_timeout": 2, "request_timeout": 1.0}


@pytest.fixture
def private(tmp_path: Path) -> Iterator[PrivatePostgres]:
    with private_postgres(tmp_path / "private") as server:
        yield server


@pytest.fixture
async def outage(
    tmp_path: Path, private: PrivatePostgres
) -> AsyncIterator[tuple[str, PrivatePostgres]]:
    """The gateway on a port known beforehand, so that its issuer is the address the browser
    uses (the login form accepts posts from its own origin)."""
    sock = bound_socket()
    origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
    conf = write_proxy_conf(tmp_path / "conf", [], issuer=origin, database=DATABASE)
    app = create_app(ConfigHolder(load_config(conf, environ={})), database_url=private.dsn)
    server = GatewayTestServer(app, host="127.0.0.1", socket_factory=lambda *_: sock)
    await server.start_server()
    try:
        yield origin, private
    finally:
        await server.close()


async def test_the_unavailable_page_in_a_browser(
    outage: tuple[str, PrivatePostgres], browser: Any
) -> None:
    origin, private = outage
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": "spa",
            "redirect_uri": f"{APP}/cb",
            "scope": "openid",
            "state": "s-outage",
            "code_challenge": C,
            "code_challenge_method": "S256",
        }
    )
    await page.goto(f"{origin}/oauth2/authorize?{query}")
    await page.fill("#username", "alice")
    await page.fill("#password", USERS["alice"][0])
    private.stall()
    try:
        async with page.expect_response(lambda r: r.url.endswith("/oauth2/login")) as answer:
            await page.click("form[action='/oauth2/login'] button[type=submit]")
        response = await answer.value
        assert response.status == 503, await page.content()
        assert response.headers["retry-after"] == "5"
        await page.wait_for_load_state()
        assert await page.title() == "Temporarily unavailable"
        assert "Nothing was lost" in await page.inner_text("[role=alert]")
    finally:
        private.resume()
    # Back to the form, the same submission once the database answers: signed in (the browser
    # goes on to the app's redirect URI, which does not exist here; the gateway's answer counts).
    await page.go_back()
    await page.fill("#password", USERS["alice"][0])
    async with page.expect_response(lambda r: r.url.endswith("/oauth2/login")) as again:
        await page.click("form[action='/oauth2/login'] button[type=submit]")
    signed_in = await again.value
    assert signed_in.status == 303
    assert signed_in.headers["location"].startswith(f"{APP}/cb?code=")
    await context.close()
