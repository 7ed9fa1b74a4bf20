"""Themes through real HTTP (issue 12 part 7): a ``theme_dir`` that overrides the login page is
what a browser gets, in English and Russian, and signs in; a site's ``theme_dir`` applies to its
host only; reflected values stay escaped in an override (SECURITY-CHECKLIST item 67) and the
page headers stay (item 14); a template that fails is answered by the built-in page with one log
line, never a 500; edits on disk apply without a restart, and a broken edit is rejected with
its file and line while the old theme keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import pytest
from aiohttp import web
from bs4 import BeautifulSoup
from pytest_aiohttp.plugin import AiohttpClient

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from gateway.http import pages
from gateway.keys import CONFIG
from tests.conftest import start_client
from tests.http.checklist import serving
from tests.http.conftest import as_config, authz_params, location_params
from tests.support import USERS, Client, gateway_env, named_input, run_gateway

SCRIPT = "<script>alert(1)</script>"
HINT = f'"><img src=x onerror=alert(1)>{SCRIPT}'
BRAND_HOST = "brand.example.test"

# An override written the way a site's designer would: its own markup around the fields the
# gateway needs (username, password, the hidden flow), with texts of its own.
LOGIN = """{% extends "pages/base.html" %}
{% from "pages/forms.html" import hidden_fields %}
{% block content %}
<div id="brand">Acme Corp</div>
<h1>{{ t.acme_welcome.format(client=client_name) }}</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="{{ action }}">{{ hidden_fields(hidden) }}
<label for="username">{{ t.username }}</label>
<input type="text" id="username" name="username" value="{{ username }}">
<label for="password">{{ t.password }}</label>
<input type="password" id="password" name="password">
<button type="submit">{{ t.submit }}</button>
</form>
<p id="echo" title="{{ username }}">{{ username }}</p>
{% endblock %}
"""
# A typo on line 6: "{{ error }" for "{{ error }}".
BROKEN = LOGIN.replace("{{ error }}</p>", "{{ error }</p>")
ERROR = """{% extends "default:pages/error.html" %}
{% block content %}<div id="brand">Acme Corp</div><p id="detail">{{ description }}</p>
<p id="code" data-error="{{ error }}">{{ error }}</p>{% endblock %}
"""
MESSAGES = {
    "en": {"acme_welcome": "Welcome to {client} at Acme", "submit": "Log in"},
    "ru": {"acme_welcome": "Добро пожаловать в {client} (Acme)"},
}
# A site's layout: every page of its host, the gateway theme's login page included.
SITE_BASE = """{% extends "default:pages/base.html" %}
{% block head %}<meta name="site" content="brand">{% endblock %}
"""


def write_files(directory: Path, files: Mapping[str, str]) -> None:
    for name, content in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")


def themed_conf(directory: Path, login: str = LOGIN) -> Path:
    conf = as_config(directory, theme_dir="theme")
    write_files(
        directory / "theme",
        {
            "pages/login.html": login,
            "pages/error.html": ERROR,
            **{f"messages/{lang}.json": json.dumps(m) for lang, m in MESSAGES.items()},
        },
    )
    (directory / "sites" / "brand.json").write_text(
        json.dumps({"hosts": [BRAND_HOST], "theme_dir": "brand-theme"})
    )
    write_files(directory / "brand-theme", {"pages/base.html": SITE_BASE})
    return conf


@pytest.fixture
async def themed(
    tmp_path: Path, database_url: str, users: dict[str, str]
) -> AsyncIterator[tuple[Client, Path]]:
    """The authorization server with a gateway theme (login and error pages, texts) and a site
    ``brand`` whose theme replaces the layout; the client and the theme directory."""
    conf = themed_conf(tmp_path / "conf")
    async with serving(conf, database_url) as client:
        yield client, tmp_path / "conf" / "theme"


async def open_login(
    client: Client, headers: Mapping[str, str] | None = None, **extra: str
) -> tuple[int, BeautifulSoup, Mapping[str, str]]:
    response = await client.get(
        "/oauth2/authorize",
        params=authz_params("conf", **extra),
        headers=headers or {},
        allow_redirects=False,
    )
    html = await response.text()
    return response.status, BeautifulSoup(html, "html.parser"), response.headers


def text_of(soup: BeautifulSoup, element_id: str) -> str | None:
    found = soup.find(id=element_id)
    return found.get_text(strip=True) if found is not None else None


async def test_the_themes_login_page_is_served_and_signs_in(themed: tuple[Client, Path]) -> None:
    client, _ = themed
    status, soup, headers = await open_login(client)
    assert status == 200
    assert text_of(soup, "brand") == "Acme Corp"
    assert soup.h1 is not None
    assert soup.h1.get_text() == "Welcome to conf at Acme"
    assert soup.title is not None
    assert soup.title.get_text() == "Sign in"  # a built-in text the theme did not change
    # Item 14: the page headers do not depend on the template.
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cache-Control"] == "no-store"
    form = soup.find("form")
    assert form is not None
    assert form.get("action") == "/oauth2/login"
    button = form.find("button")
    assert button is not None
    assert button.get_text() == "Log in"
    login = await client.post(
        "/oauth2/login",
        data={
            "flow": str(named_input(form, "flow")["value"]),
            "username": "alice",
            "password": USERS["alice"][0],
        },
        allow_redirects=False,
    )
    assert login.status == 303, await login.text()
    query, _ = location_params(login.headers["Location"])
    assert query["code"]
    assert query["state"] == "st-conf"


async def test_the_theme_speaks_russian(themed: tuple[Client, Path]) -> None:
    client, _ = themed
    _, soup, _ = await open_login(client, {"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    assert soup.html is not None
    assert soup.html.get("lang") == "ru"
    assert soup.h1 is not None
    assert soup.h1.get_text() == "Добро пожаловать в conf (Acme)"
    assert soup.find("button", string="Войти") is not None  # built-in Russian, not "Log in"


async def test_a_wrong_password_shows_the_themes_alert(themed: tuple[Client, Path]) -> None:
    client, _ = themed
    _, soup, _ = await open_login(client)
    form = soup.find("form")
    assert form is not None
    answer = await client.post(
        "/oauth2/login",
        data={
            "flow": str(named_input(form, "flow")["value"]),
            "username": "alice",
            "password": "x",
        },
        allow_redirects=False,
    )
    again = BeautifulSoup(await answer.text(), "html.parser")
    assert answer.status == 401
    assert text_of(again, "brand") == "Acme Corp"
    alert = again.find(role="alert")
    assert alert is not None
    assert alert.get_text() == "The user name or password is wrong."


async def test_reflected_values_are_escaped_by_the_override(themed: tuple[Client, Path]) -> None:
    """Item 67: the override prints login_hint in an element, an attribute and an input: it
    arrives as text every time, never as markup."""
    client, _ = themed
    status, soup, _ = await open_login(client, login_hint=HINT)
    assert status == 200
    assert soup.find("script") is None
    assert soup.find("img") is None
    assert text_of(soup, "echo") == HINT
    echo = soup.find(id="echo")
    assert echo is not None
    assert echo.get("title") == HINT
    assert named_input(soup, "username")["value"] == HINT


async def test_the_themes_error_page_escapes_reflected_input(themed: tuple[Client, Path]) -> None:
    """Item 67 on the theme's error page: <script> in client_id, redirect_uri and state."""
    client, _ = themed
    for params in (
        {"response_type": "code", "client_id": SCRIPT, "state": SCRIPT},
        {"response_type": "code", "client_id": "conf", "redirect_uri": SCRIPT, "state": SCRIPT},
    ):
        response = await client.get("/oauth2/authorize", params=params, allow_redirects=False)
        html = await response.text()
        assert response.status == 400
        assert "Location" not in response.headers
        soup = BeautifulSoup(html, "html.parser")
        assert text_of(soup, "brand") == "Acme Corp"
        assert soup.find("script") is None
        assert SCRIPT not in html


