"""The authorization_code, password and client_credentials grants and the token side of PKCE
(SECURITY-CHECKLIST items 25-37, 56-58 and 61(b)), through real HTTP against a real database."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse

from tests.http.checklist import (
    TOKEN,
    VSCHAR,
    assert_e400,
    assert_e401c,
    assert_tok200,
    serving,
)
from tests.http.conftest import (
    CLIENTS,
    ISSUER,
    RELAXED_LIMITS,
    SCOPES,
    V2,
    V,
    authz_params,
    basic,
    location_params,
    sign_in,
)
from tests.support import Client, clock_of, write_conf

RP_CB = "https://rp.example.test/cb"
APP_CB = "https://app.example.test/cb"
PLAIN = {
    "client_id": "plain",
    "client_secret": "plains3cr3t",
    "redirect_uris": ["https://plain.example.test/cb"],
    "scopes": SCOPES,
}


def conf_dir(directory: Path, **gateway: Any) -> Path:
    """The checklist configuration plus ``plain``, a client registered without grant_types."""
    settings: dict[str, Any] = {"issuer": ISSUER, "limits": RELAXED_LIMITS, **gateway}
    return write_conf(directory, gateway=settings, clients={**CLIENTS, "plain": PLAIN})


@pytest.fixture
def as_conf_path(tmp_path: Path) -> Path:
    return conf_dir(tmp_path / "conf")


@pytest.fixture
async def short_client(
    tmp_path: Path, database_url: str, users: dict[str, str]
) -> AsyncIterator[Client]:
    """The gateway with ``tokens.code_ttl`` = 1 s."""
    path = conf_dir(tmp_path / "short", tokens={"code_ttl": 1, "refresh_grace": 1})
    async with serving(path, database_url) as client:
        yield client


# --- helpers ----------------------------------------------------------------------------------


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def get_code(
    client: Client,
    client_id: str = "conf",
    username: str = "alice",
    **extra: str | None,
) -> str:
    """SECURITY-CHECKLIST ``AUTHZ(client, extra)``: a code through the built-in login form."""
    client.session.cookie_jar.clear()  # a fresh sign-in each time, never a silent SSO answer
    login = await sign_in(client, authz_params(client_id, **extra), username)
    assert login.status == 303, await login.text()
    query, _ = location_params(login.headers["Location"])
    assert "code" in query, login.headers["Location"]
    return query["code"]


async def redeem(
    client: Client,
    code: str,
    *,
    auth: tuple[str, str] | None = ("conf", "s3cr3t"),
    redirect_uri: str | None = RP_CB,
    verifier: str | None = V,
    **extra: str,
) -> ClientResponse:
    data = {"grant_type": "authorization_code", "code": code, **extra}
    if redirect_uri is not None:
        data["redirect_uri"] = redirect_uri
    if verifier is not None:
        data["code_verifier"] = verifier
    headers = basic(*auth) if auth else {}
    return await client.post(TOKEN, data=data, headers=headers)


async def jwks_key(client: Client, token: str) -> Any:
    """The public key of ``token``'s ``kid`` from /oauth2/jwks (fails when the kid is absent)."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    jwks = await (await client.get("/oauth2/jwks")).json()
    keys = {k["kid"]: k for k in jwks["keys"]}
    assert header.get("kid") in keys, (header, list(keys))
    return jwt.PyJWK(keys[header["kid"]]).key


async def userinfo(client: Client, access_token: str) -> ClientResponse:
    return await client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {access_token}"})


async def introspect(
    client: Client,
    token: str,
    auth: tuple[str, str] = ("conf", "s3cr3t"),
) -> dict[str, Any]:
    resp = await client.post("/oauth2/introspect", data={"token": token}, headers=basic(*auth))
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def password(
    client: Client,
    auth: tuple[str, str] = ("conf", "s3cr3t"),
    **params: str,
) -> ClientResponse:
    return await client.post(TOKEN, data={"grant_type": "password", **params}, headers=basic(*auth))


# --- authorization_code: items 25-32 ----------------------------------------------------------


async def test_code_happy_path_with_verified_id_token(
    as_client: Client,
    users: dict[str, str],
) -> None:
    """SECURITY-CHECKLIST item 25: TOK200, a refresh token (offline_access), and an RS256 ID
    token whose kid is in the JWKS, verified with iss, aud, exp, iat, sub and nonce."""
    code = await get_code(as_client, "conf", nonce="n-25")
    body = await assert_tok200(await redeem(as_client, code))
    assert body.get("refresh_token")
    assert VSCHAR.match(body["refresh_token"])
    idt = body["id_token"]
    key = await jwks_key(as_client, idt)
    claims = jwt.decode(idt, key, algorithms=["RS256"], audience="conf", issuer=ISSUER)
    now = time.time()
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert "conf" in aud
    assert claims["exp"] > now
    assert abs(claims["iat"] - now) <= 300
    assert claims["sub"] == users["alice"]
    assert claims["nonce"] == "n-25"


