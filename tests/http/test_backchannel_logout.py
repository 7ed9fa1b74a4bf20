"""OpenID Connect Back-Channel Logout 1.0 (issue 14 item 1, "Done when"), over real HTTP: the
gateway on 127.0.0.1 with a real database, and relying parties started here on 127.0.0.1
(tests/e2e/relying_party.py) whose ``/backchannel`` verifies each logout token as the spec's
section 2.6 says, with pyjwt against the gateway's ``/oauth2/jwks`` fetched over HTTP.

A person signs in to two apps through the gateway (code flow), and signs out at the gateway;
each app with a ``backchannel_logout_uri`` receives one logout token naming that session (sid)
and user (sub); an app without one gets nothing. An app that is down, or answers 400, gets it
later (backoff on the application's clock, nothing sleeps for it); past
``backchannel_logout.max_age`` the logout is failed and never tried again.

SECURITY-CHECKLIST items 86 and 87 (sign-out is server-side and reaches every party of the
session), and section 0.4's rule that no token appears in a log line."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import jwt
import pytest
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from tests.e2e.relying_party import RelyingParty
from tests.http.conftest import basic, hidden_flow
from tests.http.mail_support import eventually
from tests.support import (
    USERS,
    Client,
    GatewayTestServer,
    bound_socket,
    clock_of,
    gateway_env,
    run_gateway,
    write_conf,
)

V = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
C = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
CHAT = ("chat", "chat-secret")
HS = ("hs", "hs-secret-0123456789abcdefghijklmnopq")
PLAIN = ("plain", "plain-secret")
PLAIN_CB = "https://plain.example.test/cb"
EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass
class Site:
    issuer: str
    browser: Client
    holder: ConfigHolder
    chat_uri: str
    chat_cb: str
    hs: RelyingParty


def clients(chat_origin: str, hs: RelyingParty) -> dict[str, Any]:
    code = ["authorization_code", "refresh_token"]
    return {
        "chat": {
            "client_id": CHAT[0],
            "client_secret": CHAT[1],
            "redirect_uris": [f"{chat_origin}/cb"],
            "grant_types": code,
            "backchannel_logout_uri": f"{chat_origin}/backchannel",
            "backchannel_logout_session_required": True,
        },
        "hs": {  # signs its ID tokens, and so its logout tokens, with HS256
            "client_id": HS[0],
            "client_secret": HS[1],
            "redirect_uris": [hs.redirect_uri],
            "grant_types": code,
            "algorithm": "HS256",
            "backchannel_logout_uri": hs.backchannel_logout_uri,
        },
        "plain": {
            "client_id": PLAIN[0],
            "client_secret": PLAIN[1],
            "redirect_uris": [PLAIN_CB],
            "grant_types": code,
        },
    }


@pytest.fixture
def chat_port() -> int:
    """The chat app's port: bound by the test when the app is to be up."""
    sock = bound_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@pytest.fixture
async def hs_app() -> AsyncIterator[RelyingParty]:
    app = RelyingParty("", HS[0], HS[1], algorithm="HS256")
    await app.start()
    yield app
    await app.close()


@pytest.fixture
def max_age() -> int:
    return 86400


@pytest.fixture
async def site(
    tmp_path: Path,
    database_url: str,
    users: dict[str, str],
    chat_port: int,
    hs_app: RelyingParty,
    max_age: int,
    db: asyncpg.Connection,
) -> AsyncIterator[Site]:
    await db.execute("DELETE FROM auth.backchannel_logout")
    sock = bound_socket()
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    hs_app.gateway = issuer
    chat_origin = f"http://127.0.0.1:{chat_port}"
    conf = write_conf(
        tmp_path / "conf",
        gateway={
            "issuer": issuer,
            "backchannel_logout": {"poll_interval": 0.1, "timeout": 2, "max_age": max_age},
        },
        clients=clients(chat_origin, hs_app),
    )
    holder = ConfigHolder(load_config(conf, environ={}))
    server = GatewayTestServer(
        create_app(holder, database_url=database_url),
        host="127.0.0.1",
        socket_factory=lambda *_: sock,
    )
    await server.start_server()
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[issuer])
    browser = TestClient(server, cookie_jar=jar)
    await browser.start_server()
    try:
        yield Site(
            issuer, browser, holder, f"{chat_origin}/backchannel", f"{chat_origin}/cb", hs_app
        )
    finally:
        await browser.close()


