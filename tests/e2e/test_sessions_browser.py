"""The account page of sessions in a real browser (Debian's Chromium through Playwright; issue
14 item 3): two browser contexts are two sessions of one person; the second sees both, its own
marked, ends the first, and the first is signed out at its next request; "end all other
sessions" ends a third and keeps the second. SECURITY-CHECKLIST items 15 (the forms are sealed
for this browser and session), 86/87 (ending is server-side: the revocation reaches the tokens).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from tests.e2e.relying_party import RelyingParty, sign_in_on_the_login_page
from tests.support import USERS, GatewayTestServer, bound_socket, write_conf

pytestmark = pytest.mark.browser
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)


@pytest.fixture
async def site(
    tmp_path: Path, database_url: str, users: dict[str, str]
) -> AsyncIterator[tuple[str, RelyingParty]]:
    conn = await asyncpg.connect(database_url)
    try:
        # Sessions end only through daemon.session_revoke, in tests too.
        await conn.execute(
            "SELECT daemon.session_revoke(id, 'test') FROM auth.session WHERE revoked_at IS NULL"
        )
    finally:
        await conn.close()
    sock = bound_socket()
    gateway = f"http://localhost:{sock.getsockname()[1]}"
    chat = RelyingParty(gateway, "chat", "chat-secret-0123456789")
    await chat.start()
    conf = write_conf(
        tmp_path / "conf",
        gateway={"issuer": gateway},
        clients={
            "chat": {
                "client_id": "chat",
                "client_secret": chat.client_secret,
                "redirect_uris": [chat.redirect_uri],
                "scopes": ["openid", "profile", "email", "offline_access"],
            }
        },
    )
    holder = ConfigHolder(load_config(conf, environ={}))
    server = GatewayTestServer(
        create_app(holder, database_url=database_url), socket_factory=lambda *_: sock
    )
    await server.start_server()
    try:
        yield gateway, chat
    finally:
        await server.close()
        await chat.close()


async def signed_in(browser: Any, chat: RelyingParty, user_agent: str) -> Any:
    """A new browser context (its own cookies: a session of its own), signed in as alice."""
    page = await (await browser.new_context(user_agent=user_agent)).new_page()
    await page.goto(f"{chat.origin}/login")
    await sign_in_on_the_login_page(page, "alice", USERS["alice"][0])
    assert page.url.startswith(f"{chat.redirect_uri}?")
    return page


async def rows(page: Any) -> list[dict[str, str]]:
    found = []
    for row in await page.query_selector_all("#sessions tbody tr"):
        cells = [await c.inner_text() for c in await row.query_selector_all("td")]
        found.append({"id": await row.get_attribute("data-session") or "",
                      "current": await row.get_attribute("class") or "", "client": cells[0],
                      "device": cells[1], "address": cells[2]})  # fmt: skip
    return found


async def test_a_person_sees_their_sessions_and_ends_one_then_all_others(
    site: tuple[str, RelyingParty], browser: Any
) -> None:
    gateway, chat = site
    sessions_url = f"{gateway}/oauth2/account/sessions"
    first = await signed_in(browser, chat, FIREFOX)
    second = await signed_in(browser, chat, IPHONE)

    await second.goto(sessions_url)
    assert await second.title() == "Your sessions"
    seen = await rows(second)
    assert len(seen) == 2
    mine = [r for r in seen if r["current"] == "current"]
    other = [r for r in seen if r["current"] != "current"]
    assert len(mine) == 1
    assert len(other) == 1
    assert "this browser" in mine[0]["client"]
    assert mine[0]["device"] == "Mobile Safari 17 on iOS (iPhone)"
    assert other[0]["device"] == "Firefox 133 on Linux"
    assert other[0]["client"].startswith("chat")
    assert other[0]["address"] == "127.0.0.1"

    # The second ends the first; the first's next request finds it signed out.
    await second.click(f"tr[data-session='{other[0]['id']}'] button[value=end]")
    await second.wait_for_load_state()
    assert second.url == sessions_url
    assert [r["id"] for r in await rows(second)] == [mine[0]["id"]]
    response = await first.goto(sessions_url)
    assert response.status == 401
    assert "You are not signed in" in await first.inner_text("body")

    # A third session, then "end all other sessions" from the second.
    third = await signed_in(browser, chat, FIREFOX)
    await second.reload()
    assert len(await rows(second)) == 2
    await second.click("button[value=end_others]")
    await second.wait_for_load_state()
    assert [r["id"] for r in await rows(second)] == [mine[0]["id"]]
    assert (await third.goto(sessions_url)).status == 401

    # The Russian page, then "end all": this browser too.
    await second.set_extra_http_headers({"Accept-Language": "ru"})
    await second.reload()
    assert await second.title() == "Ваши сеансы"
    await second.click("button[value=end_all]")
    await second.wait_for_load_state()
    assert (await second.goto(sessions_url)).status == 401
