"""A real OAuth client library against the gateway: authlib's ``AsyncOAuth2Client`` completes the
authorization code flow with PKCE (S256) through the built-in login page and reads UserInfo.

The gateway runs in aiohttp's ``TestServer`` on 127.0.0.1 with the configuration of
``tests/http/conftest.py``; a small httpx "browser" follows the authorization URL, fills in the
login form and hands the callback URL to authlib. The endpoints are taken from discovery (their
paths, on the test server's origin, since the issuer is a fictitious https host).

SECURITY-CHECKLIST items 1, 9(b), 25, 55, 110, 113 and 115 as a client library sees them.
"""

from __future__ import annotations

import asyncio
import secrets
import warnings
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import jwt
import pytest
from authlib.integrations.base_client import OAuthError

with warnings.catch_warnings():
    # authlib announces a rename of its httpx module on import; nothing to act on.
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client
from bs4 import BeautifulSoup

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from tests.http.conftest import ISSUER, as_config
from tests.support import USERS, GatewayTestServer

CLIENTS = {
    "conf": {
        "client_id": "conf",
        "client_secret": "s3cr3t",
        "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uri": "https://rp.example.test/cb",
    },
    "pub": {
        "client_id": "pub",
        "token_endpoint_auth_method": "none",
        "redirect_uri": "https://app.example.test/cb",
    },
}
TIMEOUT = httpx.Timeout(20.0)


@pytest.fixture
async def base_url(
    tmp_path: Path,
    database_url: str,
    users: dict[str, str],
) -> AsyncIterator[str]:
    """The gateway (as_client's configuration) listening on http://127.0.0.1:<port>."""
    holder = ConfigHolder(load_config(as_config(tmp_path / "conf"), environ={}))
    server = GatewayTestServer(create_app(holder, database_url=database_url), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


class Browser:
    """An httpx client that keeps the gateway's cookies like a browser on the real https origin
    would (the cookies are ``Secure``, which httpx would not send over the test's plain http)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.AsyncClient(follow_redirects=False, timeout=TIMEOUT)
        self.cookies: dict[str, str] = {}
        self.attributes: dict[str, dict[str, Any]] = {}

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = await self.http.request(method, url, headers=headers, **kwargs)
        for header in response.headers.get_list("set-cookie"):
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                self.attributes[name] = dict(morsel)
                if morsel.value and morsel["max-age"] != "0":
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return response

    async def close(self) -> None:
        await self.http.aclose()


async def discover(base_url: str) -> dict[str, str]:
    """Endpoint URLs from discovery, moved onto the test server's origin."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.get(f"{base_url}/.well-known/openid-configuration")
    assert response.status_code == 200
    doc = response.json()
    assert doc["issuer"] == ISSUER
    assert "S256" in doc["code_challenge_methods_supported"]
    return {
        name: base_url + urlsplit(doc[name]).path
        for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")
    }


def oauth_client(client_id: str) -> AsyncOAuth2Client:
    settings = CLIENTS[client_id]
    return AsyncOAuth2Client(
        client_id=settings["client_id"],
        client_secret=settings.get("client_secret"),
        token_endpoint_auth_method=settings["token_endpoint_auth_method"],
        scope="openid profile email offline_access",
        redirect_uri=settings["redirect_uri"],
        code_challenge_method="S256",
        timeout=TIMEOUT,
    )


async def sign_in_through_form(browser: Browser, authorization_url: str) -> httpx.Response:
    """Follow the authorization URL to the login page and submit it as alice."""
    page = await browser.request("GET", authorization_url)
    assert page.status_code == 200, page.text[:300]
    assert "text/html" in page.headers["content-type"]
    soup = BeautifulSoup(page.text, "html.parser")
    form = soup.find("form")
    assert form is not None
    assert str(form.get("method")).lower() == "post"
    fields = {
        str(i["name"]): str(i.get("value", ""))
        for i in form.find_all("input")
        if i.get("name") and i.get("type") != "password"
    }
    assert {"flow", "username"} <= set(fields)
    assert form.find("input", attrs={"name": "password", "type": "password"}) is not None
    fields.update(username="alice", password=USERS["alice"][0])
    assert "__Host-GW-CSRF" in browser.cookies
    return await browser.request(
        "POST", urljoin(authorization_url, str(form["action"])), data=fields
    )


async def verify_id_token(jwks_uri: str, token: str, client_id: str) -> dict[str, Any]:
    jwks = jwt.PyJWKClient(jwks_uri, cache_keys=False)
    key = await asyncio.to_thread(jwks.get_signing_key_from_jwt, token)
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=client_id, issuer=ISSUER
    )
    return claims