async def test_missing_code_is_invalid_request(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 26(a)."""
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "authorization_code", "redirect_uri": RP_CB},
        headers=basic("conf", "s3cr3t"),
    )
    await assert_e400(resp, "invalid_request")


async def test_unknown_code_is_invalid_grant(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 26(b)."""
    resp = await redeem(as_client, "invalid", verifier=None)
    await assert_e400(resp, "invalid_grant")


async def test_code_replay_is_rejected_and_revokes_first_tokens(as_client: Client) -> None:
    """SECURITY-CHECKLIST items 27(a) and 28: the same token request again is
    ``E400(invalid_grant)``; the first redemption's AT then fails at userinfo
    (``B401(invalid_token)``) and introspection, and its RT is ``invalid_grant``."""
    code = await get_code(as_client, "conf")
    first = await assert_tok200(await redeem(as_client, code))
    access, refresh = first["access_token"], first["refresh_token"]
    assert (await userinfo(as_client, access)).status == 200
    assert (await introspect(as_client, access))["active"] is True

    await assert_e400(await redeem(as_client, code), "invalid_grant")

    info = await userinfo(as_client, access)
    assert info.status == 401, await info.text()
    challenge = info.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer")
    assert 'error="invalid_token"' in challenge
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": refresh},
        headers=basic("conf", "s3cr3t"),
    )
    await assert_e400(resp, "invalid_grant")
    assert await introspect(as_client, access) == {"active": False}
    assert await introspect(as_client, refresh) == {"active": False}


async def test_code_redeemed_by_another_client_is_invalid_grant(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 29(a): a code of ``conf`` redeemed with ``BASIC(conf2)``."""
    code = await get_code(as_client, "conf")
    resp = await redeem(as_client, code, auth=("conf2", "s3cr3t2"))
    await assert_e400(resp, "invalid_grant")


async def test_public_client_code_binding(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 29(b)-(d): a code of ``pub`` without any client_id is E401C
    (with the Basic challenge: no client authentication at all), with ``client_id=imp``
    invalid_grant, with ``client_id=pub`` TOK200."""
    code = await get_code(as_client, "pub")
    anonymous = await redeem(as_client, code, auth=None, redirect_uri=APP_CB)
    await assert_e401c(anonymous, anonymous=True)
    other = await redeem(as_client, code, auth=None, redirect_uri=APP_CB, client_id="imp")
    await assert_e400(other, "invalid_grant")
    owner = await redeem(as_client, code, auth=None, redirect_uri=APP_CB, client_id="pub")
    await assert_tok200(owner)


@pytest.mark.parametrize(
    ("redirect_uri", "errors"),
    [
        pytest.param("https://rp.example.test/cb2", ("invalid_grant",), id="a-other-uri"),
        pytest.param(None, ("invalid_grant", "invalid_request"), id="b-omitted"),
        pytest.param("https://rp.example.test/cb/", ("invalid_grant",), id="c-trailing-slash"),
    ],
)
async def test_redirect_uri_binding(
    as_client: Client,
    redirect_uri: str | None,
    errors: tuple[str, ...],
) -> None:
    """SECURITY-CHECKLIST item 30(a)-(c): the token request's redirect_uri must be identical."""
    code = await get_code(as_client, "conf")
    resp = await redeem(as_client, code, redirect_uri=redirect_uri)
    await assert_e400(resp, *errors)


async def test_redirect_uri_binding_with_two_registered_uris(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 30(a): for ``multi``, the other *registered* URI is refused too."""
    code = await get_code(as_client, "multi")
    resp = await redeem(
        as_client, code, auth=("multi", "ms3cr3t"), redirect_uri="https://rp.example.test/cb2"
    )
    await assert_e400(resp, "invalid_grant")


async def test_expired_code_is_invalid_grant(short_client: Client) -> None:
    """SECURITY-CHECKLIST item 31: with ``code_ttl`` = 1 s, a code redeemed 2 s later (the
    gateway's clock moved on: the database decides the code's expiry by the same clock)."""
    code = await get_code(short_client, "conf")
    clock_of(short_client).advance(2)
    await assert_e400(await redeem(short_client, code), "invalid_grant")


async def test_parallel_redemptions_yield_exactly_one_token(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 32: 10 parallel redemptions of one code: exactly one TOK200,
    nine ``E400(invalid_grant)``."""
    code = await get_code(as_client, "conf")
    responses = await asyncio.wait_for(
        asyncio.gather(*(redeem(as_client, code) for _ in range(10))), timeout=60
    )
    statuses = sorted(r.status for r in responses)
    bodies = [await r.text() for r in responses]
    assert statuses == [200] + [400] * 9, bodies
    for resp in responses:
        if resp.status == 200:
            await assert_tok200(resp)
        else:
            await assert_e400(resp, "invalid_grant")


# --- password: items 33-35 --------------------------------------------------------------------


async def test_password_grant_for_enabled_client(
    as_client: Client,
    users: dict[str, str],
) -> None:
    """SECURITY-CHECKLIST item 33: TOK200 for ``conf`` (password enabled), for alice."""
    resp = await password(as_client, username="alice", password="Correct-Horse-9", scope="profile")
    body = await assert_tok200(resp)
    key = await jwks_key(as_client, body["access_token"])
    claims = jwt.decode(
        body["access_token"], key, algorithms=["RS256"], issuer=ISSUER, audience=ISSUER
    )
    assert claims["sub"] == users["alice"]
    assert body["scope"] == "profile"


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(("plain", "plains3cr3t"), id="registered-without-grant-types"),
        pytest.param(("conf2", "s3cr3t2"), id="conf2"),
    ],
)
async def test_password_grant_is_opt_in(
    as_client: Client,
    auth: tuple[str, str],
) -> None:
    """SECURITY-CHECKLIST item 33: a client without an explicit ``password`` grant gets
    ``E400(unauthorized_client)``."""
    resp = await password(as_client, auth, username="alice", password="Correct-Horse-9")
    await assert_e400(resp, "unauthorized_client")


