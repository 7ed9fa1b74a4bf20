"""Refresh tokens: rotation, the grace period, reuse detection, client binding and scope
(SECURITY-CHECKLIST items 47-54), through real HTTP against a real database.

The product rotates every refresh token; a superseded token presented within
``tokens.refresh_grace`` gets the same successor (item 53, "grace window"); after the grace it is
a replay that ends the whole session (items 48-49).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import pytest
from aiohttp import ClientResponse

from tests.http.checklist import TOKEN, VSCHAR, assert_e400, assert_tok200, serving
from tests.http.conftest import ISSUER, V, as_config, authz_params, basic, location_params, sign_in
from tests.support import Client, clock_of

REDIRECTS = {"conf": "https://rp.example.test/cb", "pub": "https://app.example.test/cb"}
FULL_SCOPE = "openid profile email offline_access orders.read"


@pytest.fixture
async def grace_client(
    tmp_path: Path, database_url: str, users: dict[str, str]
) -> AsyncIterator[Client]:
    """The gateway with ``tokens.refresh_grace`` = 1 s (and ``code_ttl`` = 1 s)."""
    path = as_config(tmp_path / "grace", tokens={"refresh_grace": 1, "code_ttl": 1})
    async with serving(path, database_url) as client:
        yield client


# --- assertions and helpers -------------------------------------------------------------------


async def tokens_for(
    client: Client,
    client_id: str = "conf",
    username: str = "alice",
) -> dict[str, Any]:
    """SECURITY-CHECKLIST ``TOKENS(client)``: the code flow through the login form, redeemed."""
    client.session.cookie_jar.clear()  # a fresh sign-in each time, never a silent SSO answer
    login = await sign_in(client, authz_params(client_id), username)
    assert login.status == 303, await login.text()
    code = location_params(login.headers["Location"])[0]["code"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECTS[client_id],
        "code_verifier": V,
    }
    if client_id == "pub":
        data["client_id"] = "pub"
        headers = {}
    else:
        headers = basic("conf", "s3cr3t")
    body = await assert_tok200(await client.post(TOKEN, data=data, headers=headers))
    assert body.get("refresh_token"), body
    return body


async def refresh(
    client: Client,
    token: str | None,
    client_id: str = "conf",
    **extra: str,
) -> ClientResponse:
    """``grant_type=refresh_token`` as ``client_id`` (Basic for confidential clients)."""
    secrets = {"conf": "s3cr3t", "conf2": "s3cr3t2"}
    data = {"grant_type": "refresh_token", **extra}
    if token is not None:
        data["refresh_token"] = token
    headers: dict[str, str] = {}
    if client_id in secrets:
        headers = basic(client_id, secrets[client_id])
    else:
        data["client_id"] = client_id
    return await client.post(TOKEN, data=data, headers=headers)


async def introspect(client: Client, token: str) -> dict[str, Any]:
    """Introspection by ``conf``, the client the tokens of these tests were issued to."""
    resp = await client.post(
        "/oauth2/introspect", data={"token": token}, headers=basic("conf", "s3cr3t")
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def userinfo(client: Client, access_token: str) -> ClientResponse:
    return await client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def verified_id_token(client: Client, token: str) -> dict[str, Any]:
    header = jwt.get_unverified_header(token)
    jwks = await (await client.get("/oauth2/jwks")).json()
    keys = {k["kid"]: k for k in jwks["keys"]}
    assert header.get("kid") in keys
    key = jwt.PyJWK(keys[header["kid"]]).key
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience="conf",
        issuer=ISSUER,
        # The times are checked against the gateway's clock, which a test may have moved on.
        options={"verify_exp": False, "verify_iat": False, "require": ["exp", "iat"]},
    )
    assert claims["iat"] <= clock_of(client).time() < claims["exp"]
    return claims


# --- item 47 ----------------------------------------------------------------------------------


async def test_public_client_refresh_rotates(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 47(a): for ``pub``, TOK200 with a new access token and a new
    refresh token RT2 != RT1 (VSCHAR only), scope unchanged."""
    first = await tokens_for(as_client, "pub")
    body = await assert_tok200(await refresh(as_client, first["refresh_token"], "pub"))
    assert body["access_token"] != first["access_token"]
    assert body["refresh_token"] != first["refresh_token"]
    assert VSCHAR.match(body["refresh_token"])
    assert body["scope"] == first["scope"] == FULL_SCOPE