@pytest.mark.parametrize("client_id", ["conf", "pub"])
async def test_authlib_code_flow_with_pkce(base_url: str, client_id: str) -> None:
    """authlib builds the request (S256 challenge, state, nonce); the login form answers 303
    with code, the same state and iss; authlib redeems the code with its verifier; the
    id_token verifies against the JWKS; authlib's client reads UserInfo with the token. A
    second authorization with prompt=none and the same cookies gets a code without any page,
    which authlib redeems too."""
    endpoints = await discover(base_url)
    browser = Browser(base_url)
    client = oauth_client(client_id)
    try:
        verifier = secrets.token_urlsafe(48)
        nonce = secrets.token_urlsafe(16)
        url, state = client.create_authorization_url(
            endpoints["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        query = parse_qs(urlsplit(url).query)
        assert query["code_challenge_method"] == ["S256"]
        assert query["code_challenge"]

        login = await sign_in_through_form(browser, url)
        assert login.status_code == 303, login.text[:300]
        callback = login.headers["location"]
        assert callback.startswith(CLIENTS[client_id]["redirect_uri"] + "?")
        returned = parse_qs(urlsplit(callback).query)
        assert returned["state"] == [state]
        assert returned["iss"] == [ISSUER]
        assert browser.attributes["SID"]["secure"]
        assert browser.attributes["SID"]["httponly"]

        token = await client.fetch_token(
            endpoints["token_endpoint"],
            authorization_response=callback,
            code_verifier=verifier,
        )
        assert token["token_type"].lower() == "bearer"
        assert token["access_token"]
        assert token["refresh_token"]
        claims = await verify_id_token(endpoints["jwks_uri"], token["id_token"], client_id)
        assert claims["nonce"] == nonce

        info = await client.get(endpoints["userinfo_endpoint"])
        assert info.status_code == 200, info.text
        profile = info.json()
        assert profile["sub"] == claims["sub"]
        assert profile["preferred_username"] == "alice"
        assert profile["email"] == USERS["alice"][1]

        # SSO: the same browser, prompt=none -> a code with no page at all.
        verifier2 = secrets.token_urlsafe(48)
        url2, state2 = client.create_authorization_url(
            endpoints["authorization_endpoint"], code_verifier=verifier2, prompt="none"
        )
        again = await browser.request("GET", url2)
        assert again.status_code == 302, again.text[:300]
        assert "text/html" not in again.headers.get("content-type", "")
        callback2 = again.headers["location"]
        returned2 = parse_qs(urlsplit(callback2).query)
        assert returned2["state"] == [state2]
        assert returned2["code"]
        token2 = await client.fetch_token(
            endpoints["token_endpoint"],
            authorization_response=callback2,
            code_verifier=verifier2,
        )
        assert token2["access_token"] != token["access_token"]
        claims2 = await verify_id_token(endpoints["jwks_uri"], token2["id_token"], client_id)
        assert claims2["sub"] == claims["sub"]
    finally:
        await client.aclose()
        await browser.close()


async def test_authlib_code_flow_with_wrong_verifier_fails(base_url: str) -> None:
    """Control: authlib with a verifier that does not match the challenge gets invalid_grant
    (so the successful exchange above really depends on PKCE)."""
    endpoints = await discover(base_url)
    browser = Browser(base_url)
    client = oauth_client("pub")
    try:
        url, _ = client.create_authorization_url(
            endpoints["authorization_endpoint"], code_verifier=secrets.token_urlsafe(48)
        )
        login = await sign_in_through_form(browser, url)
        assert login.status_code == 303
        with pytest.raises(OAuthError, match="invalid_grant"):
            await client.fetch_token(
                endpoints["token_endpoint"],
                authorization_response=login.headers["location"],
                code_verifier=secrets.token_urlsafe(48),
            )
        assert client.token is None
    finally:
        await client.aclose()
        await browser.close()