async def test_wrong_password_and_unknown_user_are_byte_identical(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 34: ``E400(invalid_grant)`` with byte-identical bodies."""
    wrong = await password(as_client, username="alice", password="wrong")
    unknown = await password(as_client, username="mallory", password="wrong")
    await assert_e400(wrong, "invalid_grant")
    await assert_e400(unknown, "invalid_grant")
    assert await wrong.read() == await unknown.read()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param("grant_type=password&password=x", "invalid_request", id="a-no-username"),
        pytest.param("grant_type=password&username=alice", "invalid_request", id="b-no-password"),
        pytest.param(
            "grant_type=password&username=alice&username=bob&password=Correct-Horse-9",
            "invalid_request",
            id="c-repeated-username",
        ),
        pytest.param(
            "grant_type=password&username=alice&password=Correct-Horse-9&scope=admin%3Aall",
            "invalid_scope",
            id="d-scope",
        ),
    ],
)
async def test_malformed_password_requests(
    as_client: Client,
    body: str,
    error: str,
) -> None:
    """SECURITY-CHECKLIST item 35(a)-(d)."""
    resp = await as_client.post(
        TOKEN,
        data=body.encode(),
        headers={
            **basic("conf", "s3cr3t"),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    await assert_e400(resp, error)


async def test_password_grant_session_secret_signs_in_again(
    as_client: Client,
    users: dict[str, str],
) -> None:
    """SECURITY-CHECKLIST item 33 (the reference's ``secret`` variant): the response carries a
    ``secret``; a later password grant with only that secret returns tokens for the same user
    and the same ``session``. A wrong secret is ``invalid_grant``."""
    first = await assert_tok200(
        await password(as_client, username="alice", password="Correct-Horse-9", scope="openid")
    )
    secret = first["secret"]
    assert isinstance(secret, str)
    assert len(secret) >= 22
    again = await assert_tok200(await password(as_client, secret=secret, scope="openid"))
    assert again["session"] == first["session"]
    key = await jwks_key(as_client, again["access_token"])
    claims = jwt.decode(
        again["access_token"], key, algorithms=["RS256"], issuer=ISSUER, audience=ISSUER
    )
    assert claims["sub"] == users["alice"]
    assert claims["sid"] == first["session"]
    await assert_e400(await password(as_client, secret=secret + "x"), "invalid_grant")


# --- client_credentials: items 36-37 ----------------------------------------------------------


def set_cookies(resp: ClientResponse) -> dict[str, str]:
    """Name -> whole ``Set-Cookie`` line."""
    return {line.split("=", 1)[0]: line for line in resp.headers.getall("Set-Cookie", [])}


async def test_client_credentials_happy_path(
    as_client: Client,
    users: dict[str, str],
) -> None:
    """SECURITY-CHECKLIST item 36: TOK200 without refresh_token or id_token; the token's ``sub``
    is ``client:cc``, which no user's sub can equal; the ``__Secure-SAT`` cookie is set HttpOnly
    and Secure and does not carry the raw token."""
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "scope": "orders.read"},
        headers=basic("cc", "ccs3cr3t"),
    )
    body = await assert_tok200(resp)
    assert "refresh_token" not in body
    assert "id_token" not in body
    key = await jwks_key(as_client, body["access_token"])
    claims = jwt.decode(
        body["access_token"], key, algorithms=["RS256"], issuer=ISSUER, audience=ISSUER
    )
    assert claims["sub"] == "client:cc"
    assert claims["sub"] not in users.values()
    cookie = set_cookies(resp).get("__Secure-SAT")
    assert cookie is not None, resp.headers.getall("Set-Cookie", [])
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure"} <= attributes
    assert body["access_token"] not in cookie
    assert "__Secure-SRT" not in set_cookies(resp)


async def test_client_credentials_offline_gives_refresh_token(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 36 (product decision): ``access_type=offline`` returns a refresh
    token (for a client allowed to refresh), which then refreshes as ``client:conf``."""
    plain = await assert_tok200(
        await as_client.post(
            TOKEN,
            data={"grant_type": "client_credentials", "scope": "orders.read"},
            headers=basic("conf", "s3cr3t"),
        )
    )
    assert "refresh_token" not in plain
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "scope": "orders.read", "access_type": "offline"},
        headers=basic("conf", "s3cr3t"),
    )
    body = await assert_tok200(resp)
    assert body.get("refresh_token")
    assert "id_token" not in body
    assert "__Secure-SRT" in set_cookies(resp)
    refreshed = await assert_tok200(
        await as_client.post(
            TOKEN,
            data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
            headers=basic("conf", "s3cr3t"),
        )
    )
    claims = jwt.decode(refreshed["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "client:conf"
    assert "id_token" not in refreshed


async def test_client_credentials_refused_for_public_client(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 37(a): ``client_id=pub`` is E400(unauthorized_client)."""
    resp = await as_client.post(
        TOKEN, data={"grant_type": "client_credentials", "client_id": "pub"}
    )
    await assert_e400(resp, "unauthorized_client")


async def test_client_credentials_scope_policy(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 37(b): ``scope=admin:all`` for ``cc`` is invalid_scope."""
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "scope": "admin:all"},
        headers=basic("cc", "ccs3cr3t"),
    )
    await assert_e400(resp, "invalid_scope")


# --- PKCE at the token endpoint: items 56-58, 61(b) -------------------------------------------


async def test_wrong_verifier_is_invalid_grant(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 56: ``pub`` with ``code_verifier=V2``."""
    code = await get_code(as_client, "pub")
    resp = await redeem(
        as_client, code, auth=None, redirect_uri=APP_CB, verifier=V2, client_id="pub"
    )
    await assert_e400(resp, "invalid_grant")


@pytest.mark.parametrize(
    ("client_id", "auth", "redirect_uri", "extra"),
    [
        pytest.param("pub", None, APP_CB, {"client_id": "pub"}, id="public"),
        pytest.param("conf", ("conf", "s3cr3t"), RP_CB, {}, id="confidential"),
    ],
)
async def test_missing_verifier_is_refused(
    as_client: Client,
    client_id: str,
    auth: tuple[str, str] | None,
    redirect_uri: str,
    extra: dict[str, str],
) -> None:
    """SECURITY-CHECKLIST item 57: a challenge was sent, no verifier at the token endpoint:
    ``E400(invalid_grant)`` (or invalid_request), no token."""
    code = await get_code(as_client, client_id)
    resp = await redeem(
        as_client, code, auth=auth, redirect_uri=redirect_uri, verifier=None, **extra
    )
    await assert_e400(resp, "invalid_grant", "invalid_request")


async def test_pkce_downgrade_is_invalid_grant(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 58: no challenge at /authorize (PKCE optional for ``conf``), a
    verifier at the token endpoint: ``E400(invalid_grant)``."""
    code = await get_code(as_client, "conf", code_challenge=None, code_challenge_method=None)
    await assert_e400(await redeem(as_client, code, verifier=V), "invalid_grant")


V42 = "EEM_I_OaM991MBJtP9NskPou30uUbTeH0arOA36L6C"
V129 = ("abcdefghij" * 13)[:129]
V_DOLLAR = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjX$"


@pytest.mark.parametrize(
    "verifier",
    [
        pytest.param(V42, id="42-chars"),
        pytest.param(V129, id="129-chars"),
        pytest.param(V_DOLLAR, id="dollar"),
    ],
)
async def test_malformed_verifier_is_refused_even_when_hash_matches(
    as_client: Client,
    verifier: str,
) -> None:
    """SECURITY-CHECKLIST item 61(b): a verifier of bad syntax whose S256 was registered as the
    challenge: ``E400(invalid_grant)`` (or invalid_request), no token."""
    assert s256(V42) == "n3GhAa-jTlZuWhYYBlZNzTq8P-EAK5UPO_ZhTIAlGQ0"
    code = await get_code(as_client, "pub", code_challenge=s256(verifier))
    resp = await redeem(
        as_client, code, auth=None, redirect_uri=APP_CB, verifier=verifier, client_id="pub"
    )
    await assert_e400(resp, "invalid_grant", "invalid_request")