async def test_confidential_refresh_id_token_rules(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 47(b): a refreshed ID token keeps iss, sub, aud, azp and
    auth_time, has a newer iat and no nonce; the refresh token rotates."""
    first = await tokens_for(as_client, "conf")
    original = await verified_id_token(as_client, first["id_token"])
    assert original["nonce"] == "n-conf"
    clock_of(as_client).advance(1.1)
    body = await assert_tok200(await refresh(as_client, first["refresh_token"]))
    assert body["refresh_token"] != first["refresh_token"]
    assert body["scope"] == FULL_SCOPE
    assert "id_token" in body
    claims = await verified_id_token(as_client, body["id_token"])
    for name in ("iss", "sub", "aud", "azp", "auth_time"):
        assert claims[name] == original[name], name
    assert claims["iat"] > original["iat"]
    assert "nonce" not in claims


# --- the grace period (item 53, product decision) ---------------------------------------------


async def test_superseded_token_within_grace_gets_the_same_successor(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 53 (grace window): RT1 again within the 30 s grace returns the
    same RT2, which stays usable; nothing is revoked."""
    first = await tokens_for(as_client, "conf")
    rt1 = first["refresh_token"]
    rt2 = (await assert_tok200(await refresh(as_client, rt1)))["refresh_token"]
    again = await assert_tok200(await refresh(as_client, rt1))
    assert again["refresh_token"] == rt2
    rt3 = (await assert_tok200(await refresh(as_client, rt2)))["refresh_token"]
    assert rt3 not in (rt1, rt2)


async def test_fifty_parallel_refreshes_converge_on_one_successor(
    as_client: Client,
    db: asyncpg.Connection,
) -> None:
    """SECURITY-CHECKLIST item 53 (grace window) and the issue's requirement: 50 parallel
    refreshes with the same RT all succeed and all return the same new RT; the session has
    exactly one token family holding exactly one live (non-superseded) refresh token, that one."""
    first = await tokens_for(as_client, "conf")
    rt1 = first["refresh_token"]
    responses = await asyncio.wait_for(
        asyncio.gather(*(refresh(as_client, rt1) for _ in range(50))), timeout=120
    )
    bodies = []
    for resp in responses:
        assert resp.status < 500, await resp.text()
    for resp in responses:
        bodies.append(await assert_tok200(resp))
    successors = {body["refresh_token"] for body in bodies}
    assert len(successors) == 1, f"{len(successors)} different refresh tokens"
    (rt2,) = successors
    assert rt2 != rt1
    session = first["session"]
    families = await db.fetch(
        "SELECT id FROM auth.token_family WHERE session_id = $1::uuid", session
    )
    assert len(families) == 1
    live = await db.fetch(
        "SELECT r.token_hash FROM auth.refresh_token r JOIN auth.token_family f "
        "ON f.id = r.family_id WHERE f.session_id = $1::uuid AND r.superseded_at IS NULL",
        session,
    )
    assert [row["token_hash"] for row in live] == [token_hash(rt2)]
    total = await db.fetchval(
        "SELECT count(*) FROM auth.refresh_token WHERE family_id = $1", families[0]["id"]
    )
    assert total == 2
    await assert_tok200(await refresh(as_client, rt2))


# --- items 48-49 (grace of 1 s) ---------------------------------------------------------------


async def test_old_refresh_token_is_dead_after_the_grace(grace_client: Client) -> None:
    """SECURITY-CHECKLIST item 48: after rotation (and the 1 s grace), RT1 is invalid_grant."""
    first = await tokens_for(grace_client, "pub")
    await assert_tok200(await refresh(grace_client, first["refresh_token"], "pub"))
    clock_of(grace_client).advance(2)
    await assert_e400(await refresh(grace_client, first["refresh_token"], "pub"), "invalid_grant")


async def test_reuse_revokes_the_whole_family(grace_client: Client) -> None:
    """SECURITY-CHECKLIST item 49: after RT1 is replayed past the grace, RT2 is invalid_grant,
    RT2 and AT2 introspect as ``{"active": false}`` and userinfo with AT2 is
    ``B401(invalid_token)``."""
    first = await tokens_for(grace_client, "conf")
    second = await assert_tok200(await refresh(grace_client, first["refresh_token"]))
    rt2, at2 = second["refresh_token"], second["access_token"]
    assert (await introspect(grace_client, at2))["active"] is True
    assert (await introspect(grace_client, rt2))["active"] is True
    assert (await userinfo(grace_client, at2)).status == 200
    clock_of(grace_client).advance(2)
    await assert_e400(await refresh(grace_client, first["refresh_token"]), "invalid_grant")

    await assert_e400(await refresh(grace_client, rt2), "invalid_grant")
    assert await introspect(grace_client, rt2) == {"active": False}
    assert await introspect(grace_client, at2) == {"active": False}
    info = await userinfo(grace_client, at2)
    assert info.status == 401, await info.text()
    challenge = info.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer")
    assert 'error="invalid_token"' in challenge


async def test_replay_after_grace_revokes_the_session_row(
    grace_client: Client,
    db: asyncpg.Connection,
) -> None:
    """SECURITY-CHECKLIST item 49 and the issue's requirement: with a 1 s grace, the superseded
    token presented 2 s later is invalid_grant and ``auth.session.revoked_at`` is set."""
    first = await tokens_for(grace_client, "conf")
    session = first["session"]
    await assert_tok200(await refresh(grace_client, first["refresh_token"]))
    before = await db.fetchval("SELECT revoked_at FROM auth.session WHERE id = $1::uuid", session)
    assert before is None
    clock_of(grace_client).advance(2)
    await assert_e400(await refresh(grace_client, first["refresh_token"]), "invalid_grant")
    after = await db.fetchrow(
        "SELECT revoked_at, revoked_reason FROM auth.session WHERE id = $1::uuid", session
    )
    assert after is not None
    assert after["revoked_at"] is not None
    live = await db.fetchval(
        "SELECT count(*) FROM auth.token_family WHERE session_id = $1::uuid AND revoked_at IS NULL",
        session,
    )
    assert live == 0


# --- item 50 ----------------------------------------------------------------------------------


async def test_refresh_token_is_bound_to_its_client(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 50: conf's RT with ``BASIC(conf2)`` and pub's RT with
    ``BASIC(conf)`` are invalid_grant; afterwards both victims' RTs still work (a misuse by
    another client is not a replay)."""
    conf_tokens = await tokens_for(as_client, "conf")
    pub_tokens = await tokens_for(as_client, "pub")
    await assert_e400(
        await refresh(as_client, conf_tokens["refresh_token"], "conf2"), "invalid_grant"
    )
    await assert_e400(
        await refresh(as_client, pub_tokens["refresh_token"], "conf"), "invalid_grant"
    )
    await assert_tok200(await refresh(as_client, conf_tokens["refresh_token"], "conf"))
    await assert_tok200(await refresh(as_client, pub_tokens["refresh_token"], "pub"))


# --- item 51 ----------------------------------------------------------------------------------


async def test_widening_scope_on_refresh_is_invalid_scope(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 51(a): ``scope=openid profile admin:all`` is invalid_scope and
    the RT stays valid."""
    first = await tokens_for(as_client, "conf")
    resp = await refresh(as_client, first["refresh_token"], scope="openid profile admin:all")
    await assert_e400(resp, "invalid_scope")
    body = await assert_tok200(await refresh(as_client, first["refresh_token"]))
    assert body["scope"] == FULL_SCOPE


async def test_narrowing_scope_on_refresh_keeps_the_grant(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 51(b)(c): ``scope=profile`` gives ``"scope":"profile"``; the RT
    it returns, refreshed without scope, gives the original full scope."""
    first = await tokens_for(as_client, "conf")
    narrowed = await assert_tok200(
        await refresh(as_client, first["refresh_token"], scope="profile")
    )
    assert narrowed["scope"] == "profile"
    claims = jwt.decode(narrowed["access_token"], options={"verify_signature": False})
    assert claims["scope"] == "profile"
    full = await assert_tok200(await refresh(as_client, narrowed["refresh_token"]))
    assert full["scope"] == FULL_SCOPE


# --- item 52 ----------------------------------------------------------------------------------


async def test_confidential_refresh_without_secret_is_invalid_client(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 52(a): ``client_id=conf`` without a secret is E401C."""
    first = await tokens_for(as_client, "conf")
    resp = await as_client.post(
        TOKEN,
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": "conf",
        },
    )
    text = await resp.text()
    assert resp.status == 401, text
    # No Basic attempted, so no Basic challenge (RFC 6749 section 5.2).
    assert "WWW-Authenticate" not in resp.headers
    assert resp.headers.get("Cache-Control") == "no-store"
    assert json.loads(text)["error"] == "invalid_client"
    await assert_tok200(await refresh(as_client, first["refresh_token"]))


async def test_refresh_without_token_is_invalid_request(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 52(b)."""
    await assert_e400(await refresh(as_client, None), "invalid_request")


async def test_garbage_refresh_token_is_invalid_grant(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 52(c)."""
    await assert_e400(await refresh(as_client, "garbage"), "invalid_grant")


async def test_revoked_refresh_token_is_invalid_grant(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 52(d): an RT revoked through /oauth2/revoke."""
    first = await tokens_for(as_client, "conf")
    revoke = await as_client.post(
        "/oauth2/revoke",
        data={"token": first["refresh_token"], "token_type_hint": "refresh_token"},
        headers=basic("conf", "s3cr3t"),
    )
    assert revoke.status == 200, await revoke.text()
    await assert_e400(await refresh(as_client, first["refresh_token"]), "invalid_grant")


async def test_refresh_token_past_its_lifetime_is_invalid_grant(
    as_client: Client,
    db: asyncpg.Connection,
) -> None:
    """SECURITY-CHECKLIST item 52(e): an RT past its absolute lifetime (the gateway's clock moved
    past ``expires_at``, which the database recorded); a second before, it still worked."""
    first = await tokens_for(as_client, "conf")
    expires = await db.fetchval(
        "SELECT extract(epoch FROM expires_at) FROM auth.refresh_token WHERE token_hash = $1",
        token_hash(first["refresh_token"]),
    )
    clock = clock_of(as_client)
    clock.advance(float(expires) - clock.time() - 5)
    second = await assert_tok200(await refresh(as_client, first["refresh_token"]))
    clock.advance(6)
    await assert_e400(await refresh(as_client, second["refresh_token"]), "invalid_grant")


# --- item 54 ----------------------------------------------------------------------------------


async def test_password_change_invalidates_refresh_tokens(
    as_client: Client,
    db: asyncpg.Connection,
) -> None:
    """SECURITY-CHECKLIST item 54(b): after bob's password changes, an RT issued before is
    invalid_grant (the change is made with SQL: ``password_changed_at = now()``)."""
    first = await tokens_for(as_client, "conf", username="bob")
    live = await assert_tok200(await refresh(as_client, first["refresh_token"]))
    await db.execute("UPDATE auth.users SET password_changed_at = now() WHERE username = 'bob'")
    second = await tokens_for(as_client, "conf", username="bob")
    await assert_e400(await refresh(as_client, live["refresh_token"]), "invalid_grant")
    # Tokens issued after the change are not affected.
    await assert_tok200(await refresh(as_client, second["refresh_token"]))
