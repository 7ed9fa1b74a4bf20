"""A themed login page in a real browser (Debian's Chromium, driven by Playwright), used only by
a person's actions: a team chat sends the browser to the gateway, whose ``theme_dir`` replaces
the login page with a company's own (its markup, its inline styles, its words in English and
Russian); the person mistypes the password, reads the theme's alert, types it again and lands
back in the chat signed in (issue 12 part 7). The page's headers still forbid framing and
scripts (SECURITY-CHECKLIST item 14), and the theme's inline style applies under that policy.
The configuration is a copy in a temporary directory, never the working tree's conf/.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from tests.e2e.relying_party import RelyingParty, query_of
from tests.support import USERS, GatewayTestServer, bound_socket, write_conf

pytestmark = pytest.mark.browser

ALICE = USERS["alice"][0]
LOGIN = """{% extends "pages/base.html" %}
{% from "pages/forms.html" import hidden_fields %}
{% block style %}{{ super() }}
#brand{color:rgb(200, 30, 90);font-weight:700;letter-spacing:.1em}
{% endblock %}
{% block content %}
<header id="brand">ACME</header>
<h1>{{ t.acme_heading.format(client=client_name) }}</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="{{ action }}" id="acme-login">{{ hidden_fields(hidden) }}
<label for="username">{{ t.acme_who }}</label>
<input type="text" id="username" name="username" value="{{ username }}" required>
<label for="password">{{ t.password }}</label>
<input type="password" id="password" name="password" required>
<button type="submit" id="enter">{{ t.acme_enter }}</button>
</form>
{% endblock %}
"""
MESSAGES = {
    "en": {
        "acme_heading": "ACME staff sign-in for {client}",
        "acme_who": "Staff id",
        "acme_enter": "Enter",
    },
    "ru": {
        "acme_heading": "Вход сотрудников ACME в {client}",
        "acme_who": "Табельный номер",
        "acme_enter": "Войти",
    },
}


@dataclass
class Site:
    gateway: str
    server: GatewayTestServer
    chat: RelyingParty


@pytest.fixture
async def site(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Site]:
    sock = bound_socket()
    gateway = f"http://localhost:{sock.getsockname()[1]}"
    chat = RelyingParty(gateway, "chat", "chat-secret-0123456789")
    await chat.start()
    assert chat.client_secret is not None
    conf = write_conf(
        tmp_path / "conf",
        gateway={"issuer": gateway, "theme_dir": "acme-theme"},
        clients={
            "chat": {
                "client_id": chat.client_id,
                "client_secret": chat.client_secret,
                "redirect_uris": [chat.redirect_uri],
                "scopes": ["openid", "profile", "email"],
            }
        },
    )
    theme = tmp_path / "conf" / "acme-theme"
    (theme / "pages").mkdir(parents=True)
    (theme / "pages" / "login.html").write_text(LOGIN, encoding="utf-8")
    (theme / "messages").mkdir()
    for lang, texts in MESSAGES.items():
        (theme / "messages" / f"{lang}.json").write_text(json.dumps(texts), encoding="utf-8")
    holder = ConfigHolder(load_config(conf, environ={}))
    server = GatewayTestServer(
        create_app(holder, database_url=database_url), socket_factory=lambda *_: sock
    )
    await server.start_server()
    try:
        yield Site(gateway, server, chat)
    finally:
        await server.close()
        await chat.close()


async def test_a_person_signs_in_through_the_themed_login_page(site: Site, browser: Any) -> None:
    page = await (await browser.new_context()).new_page()
    responses: list[Any] = []
    page.on("response", lambda r: responses.append(r) if "/oauth2/authorize" in r.url else None)
    await page.goto(f"{site.chat.origin}/login")
    assert page.url.startswith(f"{site.gateway}/oauth2/authorize?")
    assert await page.inner_text("#brand") == "ACME"
    assert await page.inner_text("h1") == "ACME staff sign-in for chat"
    assert await page.inner_text("label[for=username]") == "Staff id"
    # The theme's inline style applies (style-src 'unsafe-inline'), scripts stay forbidden.
    color = await page.evaluate("() => getComputedStyle(document.querySelector('#brand')).color")
    assert color == "rgb(200, 30, 90)"
    headers = await responses[-1].all_headers()
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"

    await page.fill("#username", "alice")
    await page.fill("#password", "not-her-password")
    await page.click("#enter")
    await page.wait_for_load_state()
    assert await page.inner_text("[role=alert]") == "The user name or password is wrong."
    assert await page.inner_text("#brand") == "ACME"  # still the theme's page
    assert await page.input_value("#username") == "alice"

    await page.fill("#password", ALICE)
    await page.click("#enter")
    await page.wait_for_load_state()
    assert page.url.startswith(f"{site.chat.redirect_uri}?")
    assert await page.inner_text("#user") == "alice"
    (signed,) = site.chat.sign_ins
    assert query_of(page.url)["state"] == signed.state
    assert signed.claims["iss"] == site.gateway


async def test_the_themed_page_in_russian(site: Site, browser: Any) -> None:
    context = await browser.new_context(locale="ru-RU")
    page = await context.new_page()
    await page.goto(f"{site.chat.origin}/login")
    assert await page.get_attribute("html", "lang") == "ru"
    assert await page.inner_text("h1") == "Вход сотрудников ACME в chat"
    assert await page.inner_text("label[for=password]") == "Пароль"  # a built-in text
    await page.fill("#username", "alice")
    await page.fill("#password", ALICE)
    await page.click("#enter")
    await page.wait_for_load_state()
    assert await page.inner_text("#user") == "alice"
