"""The checklist's response macros: SECURITY-CHECKLIST section 0.4 ``TOK200``, ``E400(x)`` and
``E401C`` for the token endpoint, the constants they rely on, and the gateway start-up that the
HTTP test modules share.

Each macro checks the union of what the test modules' former copies of it checked, and returns
the parsed JSON body. ``tests/http/__init__.py`` registers this module for pytest's assertion
rewriting, so a failed check reports its values like one in a test module.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse, CookieJar
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from tests.support import Client, GatewayTestServer

TOKEN = "/oauth2/token"
TOKEN_MEMBERS = ("access_token", "refresh_token", "id_token")
VSCHAR = re.compile(r"^[\x20-\x7e]+$")
DESCRIPTION_CHARS = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$")
ERROR_LEAKS = ("Traceback", 'File "', ".py", "SELECT ", "asyncpg", "daemon.", "auth.")
BASIC_CHALLENGE = 'Basic realm="gateway"'


async def assert_tok200(resp: ClientResponse) -> dict[str, Any]:
    """SECURITY-CHECKLIST section 0.4 ``TOK200``."""
    text = await resp.text()
    assert resp.status == 200, text
    assert resp.content_type == "application/json"
    assert resp.headers.get("Cache-Control") == "no-store"
    assert resp.headers.get("Pragma") == "no-cache"
    body: dict[str, Any] = json.loads(text)
    assert isinstance(body["access_token"], str)
    assert VSCHAR.match(body["access_token"])
    assert body["token_type"].lower() == "bearer"
    assert type(body["expires_in"]) is int
    assert body["expires_in"] > 0
    return body


async def assert_e400(resp: ClientResponse, *errors: str) -> dict[str, Any]:
    """SECURITY-CHECKLIST section 0.4 ``E400(x)``; ``errors`` are the accepted alternatives."""
    text = await resp.text()
    assert resp.status == 400, text
    assert resp.content_type == "application/json"
    assert resp.headers.get("Cache-Control") == "no-store"
    body = json.loads(text)
    assert isinstance(body, dict)
    assert body.get("error") in errors, body
    assert DESCRIPTION_CHARS.match(body.get("error_description", "")), body
    assert not any(member in body for member in TOKEN_MEMBERS), body
    for leak in ERROR_LEAKS:
        assert leak not in text, text
    return body


async def assert_e401c(resp: ClientResponse, *, anonymous: bool = False) -> dict[str, Any]:
    """SECURITY-CHECKLIST section 0.4 ``E401C``: 401, invalid_client, no token and no
    introspection answer; the Basic challenge when the client sent an ``Authorization`` header or
    (``anonymous``) no client authentication at all, none after credentials in the body (RFC 6749
    section 5.2: strict clients such as oauth4webapi would report the challenge and hide the
    error code)."""
    text = await resp.text()
    assert resp.status == 401, text
    assert resp.content_type == "application/json"
    assert resp.headers.get("Cache-Control") == "no-store"
    sent = resp.request_info.headers.get("Authorization")
    challenged = sent is not None or anonymous
    assert resp.headers.get("WWW-Authenticate") == (BASIC_CHALLENGE if challenged else None), sent
    body: dict[str, Any] = json.loads(text)
    assert body.get("error") == "invalid_client", body
    assert not any(member in body for member in TOKEN_MEMBERS), body
    assert "active" not in body, body
    return body


@contextlib.asynccontextmanager
async def serving(conf_path: Path, database_url: str) -> AsyncIterator[Client]:
    """The gateway on the configuration at ``conf_path``, with a browser-like cookie jar."""
    holder = ConfigHolder(load_config(conf_path, environ={}))
    server = GatewayTestServer(create_app(holder, database_url=database_url))
    await server.start_server()
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
    client = TestClient(server, cookie_jar=jar)
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