async def test_a_sites_theme_applies_to_its_host_only(themed: tuple[Client, Path]) -> None:
    """Site theme over gateway theme over built-in: the brand host gets its own layout around
    the gateway theme's login page; other hosts get the gateway theme alone."""
    client, _ = themed
    _, brand, _ = await open_login(client, {"Host": f"{BRAND_HOST}:443"})
    _, other, _ = await open_login(client, {"Host": "localhost"})
    assert brand.find("meta", attrs={"name": "site", "content": "brand"}) is not None
    assert text_of(brand, "brand") == "Acme Corp"
    assert other.find("meta", attrs={"name": "site"}) is None
    assert text_of(other, "brand") == "Acme Corp"
    # Pages the themes do not override get the site's layout on its host too.
    logout = await client.get("/oauth2/logout", headers={"Host": BRAND_HOST})
    page = BeautifulSoup(await logout.text(), "html.parser")
    assert page.find("meta", attrs={"name": "site", "content": "brand"}) is not None


async def test_a_failing_template_falls_back_to_the_built_in_page(
    tmp_path: Path,
    database_url: str,
    users: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A template that passes the checks but fails while rendering (an undefined value used as
    an object): the built-in login page, one warning naming the file and line, however many
    times it happens; signing in still works."""
    broken = LOGIN.replace('<div id="brand">Acme Corp</div>', "<div>{{ brand.name }}</div>")
    conf = themed_conf(tmp_path / "conf", login=broken)
    caplog.set_level(logging.WARNING, logger="gateway.themes.theme")
    async with serving(conf, database_url) as client:
        for _ in range(3):
            status, soup, _ = await open_login(client)
            assert status == 200
            assert soup.h1 is not None
            assert soup.h1.get_text() == "Sign in to continue to conf"  # the built-in page
        form = soup.find("form")
        assert form is not None
        login = await client.post(
            "/oauth2/login",
            data={
                "flow": str(named_input(form, "flow")["value"]),
                "username": "alice",
                "password": USERS["alice"][0],
            },
            allow_redirects=False,
        )
        assert login.status == 303
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert f"{tmp_path}/conf/theme/pages/login.html:4" in lines[0]
    assert "'brand' is undefined" in lines[0]
    assert "Traceback" not in caplog.text


async def test_edits_apply_without_a_restart(
    themed: tuple[Client, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """The watcher sees a template change and reloads; a broken edit is rejected with its file
    and line, and the theme that was serving keeps serving."""
    client, theme = themed
    login = theme / "pages" / "login.html"
    login.write_text(LOGIN.replace("Acme Corp", "Acme Corporation, rebranded"), encoding="utf-8")

    async def brand() -> str | None:
        _, soup, _ = await open_login(client)
        return text_of(soup, "brand")

    assert await wait_until(brand, "Acme Corporation, rebranded")

    holder = client.app[CONFIG]
    caplog.set_level(logging.ERROR, logger="gateway.config.holder")
    login.write_text(BROKEN, encoding="utf-8")
    assert holder.reload() is False  # what the watcher does, now
    assert f"{login}:6: template syntax error: unexpected '}}'" in caplog.text
    assert await brand() == "Acme Corporation, rebranded"


async def wait_until(
    read: Callable[[], Awaitable[str | None]], expected: str, timeout: float = 10.0
) -> bool:
    """Poll ``read()`` until it returns ``expected`` (the watcher polls files every second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await read() == expected:
            return True
        await asyncio.sleep(0.2)
    return False


def test_config_check_reports_a_template_syntax_error_with_file_and_line(tmp_path: Path) -> None:
    conf = themed_conf(tmp_path / "conf", login=BROKEN)
    result = run_gateway("config", "check", "--config", str(conf), env=gateway_env())
    assert result.returncode == 2
    assert result.stdout == ""
    login = tmp_path / "conf" / "theme" / "pages" / "login.html"
    assert f"  {login}:6: template syntax error: unexpected '}}'\n" in result.stderr
    assert "Traceback" not in result.stderr


async def test_render_is_the_entry_point_for_new_pages(
    tmp_path: Path, database_url: str, aiohttp_client: AiohttpClient
) -> None:
    """``pages.render``, as a new page (say, registration) will use it: the theme's template
    under pages/, ``t`` in the chosen language with the theme's own texts, ``lang``, ``title``
    from ``title_key``, the caller's variables escaped (item 67), the page headers (item 14) and
    the status asked for."""
    conf = themed_conf(tmp_path / "conf")
    write_files(
        tmp_path / "conf" / "theme",
        {
            "pages/register.html": '{% extends "pages/base.html" %}{% block content %}'
            '<h1>{{ t.register_title }}</h1><p id="org">{{ organization }}</p>'
            '<p id="lang">{{ lang }}</p>{% endblock %}',
            "messages/en.json": json.dumps({**MESSAGES["en"], "register_title": "Join"}),
            "messages/ru.json": json.dumps({**MESSAGES["ru"], "register_title": "Регистрация"}),
        },
    )
    app = create_app(ConfigHolder(load_config(conf, environ={})), database_url=database_url)

    async def register(request: web.Request) -> web.Response:
        return pages.render(
            request, "register.html", title_key="register_title", status=201, organization=SCRIPT
        )

    app.router.add_get("/test-register", register)
    client = await start_client(aiohttp_client, app)
    for language, title in (("en", "Join"), ("ru", "Регистрация")):
        response = await client.get("/test-register", headers={"Accept-Language": language})
        soup = BeautifulSoup(await response.text(), "html.parser")
        assert response.status == 201
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"
        assert soup.title is not None
        assert soup.title.get_text() == title
        assert text_of(soup, "lang") == language
        assert text_of(soup, "org") == SCRIPT
        assert soup.find("script") is None
