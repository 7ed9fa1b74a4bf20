"""Token signing choices (issue 3 item 5) and cookie-key rotation (issue 4 item 4): ES256 keys,
HS256 per client, and a new cookie key that logs nobody out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from tests.http.conftest import CLIENTS, ISSUER, RELAXED_LIMITS, basic
from tests.support import Client, GatewayTestServer, write_conf

KEY_1 = {"kid": "k1", "secret": "cookie-key-one-0123456789abcdefghijklmno"}
KEY_2 = {"kid": "k2", "secret": "cookie-key-two-0123456789abcdefghijklmno"}
HS_CLIENT: dict[str, Any] = {
    "client_id": "legacy",
    "client_secret": "legacy-shared-secret-0123456789abcdef",
    "scopes": ["openid", "profile", "offline_access"],
    "grant_types": ["password", "refresh_token"],
    "algorithm": "HS256",
    "javascript_origins": ["https://legacy.example.test"],
}

# The gateway's client, the path of its gateway.json, and what the upstream received.
Started = tuple[Client, Path, list[dict[str, str]]]
Starter = Callable[..., Awaitable[Started]]


@pytest.fixture
async def start(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Starter]:
    """Start the gateway with extra gateway settings; the upstream echoes what it received."""
    servers: list[TestServer] = []
    seen: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append({"authorization": request.headers.get("Authorization", "")})
        return web.json_response({"ok": True})

    upstream_app = web.Application()
    upstream_app.router.add_get("/{tail:.*}", echo)
    upstream = TestServer(upstream_app)
    await upstream.start_server()
    servers.append(upstream)

    async def starter(**gateway: Any) -> Started:
        settings: dict[str, Any] = {
            "issuer": ISSUER,
            "limits": RELAXED_LIMITS,
            "routes": [{"prefix": "/api/", "upstream": str(upstream.make_url("")).rstrip("/")}],
        }
        settings.update(gateway)
        conf = write_conf(
            tmp_path / f"conf{len(servers)}",
            gateway=settings,
            clients={**CLIENTS, "legacy": HS_CLIENT},
        )
        holder = ConfigHolder(load_config(conf, environ={}))
        server = GatewayTestServer(create_app(holder, database_url=database_url))
        await server.start_server()
        servers.append(server)
        client = TestClient(server)
        await client.start_server()
        return client, conf, seen

    yield starter
    for server in reversed(servers):
        await server.close()


async def password_token(client: Client, client_id: str, secret: str) -> ClientResponse:
    response = await client.post(
        "/oauth2/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "Correct-Horse-9",
            "scope": "openid profile offline_access",
        },
        headers=basic(client_id, secret),
    )
    assert response.status == 200, await response.text()
    return response


async def test_es256_keys_sign_and_publish(start: Starter) -> None:
    client, _, _ = await start(tokens={"signing_alg": "ES256"})
    jwks = await (await client.get("/oauth2/jwks")).json()
    es_keys = [k for k in jwks["keys"] if k["kty"] == "EC"]
    assert es_keys
    assert es_keys[-1]["crv"] == "P-256"
    assert es_keys[-1]["alg"] == "ES256"
    body = await (await password_token(client, "conf", "s3cr3t")).json()
    header = jwt.get_unverified_header(body["id_token"])
    assert header["alg"] == "ES256"
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(body["id_token"], jwt.PyJWK(key).key, algorithms=["ES256"], audience="conf")
    assert claims["iss"] == ISSUER
    info = await client.get(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert info.status == 200


async def test_hs256_client_tokens_are_for_apis_sharing_its_secret(start: Starter) -> None:
    """An HS256 client's tokens are signed with its secret, for its own APIs; the gateway never
    accepts them itself (whoever holds the secret could mint one for any user) and sets no
    cookies for such a client."""
    client, _, seen = await start()
    response = await password_token(client, "legacy", HS_CLIENT["client_secret"])
    body = await response.json()
    assert response.headers.getall("Set-Cookie", []) == []
    for token in (body["access_token"], body["id_token"]):
        assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(
        body["access_token"],
        HS_CLIENT["client_secret"],
        algorithms=["HS256"],
        audience=ISSUER,
    )
    assert claims["client_id"] == "legacy"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await client.get("/oauth2/userinfo", headers=bearer)).status == 401
    assert (await client.get("/api/x", headers=bearer)).status == 401
    forged = jwt.encode(
        {**claims, "sub": "someone-else"}, HS_CLIENT["client_secret"], algorithm="HS256"
    )
    assert (await client.get("/api/x", headers={"Authorization": f"Bearer {forged}"})).status == 401
    assert seen == []


async def test_a_new_cookie_key_logs_nobody_out(start: Starter) -> None:
    """Issue 4 item 4: the first key seals, all keys unseal."""
    client, _, seen = await start(cookies={"keys": [KEY_1]})
    signed = await password_token(client, "conf", "s3cr3t")
    cookie = "; ".join(
        f"{name}={morsel.value}" for name, morsel in signed.cookies.items() if morsel.value
    )
    sealed = {n: m.value for n, m in signed.cookies.items() if m.value}
    assert {"__Secure-AT", "__Secure-RT", "SID"} <= set(sealed)
    assert all(v.startswith("k1.") for v in sealed.values())
    assert (await client.get("/api/x", headers={"Cookie": cookie})).status == 200

    rotated, _, _ = await start(cookies={"keys": [KEY_2, KEY_1]})
    assert (await rotated.get("/api/x", headers={"Cookie": cookie})).status == 200
    again = await password_token(rotated, "conf", "s3cr3t")
    resealed = {n: m.value for n, m in again.cookies.items() if m.value}
    assert {"__Secure-AT", "__Secure-RT", "SID"} <= set(resealed)
    assert all(v.startswith("k2.") for v in resealed.values())

    retired, _, _ = await start(cookies={"keys": [KEY_2]})
    gone = await retired.get("/api/x", headers={"Cookie": cookie})
    assert gone.status == 401
    assert len([s for s in seen if s["authorization"]]) == 2
