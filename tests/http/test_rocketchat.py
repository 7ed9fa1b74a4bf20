"""Rocket.Chat's custom OAuth integration against client ``rc``, request for request as
Rocket.Chat's ``CustomOAuth`` sends them: a base64-JSON state, no nonce, no PKCE; the token leg
in "Payload" and "Header" modes; the identity leg with a Bearer header.

SECURITY-CHECKLIST items 142-144.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
import pytest
from bs4 import BeautifulSoup
from yarl import URL

from tests.http.conftest import ISSUER, basic, location_params
from tests.support import USERS, Client

RC_CB = "https://chat.example.test/_oauth/idp"
RC_STATE = (
    "eyJsb2dpblN0eWxlIjoicmVkaXJlY3QiLCJjcmVkZW50aWFsVG9rZW4iOiJWZjNrUTh4Mm5ON3BSMXNUNHVXNnlaOW"
    "FCMmNENWVGOGdIMWpLNG1QNyIsImlzQ29yZG92YSI6ZmFsc2UsInJlZGlyZWN0VXJsIjoiaHR0cHM6Ly9jaGF0LmV4"
    "YW1wbGUudGVzdC9ob21lIn0="
)
METEOR = {"Accept": "application/json", "User-Agent": "Meteor"}


def authorize_url(client: Client) -> URL:
    """The URL exactly as CustomOAuth.ts builds it (the state's '=' as %3D, spaces as %20)."""
    query = (
        f"client_id=rc&redirect_uri={quote(RC_CB, safe='')}&response_type=code"
        f"&state={quote(RC_STATE, safe='')}&scope=openid%20profile%20email"
    )
    return URL(f"{client.make_url('/oauth2/authorize')}?{query}", encoded=True)


async def rc_code(client: Client) -> str:
    """Authorize leg for a browser without a session: login form, then the callback."""
    page = await client.session.get(authorize_url(client), allow_redirects=False)
    html = await page.text()
    assert page.status == 200, html[:300]
    form = BeautifulSoup(html, "html.parser").find("form")
    assert form is not None
    fields = {
        str(i["name"]): str(i.get("value", ""))
        for i in form.find_all("input", attrs={"type": "hidden"})
    }
    login = await client.post(
        str(form["action"]),
        data={**fields, "username": "alice", "password": USERS["alice"][0]},
        allow_redirects=False,
    )
    assert login.status == 303, await login.text()
    query = callback_query(login)
    return query["code"]


def callback_query(response: aiohttp.ClientResponse) -> dict[str, str]:
    location = response.headers["Location"]
    assert location.startswith(RC_CB + "?"), location
    query, fragment = location_params(location)
    assert not fragment
    return query


async def token_leg(client: Client, code: str, mode: str) -> aiohttp.ClientResponse:
    data = {
        "code": code,
        "redirect_uri": RC_CB,
        "grant_type": "authorization_code",
        "state": RC_STATE,
    }
    headers = dict(METEOR)
    if mode == "payload":
        data.update(client_secret="rcs3cr3t", client_id="rc")
    else:
        headers.update(basic("rc", "rcs3cr3t"))
    return await client.post("/oauth2/token", data=data, headers=headers)


def check_tok200(response: aiohttp.ClientResponse, body: dict[str, Any]) -> None:
    assert response.status == 200, body
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert body["access_token"]
    assert body["token_type"].lower() == "bearer"
    assert isinstance(body["expires_in"], int)
    assert body["expires_in"] > 0


# --- item 142: authorize leg ----------------------------------------------------------------------


async def test_authorize_leg_keeps_the_base64_json_state(as_client: Client) -> None:
    """Item 142: the CustomOAuth URL (no nonce, no PKCE) -> login page, then
    RQ(code, state) at https://chat.example.test/_oauth/idp with the 204-character state
    byte-identical after decoding."""
    assert len(RC_STATE) == 204
    page = await as_client.session.get(authorize_url(as_client), allow_redirects=False)
    html = await page.text()
    assert page.status == 200, html[:300]
    form = BeautifulSoup(html, "html.parser").find("form")
    assert form is not None
    fields = {
        str(i["name"]): str(i.get("value", ""))
        for i in form.find_all("input", attrs={"type": "hidden"})
    }
    login = await as_client.post(
        "/oauth2/login",
        data={**fields, "username": "alice", "password": USERS["alice"][0]},
        allow_redirects=False,
    )
    assert login.status == 303
    query = callback_query(login)
    assert query["state"] == RC_STATE
    assert query["code"]
    assert query["iss"] == ISSUER
    assert json.loads(base64.b64decode(query["state"]))["loginStyle"] == "redirect"


async def test_authorize_leg_with_session_redirects_at_once(as_client: Client) -> None:
    """Item 142: alice already signed in (and rc asks no consent) -> 302 straight back to
    Rocket.Chat with code and the identical state."""
    await rc_code(as_client)
    response = await as_client.session.get(authorize_url(as_client), allow_redirects=False)
    assert response.status == 302
    query = callback_query(response)
    assert query["state"] == RC_STATE
    assert query["code"]


# --- item 143: token leg -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["payload", "header"])
async def test_token_leg(as_client: Client, mode: str) -> None:
    """Item 143(a) "Payload" (client_id/client_secret in the body) and (b) "Header" (Basic):
    the extra state parameter is ignored; TOK200 with numeric expires_in, Bearer, an id_token
    for scope openid (no nonce claim, none was sent) and a refresh token only if offline was
    asked for."""
    code = await rc_code(as_client)
    response = await token_leg(as_client, code, mode)
    body = await response.json()
    check_tok200(response, body)
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["aud"] in ("rc", ["rc"])
    assert claims["iss"] == ISSUER
    assert "nonce" not in claims
    assert set(body.get("scope", "openid profile email").split()) == {"openid", "profile", "email"}
    assert "refresh_token" not in body  # offline_access was not requested


@pytest.mark.parametrize("mode", ["payload", "header"])
async def test_token_leg_with_wrong_secret(as_client: Client, mode: str) -> None:
    """Item 143 (control): the same legs with a wrong secret -> 401 invalid_client, no token."""
    code = await rc_code(as_client)
    data = {"code": code, "redirect_uri": RC_CB, "grant_type": "authorization_code"}
    headers = dict(METEOR)
    if mode == "payload":
        data.update(client_secret="wrong", client_id="rc")
    else:
        headers.update(basic("rc", "wrong"))
    response = await as_client.post("/oauth2/token", data=data, headers=headers)
    body = await response.json()
    assert response.status == 401, body
    assert body["error"] == "invalid_client"
    assert "access_token" not in body


# --- item 144: identity leg ----------------------------------------------------------------------


async def test_identity_leg_with_bearer_header(as_client: Client, users: dict[str, str]) -> None:
    """Item 144(a): GET /oauth2/userinfo with Bearer, Accept JSON, User-Agent Meteor -> 200 JSON
    with sub, preferred_username, email and name (what Rocket.Chat maps); not cacheable."""
    code = await rc_code(as_client)
    token = (await (await token_leg(as_client, code, "header")).json())["access_token"]
    response = await as_client.get(
        "/oauth2/userinfo", headers={**METEOR, "Authorization": f"Bearer {token}"}
    )
    body = await response.json()
    assert response.status == 200, body
    assert response.content_type == "application/json"
    assert body["sub"] == users["alice"]
    assert body["preferred_username"] == "alice"
    assert body["email"] == USERS["alice"][1]
    assert body["name"] == USERS["alice"][2]
    cache = response.headers.get("Cache-Control", "")
    assert "private" in cache or "no-store" in cache


async def test_identity_leg_with_query_token_is_refused(as_client: Client) -> None:
    """Item 144(b), product decision (query tokens are not enabled): ?access_token= -> B401(-),
    a Bearer challenge without error, and no claims (the integration guide says "Header")."""
    code = await rc_code(as_client)
    token = (await (await token_leg(as_client, code, "payload")).json())["access_token"]
    response = await as_client.get(
        "/oauth2/userinfo", params={"access_token": token}, headers=METEOR
    )
    assert response.status == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.lower().startswith("bearer")
    assert "error=" not in challenge
    assert "alice" not in await response.text()
