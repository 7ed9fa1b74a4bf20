"""Token revocation (RFC 7009) and introspection (RFC 7662), black-box over HTTP.

SECURITY-CHECKLIST items 117-123. Introspection is answered for the token's own client (``conf``)
and for resource servers whose audience the token names (``rs`` and ``orders-api``); an access
token for another audience is inactive for ``rs`` (item 122(f)).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt

from tests.http.checklist import assert_e401c, serving
from tests.http.conftest import (
    EXCHANGE,
    ISSUER,
    V,
    as_config,
    authz_params,
    basic,
    location_params,
    sign_in,
)
from tests.support import Client, clock_of

RP_CB = "https://rp.example.test/cb"
RP2_CB = "https://rp2.example.test/cb"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
CONF = basic("conf", "s3cr3t")
CONF2 = basic("conf2", "s3cr3t2")
RS = basic("rs", "rss3cr3t")
CONF_WRONG = basic("conf", "wrong")


# --- helpers ----------------------------------------------------------------------------------


async def code_tokens(client: Client, client_id: str = "conf") -> dict[str, Any]:
    """Alice signs in (prompt=login) and the code is redeemed: AT, RT and IDT."""
    login = await sign_in(client, authz_params(client_id, prompt="login"))
    assert login.status == 303, await login.text()
    code = location_params(login.headers["Location"])[0]["code"]
    secret = {"conf": CONF, "conf2": CONF2}[client_id]
    redirect = {"conf": RP_CB, "conf2": RP2_CB}[client_id]
    response = await client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "code_verifier": V,
        },
        headers=secret,
    )
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    assert body["refresh_token"]
    return body


async def refresh(
    client: Client, token: str, headers: dict[str, str] = CONF
) -> aiohttp.ClientResponse:
    return await client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        headers=headers,
    )


async def revoke(
    client: Client, data: dict[str, str], headers: dict[str, str] = CONF
) -> aiohttp.ClientResponse:
    return await client.post("/oauth2/revoke", data=data, headers=headers)


async def introspect(
    client: Client, token: str, headers: dict[str, str] = CONF
) -> aiohttp.ClientResponse:
    return await client.post("/oauth2/introspect", data={"token": token}, headers=headers)


async def introspection(response: aiohttp.ClientResponse) -> dict[str, Any]:
    text = await response.text()
    assert response.status == 200, (response.status, text)
    assert response.content_type == "application/json"
    assert "no-store" in response.headers.get("Cache-Control", "")
    body: dict[str, Any] = json.loads(text)
    return body


async def assert_exactly_inactive(response: aiohttp.ClientResponse) -> None:
    assert await introspection(response) == {"active": False}


async def assert_invalid_grant(response: aiohttp.ClientResponse) -> None:
    body = await response.json()
    assert response.status == 400, body
    assert body["error"] == "invalid_grant"
    assert "access_token" not in body


async def orders_api_token(client: Client, subject: str) -> str:
    """An access token with audience orders-api (token exchange by conf, which may ask for it)."""
    response = await client.post(
        "/oauth2/token",
        data={
            "grant_type": EXCHANGE,
            "subject_token": subject,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": "orders-api",
        },
        headers=CONF,
    )
    body = await response.json()
    assert response.status == 200, body
    token: str = body["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] in ("orders-api", ["orders-api"])
    return token


@contextlib.asynccontextmanager
async def gateway(directory: Path, database_url: str, **settings: Any) -> AsyncIterator[Client]:
    async with serving(as_config(directory, **settings), database_url) as client:
        yield client


async def family_revoked(db: asyncpg.Connection, access_token: str) -> bool:
    gid = jwt.decode(access_token, options={"verify_signature": False})["gid"]
    revoked_at = await db.fetchval(
        "SELECT revoked_at FROM auth.token_family WHERE id = $1::uuid", gid
    )
    return revoked_at is not None


# --- item 117: revoking a refresh token ----------------------------------------------------------


async def test_revoke_refresh_token(as_client: Client, db: asyncpg.Connection) -> None:
    """Item 117: revoke {RT} (hint refresh_token) -> 200; refreshing with it -> invalid_grant;
    SHOULD: the grant's AT is inactive and refused at userinfo too."""
    body = await code_tokens(as_client)
    assert (await introspection(await introspect(as_client, body["access_token"])))["active"]
    response = await revoke(
        as_client, {"token": body["refresh_token"], "token_type_hint": "refresh_token"}
    )
    assert response.status == 200, await response.text()
    assert await family_revoked(db, body["access_token"])
    await assert_invalid_grant(await refresh(as_client, body["refresh_token"]))
    await assert_exactly_inactive(await introspect(as_client, body["access_token"]))
    info = await as_client.get(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert info.status == 401


# --- item 118: revoking an access token with a wrong hint -------------------------------------


async def test_revoke_access_token_with_wrong_hint(as_client: Client) -> None:
    """Item 118: revoke {AT} with token_type_hint=refresh_token -> 200; the AT is then inactive
    at introspection and B401(invalid_token) at userinfo."""
    body = await code_tokens(as_client)
    at = body["access_token"]
    info = await as_client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {at}"})
    assert info.status == 200
    response = await revoke(as_client, {"token": at, "token_type_hint": "refresh_token"})
    assert response.status == 200, await response.text()
    await assert_exactly_inactive(await introspect(as_client, at))
    info = await as_client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {at}"})
    assert info.status == 401
    assert 'error="invalid_token"' in info.headers["WWW-Authenticate"]


# --- item 119: edge cases ------------------------------------------------------------------------


async def test_revoke_unknown_token_is_200(as_client: Client) -> None:
    """Item 119(a): token=not-a-real-token -> 200."""
    response = await revoke(as_client, {"token": "not-a-real-token"})
    assert response.status == 200, await response.text()


async def test_revoke_without_token_is_invalid_request(as_client: Client) -> None:
    """Item 119(b): an empty body -> E400(invalid_request)."""
    response = await as_client.post(
        "/oauth2/revoke",
        data=b"",
        headers={**CONF, "Content-Type": "application/x-www-form-urlencoded"},
    )
    body = await response.json()
    assert response.status == 400, body
    assert body["error"] == "invalid_request"
    assert response.headers["Cache-Control"] == "no-store"


async def test_revoke_with_wrong_client_secret(as_client: Client) -> None:
    """Item 119(c): BASIC(conf,wrong) -> E401C, and the RT stays valid."""
    body = await code_tokens(as_client)
    await assert_e401c(await revoke(as_client, {"token": body["refresh_token"]}, CONF_WRONG))
    assert (await refresh(as_client, body["refresh_token"])).status == 200


async def test_revoke_with_unknown_hint(as_client: Client) -> None:
    """Item 119(d): token_type_hint=foo -> 200 and the RT is revoked (the hint is ignored)."""
    body = await code_tokens(as_client)
    response = await revoke(as_client, {"token": body["refresh_token"], "token_type_hint": "foo"})
    assert response.status == 200, await response.text()
    await assert_invalid_grant(await refresh(as_client, body["refresh_token"]))


async def test_revoke_by_get_is_refused(as_client: Client) -> None:
    """Item 119(e): GET /oauth2/revoke?token={RT} -> 405 (or 400) and the RT still works."""
    body = await code_tokens(as_client)
    response = await as_client.get(
        "/oauth2/revoke", params={"token": body["refresh_token"]}, headers=CONF
    )
    assert response.status in (405, 400)
    assert (await refresh(as_client, body["refresh_token"])).status == 200


async def test_revoke_with_token_in_query_is_refused(as_client: Client) -> None:
    """Items 119 and 23: POST /oauth2/revoke?token={RT} with an empty body does not revoke."""
    body = await code_tokens(as_client)
    response = await as_client.post(
        "/oauth2/revoke",
        params={"token": body["refresh_token"]},
        data={},
        headers=CONF,
    )
    assert response.status == 400
    assert (await refresh(as_client, body["refresh_token"])).status == 200


# --- item 120: another client's token ------------------------------------------------------------


async def test_cannot_revoke_another_clients_token(
    as_client: Client, db: asyncpg.Connection
) -> None:
    """Item 120: conf2 revoking conf's RT -> 400 unauthorized_client; the token stays valid
    (conf can still refresh with it, the family is not revoked)."""
    body = await code_tokens(as_client, "conf")
    response = await revoke(as_client, {"token": body["refresh_token"]}, CONF2)
    error = await response.json()
    assert response.status == 400, error
    assert error["error"] == "unauthorized_client"
    assert not await family_revoked(db, body["access_token"])
    refreshed = await refresh(as_client, body["refresh_token"])
    assert refreshed.status == 200, await refreshed.text()


async def test_cannot_revoke_another_clients_access_token(as_client: Client) -> None:
    """Item 120: the same for an access token: conf2 cannot revoke conf's AT."""
    body = await code_tokens(as_client, "conf")
    response = await revoke(as_client, {"token": body["access_token"]}, CONF2)
    assert response.status == 400
    assert (await response.json())["error"] == "unauthorized_client"
    assert (await introspection(await introspect(as_client, body["access_token"])))["active"]


# --- item 121: introspection requires authorisation ----------------------------------------------


async def test_introspection_without_client_auth(as_client: Client) -> None:
    """Item 121(a): no client authentication -> E401C, no token metadata."""
    at = (await code_tokens(as_client))["access_token"]
    response = await as_client.post("/oauth2/introspect", data={"token": at})
    body = await response.json()
    assert response.status == 401, body
    assert body["error"] == "invalid_client"
    assert response.headers["Cache-Control"] == "no-store"
    assert "WWW-Authenticate" in response.headers
    assert "active" not in body


async def test_introspection_with_wrong_secret(as_client: Client) -> None:
    """Item 121(b): BASIC(conf,wrong) -> E401C."""
    at = (await code_tokens(as_client))["access_token"]
    await assert_e401c(await introspect(as_client, at, CONF_WRONG))


async def test_introspection_with_garbage_bearer(as_client: Client) -> None:
    """Item 121(c): Authorization: Bearer garbage (bearer-authorised introspection is not
    offered) -> 401 and no token metadata."""
    at = (await code_tokens(as_client))["access_token"]
    response = await introspect(as_client, at, {"Authorization": "Bearer garbage"})
    body = await response.json()
    assert response.status == 401, body
    assert "active" not in body
    assert "sub" not in body


async def test_introspection_by_public_client_is_refused(as_client: Client) -> None:
    """Item 121: a public client (no secret) may not introspect -> 4xx without metadata."""
    at = (await code_tokens(as_client))["access_token"]
    response = await as_client.post("/oauth2/introspect", data={"token": at, "client_id": "pub"})
    body = await response.json()
    assert response.status in (400, 401), body
    assert "active" not in body


# --- item 122: active and inactive tokens --------------------------------------------------------


async def test_introspect_active_access_token_for_resource_server(
    as_client: Client, users: dict[str, str]
) -> None:
    """Item 122(a): rs introspects an AT with audience orders-api (hint access_token) ->
    200 active with scope, client_id conf, sub, exp, iat, token_type Bearer, iss, aud;
    Cache-Control: no-store."""
    body = await code_tokens(as_client)
    token = await orders_api_token(as_client, body["access_token"])
    response = await as_client.post(
        "/oauth2/introspect",
        data={"token": token, "token_type_hint": "access_token"},
        headers=RS,
    )
    info = await introspection(response)
    assert info["active"] is True
    assert info["client_id"] == "conf"
    assert info["sub"] == users["alice"]
    assert info["iss"] == ISSUER
    assert info["token_type"].lower() == "bearer"
    assert info["aud"] in ("orders-api", ["orders-api"])
    assert set(info["scope"].split()) <= {
        "openid",
        "profile",
        "email",
        "offline_access",
        "orders.read",
    }
    assert info["scope"]
    assert isinstance(info["exp"], int)
    assert info["exp"] > time.time()
    assert isinstance(info["iat"], int)
    assert info["iat"] <= info["exp"]


async def test_introspect_refresh_token(as_client: Client, users: dict[str, str]) -> None:
    """Item 122(b): {RT} without a hint -> 200 active with metadata, for the client the refresh
    token belongs to; to any other client (here the resource server ``rs``) it is inactive:
    a refresh token is never used at a resource server, and its metadata is its client's."""
    body = await code_tokens(as_client)
    await assert_exactly_inactive(await introspect(as_client, body["refresh_token"], RS))
    info = await introspection(await introspect(as_client, body["refresh_token"], CONF))
    assert info["active"] is True
    assert info["client_id"] == "conf"
    assert info["sub"] == users["alice"]
    assert info["exp"] > time.time()


async def test_introspect_expired_access_token(
    tmp_path: Path, database_url: str, users: dict[str, str]
) -> None:
    """Item 122(c): an AT past its exp (tokens.access_ttl=1, then 2 s) -> exactly
    {"active": false}."""
    async with gateway(tmp_path / "short", database_url, tokens={"access_ttl": 1}) as client:
        body = await code_tokens(client)
        assert body["expires_in"] == 1
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        clock = clock_of(client)
        clock.advance(claims["iat"] - clock.time())  # as fresh as issued, however busy the host
        assert (await introspection(await introspect(client, body["access_token"])))["active"]
        clock.advance(2)
        assert claims["exp"] < clock_of(client).time()
        await assert_exactly_inactive(await introspect(client, body["access_token"]))


async def test_introspect_revoked_access_token(as_client: Client) -> None:
    """Item 122(d): a revoked AT -> exactly {"active": false}, for conf and for rs."""
    body = await code_tokens(as_client)
    token = await orders_api_token(as_client, body["access_token"])
    assert (await introspection(await introspect(as_client, token, RS)))["active"]
    assert (await revoke(as_client, {"token": body["access_token"]})).status == 200
    await assert_exactly_inactive(await introspect(as_client, body["access_token"]))
    await assert_exactly_inactive(await introspect(as_client, token, RS))


async def test_introspect_garbage(as_client: Client) -> None:
    """Item 122(e): token=garbage -> exactly {"active": false}."""
    await assert_exactly_inactive(await introspect(as_client, "garbage", RS))
    await assert_exactly_inactive(await introspect(as_client, "garbage"))


async def test_introspect_token_for_another_audience(as_client: Client) -> None:
    """Item 122(f): rs introspects an AT that does not name its audience (conf's AT for the
    issuer audience) -> exactly {"active": false}; conf itself sees it active (control)."""
    at = (await code_tokens(as_client))["access_token"]
    assert (await introspection(await introspect(as_client, at)))["active"] is True
    await assert_exactly_inactive(await introspect(as_client, at, RS))


async def test_introspect_id_token_is_inactive(as_client: Client) -> None:
    """Items 122 and 135: an ID token is not an access token -> exactly {"active": false}."""
    body = await code_tokens(as_client)
    await assert_exactly_inactive(await introspect(as_client, body["id_token"]))


# --- item 123: malformed introspection requests --------------------------------------------------


async def test_introspection_without_token(as_client: Client) -> None:
    """Item 123: an empty body -> E400(invalid_request)."""
    response = await as_client.post(
        "/oauth2/introspect",
        data=b"",
        headers={**RS, "Content-Type": "application/x-www-form-urlencoded"},
    )
    body = await response.json()
    assert response.status == 400, body
    assert body["error"] == "invalid_request"
    assert response.headers["Cache-Control"] == "no-store"
    assert "active" not in body


async def test_introspection_by_get(as_client: Client) -> None:
    """Item 123: GET /oauth2/introspect?token={AT} -> 405 (or 400), no token metadata."""
    at = (await code_tokens(as_client))["access_token"]
    response = await as_client.get("/oauth2/introspect", params={"token": at}, headers=RS)
    assert response.status in (405, 400)
    assert "active" not in await response.text()
