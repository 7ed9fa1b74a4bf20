"""The authorization server under test, configured like SECURITY-CHECKLIST section 0.2.

Clients ``conf``, ``conf2``, ``cc``, ``pub``, ``imp``, ``rs``, ``rc``, ``multi`` and ``cons`` (a
client that asks for consent); users ``alice`` and ``bob`` (``carol`` is locked). The issuer is
``https://as.example.test``. Throttling thresholds are raised so that tests of other things never
trip them; the brute-force tests configure their own.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientResponse

from tests.http.checklist import serving
from tests.support import USERS, Client, write_conf

ISSUER = "https://as.example.test"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPES = ["openid", "profile", "email", "offline_access", "orders.read"]
V = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
C = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
V2 = "EEM_I_OaM991MBJtP9NskPou30uUbTeH0arOA36L6Co"

CLIENTS: dict[str, dict[str, Any]] = {
    "conf": {
        "client_id": "conf",
        "client_secret": "s3cr3t",
        "redirect_uris": ["https://rp.example.test/cb"],
        "post_logout_redirect_uris": ["https://rp.example.test/bye"],
        "scopes": SCOPES,
        "grant_types": [
            "authorization_code",
            "refresh_token",
            "password",
            "client_credentials",
            EXCHANGE,
            JWT_BEARER,
        ],
        "pkce": "optional",
        "audiences": ["orders-api"],
    },
    "conf2": {
        "client_id": "conf2",
        "client_secret": "s3cr3t2",
        "redirect_uris": ["https://rp2.example.test/cb"],
        "scopes": SCOPES,
        "grant_types": ["authorization_code", "refresh_token"],
        "pkce": "optional",
    },
    "cc": {
        "client_id": "cc",
        "client_secret": "ccs3cr3t",
        "scopes": ["orders.read"],
        "grant_types": ["client_credentials"],
    },
    "pub": {
        "client_id": "pub",
        "redirect_uris": ["https://app.example.test/cb"],
        "javascript_origins": ["https://app.example.test"],
        "scopes": SCOPES,
        "grant_types": ["authorization_code", "refresh_token"],
    },
    "imp": {
        "client_id": "imp",
        "redirect_uris": ["https://imp.example.test/cb"],
        "scopes": SCOPES,
        "grant_types": ["implicit", "authorization_code"],
    },
    "rs": {
        "client_id": "rs",
        "client_secret": "rss3cr3t",
        "scopes": ["orders.read"],
        "grant_types": ["client_credentials"],
        "audiences": ["orders-api"],
    },
    "rc": {
        "client_id": "rc",
        "client_secret": "rcs3cr3t",
        "redirect_uris": ["https://chat.example.test/_oauth/idp"],
        "scopes": SCOPES,
        "grant_types": ["authorization_code", "refresh_token"],
        "pkce": "optional",
    },
    "multi": {
        "client_id": "multi",
        "client_secret": "ms3cr3t",
        "redirect_uris": ["https://rp.example.test/cb", "https://rp.example.test/cb2"],
        "scopes": SCOPES,
        "grant_types": ["authorization_code"],
        "pkce": "optional",
    },
    "cons": {
        "client_id": "cons",
        "client_secret": "conss3cr3t",
        "redirect_uris": ["https://cons.example.test/cb"],
        "scopes": SCOPES,
        "grant_types": ["authorization_code"],
        "pkce": "optional",
        "consent": True,
    },
}
RELAXED_LIMITS = {
    "login_failures_per_account": 100,
    "login_failures_per_ip": 10000,
    "client_failures": 10000,
    "client_failures_per_ip": 10000,
}


def basic(client_id: str, secret: str) -> dict[str, str]:
    """``Authorization: Basic`` with RFC 6749 2.3.1 form-encoding of id and secret."""
    from urllib.parse import quote_plus

    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def as_config(directory: Path, **gateway: Any) -> Path:
    settings: dict[str, Any] = {"issuer": ISSUER, "limits": RELAXED_LIMITS}
    settings.update(gateway)
    return write_conf(directory, gateway=settings, clients=CLIENTS)


@pytest.fixture
def as_conf_path(tmp_path: Path) -> Path:
    return as_config(tmp_path / "conf")


@pytest.fixture
async def as_client(
    as_conf_path: Path, database_url: str, users: dict[str, str]
) -> AsyncIterator[Client]:
    """The gateway as an authorization server, with a browser-like cookie jar."""
    async with serving(as_conf_path, database_url) as client:
        yield client


def location_params(location: str) -> tuple[dict[str, str], dict[str, str]]:
    """(query, fragment) parameters of a redirect."""
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    fragment = {k: v[0] for k, v in parse_qs(parts.fragment, keep_blank_values=True).items()}
    return query, fragment


_FLOW = re.compile(r'name="flow" value="([^"]+)"')


def hidden_flow(html: str) -> str:
    match = _FLOW.search(html)
    assert match, "no flow field in the page"
    return match.group(1)


async def sign_in(
    client: Client,
    params: dict[str, str],
    username: str = "alice",
    password: str | None = None,
) -> ClientResponse:
    """Start an authorization request and answer the built-in login form; the login response."""
    page = await client.get("/oauth2/authorize", params=params, allow_redirects=False)
    assert page.status == 200, await page.text()
    flow = hidden_flow(await page.text())
    return await client.post(
        "/oauth2/login",
        data={"flow": flow, "username": username, "password": password or USERS[username][0]},
        allow_redirects=False,
    )


def authz_params(client_id: str = "conf", **extra: str | None) -> dict[str, str]:
    """SECURITY-CHECKLIST ``AUTHZ(client, extra)``."""
    redirect = {c: cfg.get("redirect_uris", [""])[0] for c, cfg in CLIENTS.items()}
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect[client_id],
        "scope": " ".join(SCOPES),
        "state": "st-" + client_id,
        "nonce": "n-" + client_id,
        "code_challenge": C,
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}