async def sign_in_to(site: Site, client: tuple[str, str], redirect_uri: str) -> dict[str, Any]:
    """The browser signs in to ``client`` (code flow, PKCE), at the login form the first time
    and silently afterwards (its SID session); the app's back end redeems the code."""
    params = {
        "response_type": "code",
        "client_id": client[0],
        "redirect_uri": redirect_uri,
        "scope": "openid profile",
        "state": "st",
        "nonce": "n",
        "code_challenge": C,
        "code_challenge_method": "S256",
    }
    browser = site.browser
    answer = await browser.get("/oauth2/authorize", params=params, allow_redirects=False)
    if answer.status == 200:  # the login page
        answer = await browser.post(
            "/oauth2/login",
            data={
                "flow": hidden_flow(await answer.text()),
                "username": "alice",
                "password": USERS["alice"][0],
            },
            allow_redirects=False,
        )
    assert answer.status in (302, 303), await answer.text()
    location = answer.headers["Location"]
    assert location.startswith(redirect_uri), location
    code = parse_qs(urlsplit(location).query)["code"][0]
    tokens = await browser.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": V,
        },
        headers=basic(*client),
    )
    assert tokens.status == 200, await tokens.text()
    body: dict[str, Any] = await tokens.json()
    return body


async def sign_out(site: Site) -> None:
    """Sign out at the gateway: its confirmation page, then the form."""
    page = await site.browser.get("/oauth2/logout")
    assert page.status == 200
    done = await site.browser.post("/oauth2/logout", data={"flow": hidden_flow(await page.text())})
    assert done.status == 200, await done.text()
    assert "signed out" in (await done.text()).lower()


def unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def rows(db: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    found = await db.fetch("SELECT * FROM auth.backchannel_logout")
    return {str(r["client_id"]): r for r in found}


async def state_of(db: asyncpg.Connection, client_id: str) -> tuple[str, int] | None:
    row = (await rows(db)).get(client_id)
    return None if row is None else (str(row["state"]), int(row["attempts"]))


async def test_discovery_advertises_back_channel_logout(site: Site) -> None:
    answer = await site.browser.get("/.well-known/openid-configuration")
    metadata = await answer.json()
    assert metadata["backchannel_logout_supported"] is True
    assert metadata["backchannel_logout_session_supported"] is True


async def test_signing_out_sends_each_app_a_logout_token_it_verifies(
    site: Site, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    chat = RelyingParty(site.issuer, CHAT[0], CHAT[1])
    await chat.start(port=int(urlsplit(site.chat_uri).port or 0))
    try:
        chat_tokens = await sign_in_to(site, CHAT, site.chat_cb)
        hs_tokens = await sign_in_to(site, HS, site.hs.redirect_uri)
        await sign_in_to(site, PLAIN, PLAIN_CB)
        id_token = unverified(chat_tokens["id_token"])
        assert unverified(hs_tokens["id_token"])["sid"] == id_token["sid"]  # one session

        await sign_out(site)
        await eventually(lambda: len(chat.logouts) == 1, "the chat app's logout token")
        await eventually(lambda: len(site.hs.logouts) == 1, "the HS256 app's logout token")
        await eventually(
            lambda: _states(db, {"chat": "sent", "hs": "sent"}), "the outbox to say sent"
        )
    finally:
        await chat.close()

    assert chat.refused_logouts == []
    assert site.hs.refused_logouts == []
    (claims,) = chat.logouts
    assert claims["sid"] == id_token["sid"]
    assert claims["sub"] == id_token["sub"]
    assert claims["iss"] == site.issuer
    assert claims["aud"] == "chat"
    assert claims["events"] == {EVENT: {}}
    assert claims["exp"] - claims["iat"] == 120
    assert "nonce" not in claims
    assert chat.logout_headers[0]["typ"] == "logout+jwt"
    assert chat.logout_headers[0]["alg"] in ("RS256", "ES256")
    (hs_claims,) = site.hs.logouts
    assert (hs_claims["sid"], hs_claims["sub"]) == (id_token["sid"], id_token["sub"])
    assert site.hs.logout_headers[0]["alg"] == "HS256"
    assert chat.logout_requests == [
        {"content_type": "application/x-www-form-urlencoded", "cache_control": "no-store"}
    ]
    # The app without a backchannel_logout_uri: no row, nothing sent.
    assert set(await rows(db)) == {"chat", "hs"}
    # No logout token (nor any part of one) in the log.
    signatures = [t.rsplit(".", 1)[1] for t in (chat_tokens["id_token"],)]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "delivered" in text
    for signature in signatures:
        assert signature not in text
    assert "eyJ" not in text


async def _states(db: asyncpg.Connection, expected: dict[str, str]) -> bool:
    found = await rows(db)
    return {k: str(v["state"]) for k, v in found.items()} == expected


async def test_an_app_that_is_down_gets_the_logout_once_it_is_back(
    site: Site, db: asyncpg.Connection
) -> None:
    """Its port closed at the moment of logout: the row stays queued with a next attempt. Once
    the app is up and the application's clock is past the backoff, it is delivered once."""
    tokens = await sign_in_to(site, CHAT, site.chat_cb)
    await sign_out(site)
    await eventually(lambda: _attempted(db, "chat", 1), "the first attempt to fail")
    row = (await rows(db))["chat"]
    assert row["state"] == "queued"
    assert row["next_attempt_at"] > row["claimed_at"]
    assert "Connect" in row["last_error"], row["last_error"]

    chat = RelyingParty(site.issuer, CHAT[0], CHAT[1])
    await chat.start(port=int(urlsplit(site.chat_uri).port or 0))
    try:
        await asyncio.sleep(0.5)  # five looks at the outbox: not due yet
        assert chat.logouts == []
        assert await state_of(db, "chat") == ("queued", 1)
        clock_of(site.browser).advance(11)  # past the first backoff (10 s)
        await eventually(lambda: len(chat.logouts) == 1, "the logout token")
        await eventually(lambda: _states(db, {"chat": "sent"}), "sent")
        await asyncio.sleep(0.5)  # more looks at the outbox: nothing more is sent
    finally:
        await chat.close()
    assert len(chat.logouts) == 1
    assert chat.refused_logouts == []
    assert chat.logouts[0]["sid"] == unverified(tokens["id_token"])["sid"]
    assert await state_of(db, "chat") == ("sent", 2)


async def _attempted(db: asyncpg.Connection, client_id: str, attempts: int) -> bool:
    return await state_of(db, client_id) == ("queued", attempts)


async def test_an_app_that_answers_400_is_tried_again(site: Site, db: asyncpg.Connection) -> None:
    chat = RelyingParty(site.issuer, CHAT[0], CHAT[1])
    chat.logout_answers = [400]
    await chat.start(port=int(urlsplit(site.chat_uri).port or 0))
    try:
        await sign_in_to(site, CHAT, site.chat_cb)
        await sign_out(site)
        await eventually(lambda: _attempted(db, "chat", 1), "the first attempt to fail")
        row = (await rows(db))["chat"]
        assert row["last_error"] == "the client answered HTTP 400 Bad Request"
        clock_of(site.browser).advance(11)
        await eventually(lambda: len(chat.logouts) == 1, "the logout token")
        await eventually(lambda: _states(db, {"chat": "sent"}), "sent")
    finally:
        await chat.close()
    assert await state_of(db, "chat") == ("sent", 2)


@pytest.mark.parametrize("max_age", [60])
async def test_past_max_age_a_logout_fails_and_is_not_tried_again(
    site: Site, db: asyncpg.Connection, database_url: str
) -> None:
    """... and ``gateway logout outbox`` (the real command) shows it to an operator."""
    await sign_in_to(site, CHAT, site.chat_cb)
    await sign_out(site)
    await eventually(lambda: _attempted(db, "chat", 1), "the first attempt to fail")
    clock_of(site.browser).advance(61)  # past max_age (60 s) since the session ended
    await eventually(lambda: _states(db, {"chat": "failed"}), "the logout to be given up")
    row = (await rows(db))["chat"]
    assert row["attempts"] == 2
    assert row["failed_at"] is not None
    assert "Connect" in row["last_error"]

    chat = RelyingParty(site.issuer, CHAT[0], CHAT[1])
    await chat.start(port=int(urlsplit(site.chat_uri).port or 0))
    try:
        clock_of(site.browser).advance(7200)
        await asyncio.sleep(0.5)
    finally:
        await chat.close()
    assert chat.logouts == []
    assert await state_of(db, "chat") == ("failed", 2)

    env = gateway_env(
        GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(site.holder.current.path)
    )
    listed = await asyncio.to_thread(run_gateway, "logout", "outbox", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert (entry["client_id"], entry["state"], entry["attempts"]) == ("chat", "failed", 2)
    assert entry["reason"] == "logout"
    assert "Connect" in entry["last_error"]
    table = await asyncio.to_thread(run_gateway, "logout", "outbox", env=env)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "CLIENT", "SESSION"]
    assert " failed " in table.stdout
    wrong = await asyncio.to_thread(run_gateway, "logout", "outbox", "--limit", "0", env=env)
    assert (wrong.returncode, wrong.stderr.strip()) == (2, "error: --limit must be at least 1")


async def test_an_app_whose_uri_is_gone_at_send_time_is_skipped(
    site: Site, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """The URI is read from the configuration in force when the logout is sent."""
    await sign_in_to(site, CHAT, site.chat_cb)
    await sign_out(site)
    await eventually(lambda: _attempted(db, "chat", 1), "the first attempt to fail")
    changed = clients(site.chat_cb.removesuffix("/cb"), site.hs)
    del changed["chat"]["backchannel_logout_uri"]
    conf = write_conf(tmp_path / "conf2", gateway={"issuer": site.issuer}, clients=changed)
    site.holder.replace(load_config(conf, environ={}))
    clock_of(site.browser).advance(11)
    await eventually(lambda: _states(db, {"chat": "skipped"}), "the logout to be skipped")
    row = (await rows(db))["chat"]
    assert row["last_error"] == "the client has no backchannel_logout_uri now"
