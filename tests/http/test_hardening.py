"""Defects found by review, each pinned by a test that failed before its fix: login CSRF at the
token endpoint, non-Latin-1 headers, underscore header smuggling, upstream framing and stalls,
SSO re-login keeping a SPA's session, client binding in token exchange, undecodable input."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.passwords import Passwords
from gateway.store.users import user_add
from tests.http.checklist import assert_e400
from tests.http.conftest import basic, hidden_flow
from tests.http.proxy_support import (
    APP,
    EVIL,
    Gateway,
    default_routes,
    route,
    running_gateway,
    send,
)

CYRILLIC = "Иван"


@pytest.fixture
async def gw(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path / "conf", database_url) as gateway:
        yield gateway


async def test_a_foreign_origin_cannot_sign_a_browser_in(gw: Gateway) -> None:
    """Login CSRF: a cross-site form posting to /oauth2/token gets no session cookies."""
    form = {
        "grant_type": "password",
        "client_id": "spa",
        "username": "alice",
        "password": "Correct-Horse-9",
        "scope": "openid",
    }
    async with gw.bare().post(gw.url("/oauth2/token"), data=form, headers={"Origin": EVIL}) as r:
        body = json.loads(await r.text())
        assert r.status == 400
        assert body["error"] == "unauthorized_client"
        assert r.headers.getall("Set-Cookie", []) == []
    async with gw.bare().post(gw.url("/oauth2/token"), data=form, headers={"Origin": APP}) as r:
        assert r.status == 200


async def test_non_latin1_identities_and_headers_are_forwarded(
    gw: Gateway, database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM auth.users WHERE username = $1", CYRILLIC):
            await user_add(conn, CYRILLIC, Passwords().hash("Ivan-Passw0rd!"), None, None)
    finally:
        await conn.close()
    form = {
        "grant_type": "password",
        "client_id": "spa",
        "username": CYRILLIC,
        "password": "Ivan-Passw0rd!",
        "scope": "openid profile",
    }
    async with gw.bare().post(gw.url("/oauth2/token"), data=form, headers={"Origin": APP}) as r:
        assert r.status == 200, await r.text()
        cookies = "; ".join(c.split(";", 1)[0] for c in r.headers.getall("Set-Cookie"))
    answer = await send(gw, "/legacy/me", cookies=cookies, headers={"X-Note": "中文 ok"})
    assert answer.status == 200, answer.text
    seen = gw.upstream.requests[-1]

    def utf8(value: str | None) -> str:  # the recorder keeps raw header bytes as Latin-1 text
        assert value is not None
        return value.encode("latin-1").decode("utf-8")

    assert utf8(seen.header("X-User-Name")) == CYRILLIC
    assert utf8(seen.header("X-Note")) == "中文 ok"


async def test_identity_headers_with_underscores_are_stripped(gw: Gateway) -> None:
    answer = await send(gw, "/opt/x", headers={"X_User_Name": "root", "X-User_Id": "0"})
    assert answer.status == 200
    names = {name.lower() for name, _ in gw.upstream.requests[-1].raw_headers}
    assert "x_user_name" not in names
    assert "x-user_id" not in names


async def test_sso_login_on_the_login_page_keeps_the_spa_session(gw: Gateway) -> None:
    """Signing in again through /oauth2/authorize (prompt=login) renews the same session, so the
    SPA's cookies of that session keep working."""
    browser = gw.browser()
    await gw.sign_in(browser)
    assert (await send(gw, "/api/orders/1", session=browser)).status == 200
    params = {
        "response_type": "code",
        "client_id": "conf",
        "redirect_uri": "https://rp.example.test/cb",
        "scope": "openid",
        "prompt": "login",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    async with browser.get(gw.url("/oauth2/authorize"), params=params) as page:
        flow = hidden_flow(await page.text())
    async with browser.post(
        gw.url("/oauth2/login"),
        data={"flow": flow, "username": "alice", "password": "Correct-Horse-9"},
        allow_redirects=False,
    ) as login:
        assert login.status == 303
    again = await send(gw, "/api/orders/1", session=browser)
    assert again.status == 200, again.text


async def test_token_exchange_binds_refresh_and_id_tokens_to_their_client(
    gw: Gateway,
) -> None:
    session = gw.bare()
    form = {
        "grant_type": "password",
        "client_id": "spab",
        "username": "alice",
        "password": "Correct-Horse-9",
        "scope": "openid offline_access orders.read",
    }
    async with session.post(gw.url("/oauth2/token"), data=form, headers={"Origin": APP}) as r:
        tokens: dict[str, Any] = await r.json()
    exchange = "urn:ietf:params:oauth:grant-type:token-exchange"
    for token, kind in (
        (tokens["refresh_token"], "refresh_token"),
        (tokens["id_token"], "id_token"),
    ):
        async with session.post(
            gw.url("/oauth2/token"),
            data={
                "grant_type": exchange,
                "subject_token": token,
                "subject_token_type": f"urn:ietf:params:oauth:token-type:{kind}",
            },
            headers=basic("conf", "s3cr3t"),
        ) as r:
            await assert_e400(r, "invalid_request")  # type: ignore[arg-type]


async def test_lone_surrogates_in_json_are_a_bad_request(gw: Gateway) -> None:
    body = b'{"grant_type": "refresh_token", "client_id": "spa", "refresh_token": "\\ud800"}'
    async with gw.bare().post(
        gw.url("/oauth2/token"), data=body, headers={"Content-Type": "application/json"}
    ) as r:
        await assert_e400(r, "invalid_request")  # type: ignore[arg-type]


async def test_undecodable_csrf_cookie_is_refused_not_a_crash(gw: Gateway) -> None:
    async with gw.bare().get(gw.url("/oauth2/logout")) as page:
        flow = hidden_flow(await page.text())
    request = (
        b"POST /oauth2/logout HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nCookie: __Host-GW-CSRF=\xff\xfe\r\n"
        b"Content-Length: "
        + str(len("flow=" + flow)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + ("flow=" + flow).encode()
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(request)
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.split()[1] == b"403"


@pytest.fixture
async def raw_upstream() -> AsyncIterator[dict[str, Any]]:
    """A hand-written upstream: a close-delimited answer, one that never reads the body, and one
    that sends an unsolicited 408 on an idle keep-alive connection."""
    state: dict[str, Any] = {"connections": 0}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state["connections"] += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ")[1]
            if path.endswith(b"/closing"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"z" * 5000)
                await writer.drain()
                writer.close()
            elif path.endswith(b"/stall"):
                await asyncio.sleep(10)  # never reads the body
                writer.close()
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                await asyncio.sleep(0.1)
                writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 5\r\n\r\nstale")
                await writer.drain()
                await asyncio.sleep(5)
                writer.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    state["url"] = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield state
    server.close()


async def test_upstream_framing_stalls_and_unsolicited_bytes(
    tmp_path: Path, database_url: str, users: dict[str, str], raw_upstream: dict[str, Any]
) -> None:
    routes = [
        *default_routes("http://127.0.0.1:9"),
        route("/raw/", raw_upstream["url"], auth="none", timeout=2),
    ]
    async with running_gateway(tmp_path / "conf", database_url, routes=routes) as gw:
        closing = await send(gw, "/raw/closing")
        assert closing.status == 200
        assert closing.body == b"z" * 5000

        started = time.monotonic()
        stalled = await send(gw, "/raw/stall", method="POST", data=b"x" * 8_000_000)
        assert stalled.status == 504, stalled.text
        assert time.monotonic() - started < 8

        first = await send(gw, "/raw/ok")
        await asyncio.sleep(0.3)  # the upstream has pushed an unsolicited 408 meanwhile
        second = await send(gw, "/raw/ok")
        assert (first.status, first.body) == (200, b"ok")
        assert (second.status, second.body) == (200, b"ok")
