"""Discovery, JWKS, ID token signatures and UserInfo, black-box over HTTP.

SECURITY-CHECKLIST items 103(a-b), 110-113, 115-116, 135, and 129-132 in the UserInfo and
introspection slots (forged and malformed JWTs must give 401 invalid_token / {"active": false},
never a 5xx).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.http.checklist import serving
from tests.http.conftest import (
    EXCHANGE,
    ISSUER,
    JWT_BEARER,
    V,
    as_config,
    authz_params,
    basic,
    location_params,
    sign_in,
)
from tests.support import USERS, Client, clock_of, gateway_env, run_gateway

SECRETS = {"conf": "s3cr3t", "conf2": "s3cr3t2", "rc": "rcs3cr3t"}
CALLBACKS = {
    "conf": "https://rp.example.test/cb",
    "conf2": "https://rp2.example.test/cb",
    "pub": "https://app.example.test/cb",
    "imp": "https://imp.example.test/cb",
    "rc": "https://chat.example.test/_oauth/idp",
}
ENDPOINTS = (
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "revocation_endpoint",
    "introspection_endpoint",
)
RESPONSE_TYPES = {
    "code",
    "token",
    "id_token",
    "code token",
    "code id_token",
    "id_token token",
    "code id_token token",
}
GRANT_TYPES = {
    "authorization_code",
    "implicit",
    "password",
    "client_credentials",
    "refresh_token",
    EXCHANGE,
    JWT_BEARER,
}


# --- helpers ----------------------------------------------------------------------------------


async def tokens(
    client: Client, client_id: str = "conf", username: str = "alice", **extra: str
) -> dict[str, Any]:
    """Sign in through the login form (prompt=login) and redeem the code: the token response."""
    params = authz_params(client_id, prompt="login", **extra)
    login = await sign_in(client, params, username)
    assert login.status == 303, await login.text()
    code = location_params(login.headers["Location"])[0]["code"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACKS[client_id],
        "code_verifier": V,
    }
    headers = {}
    if client_id in SECRETS:
        headers = basic(client_id, SECRETS[client_id])
    else:
        data["client_id"] = client_id
    response = await client.post("/oauth2/token", data=data, headers=headers)
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


async def userinfo(
    client: Client, token: str | None = None, *, method: str = "GET", **kwargs: Any
) -> aiohttp.ClientResponse:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await client.request(method, "/oauth2/userinfo", headers=headers, **kwargs)


def challenge(response: aiohttp.ClientResponse) -> str:
    value = response.headers.get("WWW-Authenticate", "")
    assert value.lower().startswith("bearer"), dict(response.headers)
    return value


async def assert_invalid_token(response: aiohttp.ClientResponse) -> None:
    """B401(invalid_token)."""
    text = await response.text()
    assert response.status == 401, (response.status, text[:300])
    assert 'error="invalid_token"' in challenge(response)


async def introspect(client: Client, token: str, who: str = "conf") -> aiohttp.ClientResponse:
    return await client.post(
        "/oauth2/introspect", data={"token": token}, headers=basic(who, SECRETS[who])
    )


async def assert_inactive(response: aiohttp.ClientResponse) -> None:
    text = await response.text()
    assert response.status == 200, (response.status, text[:300])
    assert json.loads(text) == {"active": False}


async def verify_with_jwks(client: Client, token: str, audience: str) -> dict[str, Any]:
    """PyJWT's JWKS client against this server's /oauth2/jwks (synchronous, so in a thread)."""
    jwks = jwt.PyJWKClient(str(client.make_url("/oauth2/jwks")), cache_keys=False)
    key = await asyncio.to_thread(jwks.get_signing_key_from_jwt, token)
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=audience, issuer=ISSUER
    )
    return claims


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    return header, claims


@contextlib.asynccontextmanager
async def gateway(directory: Path, database_url: str, **settings: Any) -> AsyncIterator[Client]:
    """The gateway with the shared test clients and some gateway settings changed."""
    async with serving(as_config(directory, **settings), database_url) as client:
        yield client


# --- items 110, 111, 103: discovery -----------------------------------------------------------


def check_configuration(doc: dict[str, Any]) -> None:
    assert doc["issuer"] == ISSUER
    for name in ENDPOINTS:
        assert doc[name].startswith(ISSUER + "/"), (name, doc[name])
    assert set(doc["response_types_supported"]) == RESPONSE_TYPES
    assert len(doc["response_types_supported"]) == len(RESPONSE_TYPES)
    assert doc["subject_types_supported"]
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    assert "none" not in {a.lower() for a in doc["id_token_signing_alg_values_supported"]}
    assert "openid" in doc["scopes_supported"]
    assert set(doc["grant_types_supported"]) == GRANT_TYPES
    assert {"client_secret_basic", "client_secret_post"} <= set(
        doc["token_endpoint_auth_methods_supported"]
    )
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["claims_supported"]
    empty = [k for k, v in doc.items() if isinstance(v, list) and not v]
    assert not empty, empty


async def test_openid_configuration(as_client: Client) -> None:
    """Item 110: 200 JSON; issuer exactly https://as.example.test; every endpoint https under
    it; exactly the supported response and grant types; RS256 and never none; openid in scopes;
    basic and post auth; S256 only; claims_supported; no empty arrays."""
    response = await as_client.get("/.well-known/openid-configuration")
    assert response.status == 200
    assert response.content_type == "application/json"
    check_configuration(await response.json())


async def test_oauth_authorization_server_metadata(as_client: Client) -> None:
    """Item 111: RFC 8414 metadata has the same issuer and endpoints as item 110."""
    oidc = await (await as_client.get("/.well-known/openid-configuration")).json()
    response = await as_client.get("/.well-known/oauth-authorization-server")
    assert response.status == 200
    assert response.content_type == "application/json"
    doc = await response.json()
    assert doc["issuer"] == ISSUER
    for name in ENDPOINTS:
        assert doc[name] == oidc[name]
    assert doc["code_challenge_methods_supported"] == ["S256"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example"},
        {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"},
        {"Forwarded": "host=evil.example;proto=http"},
    ],
    ids=["host", "x-forwarded", "forwarded"],
)
@pytest.mark.parametrize(
    "path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"]
)
async def test_host_headers_cannot_change_issuer(
    as_client: Client, headers: dict[str, str], path: str
) -> None:
    """Item 103(a-b): Host: evil.example or forwarded host/proto headers leave the issuer and
    every endpoint at https://as.example.test: the issuer is configuration, not the request."""
    response = await as_client.get(path, headers=headers)
    assert response.status == 200
    doc = await response.json()
    assert doc["issuer"] == ISSUER
    assert "evil.example" not in json.dumps(doc)
    for name in ENDPOINTS:
        assert doc[name].startswith(ISSUER + "/")


async def test_discovery_and_jwks_are_public_cors(as_client: Client) -> None:
    """Product decision: discovery and JWKS allow any origin without credentials."""
    for path in ("/.well-known/openid-configuration", "/oauth2/jwks"):
        response = await as_client.get(path, headers={"Origin": "https://evil.example"})
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in response.headers


async def test_advertised_response_types_work(as_client: Client) -> None:
    """Item 110 (consistency): each advertised response type succeeds for imp (signed in), with
    the members its name promises; an unadvertised one is unsupported_response_type."""
    doc = await (await as_client.get("/.well-known/openid-configuration")).json()
    await tokens(as_client, "imp")
    assert set(doc["response_types_supported"]) == {
        "code",
        "token",
        "code token",
        "id_token",
        "id_token token",
        "code id_token",
        "code id_token token",
    }
    for response_type in doc["response_types_supported"]:
        params = authz_params(
            "imp", response_type=response_type, scope="openid profile", state="s110"
        )
        response = await as_client.get("/oauth2/authorize", params=params, allow_redirects=False)
        assert response.status == 302, (response_type, response.status)
        query, fragment = location_params(response.headers["Location"])
        returned = query if response_type == "code" else fragment
        assert "error" not in returned, (response_type, returned)
        expected = set(response_type.split()) | {"state"}
        expected = {"access_token" if e == "token" else e for e in expected}
        assert expected <= set(returned), (response_type, returned)
    bad = await as_client.get(
        "/oauth2/authorize",
        params=authz_params("imp", response_type="code none", state="s110"),
        allow_redirects=False,
    )
    query, fragment = location_params(bad.headers["Location"])
    assert {**query, **fragment}["error"] == "unsupported_response_type"


async def test_unadvertised_grant_type_is_unsupported(as_client: Client) -> None:
    """Item 110 (consistency): a grant type not in grant_types_supported ->
    unsupported_grant_type."""
    response = await as_client.post(
        "/oauth2/token",
        data={"grant_type": "urn:example:unknown"},
        headers=basic("conf", "s3cr3t"),
    )
    assert response.status == 400
    assert (await response.json())["error"] == "unsupported_grant_type"


# --- item 112: JWKS ------------------------------------------------------------------------------

PRIVATE = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


async def test_jwks(as_client: Client) -> None:
    """Item 112: {"keys": [...]} with kty, unique kid, use=sig or alg; no private or symmetric
    members; RSA moduli >= 2048 bits; cacheable."""
    response = await as_client.get("/oauth2/jwks")
    assert response.status == 200
    assert response.content_type in ("application/json", "application/jwk-set+json")
    assert "max-age=" in response.headers.get("Cache-Control", "")
    keys = (await response.json())["keys"]
    assert keys
    kids = [key["kid"] for key in keys]
    assert len(set(kids)) == len(kids)
    for key in keys:
        assert key["kty"] in ("RSA", "EC")
        assert key.get("use") == "sig" or key.get("alg")
        assert not PRIVATE & set(key), key
        if key["kty"] == "RSA":
            modulus = int.from_bytes(base64.urlsafe_b64decode(key["n"] + "=" * 3), "big")
            assert modulus.bit_length() >= 2048


# --- item 113: ID token --------------------------------------------------------------------------


async def test_id_token_verifies_against_jwks(as_client: Client, users: dict[str, str]) -> None:
    """Item 113: the code-flow ID token is RS256 with a kid from JWKS, verifies with PyJWT's
    JWKS client; iss, aud, exp > iat, iat ~ now, sub (alice's id, <= 255 ASCII), nonce and
    auth_time present; azp is the client."""
    body = await tokens(as_client, "conf")
    token = body["id_token"]
    header, _ = unverified(token)
    assert header["alg"] == "RS256"
    jwks = await (await as_client.get("/oauth2/jwks")).json()
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    claims = await verify_with_jwks(as_client, token, "conf")
    now = time.time()
    assert claims["iss"] == ISSUER
    audience = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert "conf" in audience
    if len(audience) > 1:
        assert claims["azp"] == "conf"
    assert claims["exp"] > claims["iat"]
    assert abs(claims["iat"] - now) < 300
    assert claims["sub"] == users["alice"]
    assert len(claims["sub"]) <= 255
    assert claims["sub"].isascii()
    assert claims["nonce"] == "n-conf"
    assert isinstance(claims["auth_time"], int)


async def test_sub_is_stable_across_clients(as_client: Client) -> None:
    """Item 113: alice's sub is the same for conf and conf2 (subject type public)."""
    first = await verify_with_jwks(as_client, (await tokens(as_client, "conf"))["id_token"], "conf")
    second = await verify_with_jwks(
        as_client, (await tokens(as_client, "conf2"))["id_token"], "conf2"
    )
    assert first["sub"] == second["sub"]


async def test_id_token_signature_fails_when_tampered(as_client: Client) -> None:
    """Item 113 (control): the JWKS check is real: a claim changed after signing fails."""
    token = (await tokens(as_client, "conf"))["id_token"]
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * 3))
    claims["sub"] = "someone-else"
    forged = f"{head}.{segment(claims)}.{signature}"
    with pytest.raises(jwt.InvalidSignatureError):
        await verify_with_jwks(as_client, forged, "conf")


async def test_signing_key_rotation(
    as_client: Client, as_conf_path: Path, database_url: str, tmp_path: Path
) -> None:
    """Item 114: after `gateway keys rotate` (and a restart) JWKS publishes the new kid while
    tokens are still signed with the previous key (the new one is published before it signs),
    and an ID token signed before the rotation still verifies against the JWKS."""
    before = await tokens(as_client, "conf")
    old_kid = unverified(before["id_token"])[0]["kid"]
    env = gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(as_conf_path))
    rotated = await asyncio.to_thread(run_gateway, "keys", "rotate", env=env)
    assert rotated.returncode == 0, rotated.stderr
    async with gateway(tmp_path / "restarted", database_url) as client:
        kids = {k["kid"] for k in (await (await client.get("/oauth2/jwks")).json())["keys"]}
        assert old_kid in kids
        assert len(kids) >= 2
        after = await tokens(client, "conf")
        assert unverified(after["id_token"])[0]["kid"] == old_kid  # the new key is not signing
        assert unverified(after["access_token"])[0]["kid"] == old_kid
        claims = await verify_with_jwks(client, before["id_token"], "conf")
        assert claims["sub"] == unverified(after["id_token"])[1]["sub"]


# --- item 115: userinfo --------------------------------------------------------------------------


async def test_userinfo_get_post_header_and_body(as_client: Client) -> None:
    """Item 115(a-c): GET with Bearer, POST with Bearer and no body, POST with access_token in a
    form body: 200 JSON; sub equals the ID token's; profile and email claims present."""
    body = await tokens(as_client, "conf")
    sub = unverified(body["id_token"])[1]["sub"]
    at = body["access_token"]
    responses = [
        await userinfo(as_client, at),
        await userinfo(as_client, at, method="POST"),
        await as_client.post("/oauth2/userinfo", data={"access_token": at}),
    ]
    for response in responses:
        assert response.status == 200, await response.text()
        assert response.content_type == "application/json"
        claims = await response.json()
        assert claims["sub"] == sub
        assert claims["preferred_username"] == "alice"
        assert claims["name"] == USERS["alice"][2]
        assert claims["email"] == USERS["alice"][1]
        assert isinstance(claims["email_verified"], bool)


async def test_email_verified_says_whether_the_address_was_verified(
    as_client: Client, database_url: str
) -> None:
    """OIDC Core 5.1: ``email_verified`` is true only for an address the user was shown to
    receive mail at (an invitation or a verification link sets it): the ID token of the code
    grant, the refreshed ID token and userinfo all say so; an unverified address says false."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE auth.users SET email_verified = (username = 'alice')")
    finally:
        await conn.close()
    for username, verified in (("alice", True), ("bob", False)):
        body = await tokens(
            as_client, "conf", username=username, scope="openid email offline_access"
        )
        assert unverified(body["id_token"])[1]["email_verified"] is verified
        info = await (await userinfo(as_client, body["access_token"])).json()
        assert (info["email"], info["email_verified"]) == (USERS[username][1], verified)
        refreshed = await as_client.post(
            "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
            headers=basic("conf", "s3cr3t"),
        )
        new = await refreshed.json()
        assert unverified(new["id_token"])[1]["email_verified"] is verified, new


async def test_userinfo_claims_follow_scope(as_client: Client) -> None:
    """Item 115: scope openid only -> sub and nothing from profile or email."""
    body = await tokens(as_client, "conf", scope="openid")
    response = await userinfo(as_client, body["access_token"])
    assert response.status == 200
    claims = await response.json()
    assert "sub" in claims
    assert not {"name", "preferred_username", "email", "email_verified"} & set(claims)


# --- item 116: userinfo errors -------------------------------------------------------------------


async def test_userinfo_without_token(as_client: Client) -> None:
    """Item 116(a): no token -> B401(-): a Bearer challenge without an error code."""
    response = await userinfo(as_client)
    assert response.status == 401
    assert "error=" not in challenge(response)


async def test_userinfo_with_garbage_token(as_client: Client) -> None:
    """Item 116(b): Bearer garbage -> B401(invalid_token)."""
    await assert_invalid_token(await userinfo(as_client, "garbage"))


async def test_userinfo_with_revoked_token(as_client: Client) -> None:
    """Item 116(c): a revoked access token -> B401(invalid_token)."""
    body = await tokens(as_client, "conf")
    assert (await userinfo(as_client, body["access_token"])).status == 200
    revoke = await as_client.post(
        "/oauth2/revoke",
        data={"token": body["access_token"]},
        headers=basic("conf", "s3cr3t"),
    )
    assert revoke.status == 200
    await assert_invalid_token(await userinfo(as_client, body["access_token"]))


async def test_userinfo_with_expired_token(
    tmp_path: Path, database_url: str, users: dict[str, str]
) -> None:
    """Item 116(c): an access token past its exp (tokens.access_ttl=1, the gateway's clock moved
    2 s on) -> B401(invalid_token); the same token was accepted while fresh."""
    async with gateway(tmp_path / "short", database_url, tokens={"access_ttl": 1}) as client:
        body = await tokens(client, "conf")
        assert body["expires_in"] == 1
        _, claims = unverified(body["access_token"])
        clock = clock_of(client)
        clock.advance(claims["iat"] - clock.time())  # as fresh as issued, however busy the host
        assert (await userinfo(client, body["access_token"])).status == 200
        clock.advance(2)
        assert claims["exp"] < clock_of(client).time()
        await assert_invalid_token(await userinfo(client, body["access_token"]))


async def test_userinfo_token_in_header_and_query(as_client: Client) -> None:
    """Item 116(d): a token in the header and in ?access_token= -> 400 with
    WWW-Authenticate: Bearer error="invalid_request"."""
    at = (await tokens(as_client, "conf"))["access_token"]
    response = await userinfo(as_client, at, params={"access_token": at})
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_request"
    assert 'error="invalid_request"' in challenge(response)


async def test_userinfo_token_in_query_only_is_refused(as_client: Client) -> None:
    """Product decision (item 144(b) "otherwise"): ?access_token= alone -> 401 with a Bearer
    challenge carrying no error, and no claims."""
    at = (await tokens(as_client, "conf"))["access_token"]
    response = await as_client.get("/oauth2/userinfo", params={"access_token": at})
    assert response.status == 401
    assert "error=" not in challenge(response)
    assert "sub" not in await response.text()


async def test_userinfo_with_client_credentials_token(as_client: Client) -> None:
    """Item 116(e): a client-credentials access token -> 403 insufficient_scope (or
    B401(invalid_token))."""
    response = await as_client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "orders.read"},
        headers=basic("cc", "ccs3cr3t"),
    )
    assert response.status == 200
    info = await userinfo(as_client, (await response.json())["access_token"])
    if info.status == 401:
        await assert_invalid_token(info)
        return
    assert info.status == 403
    assert 'error="insufficient_scope"' in challenge(info)


async def test_userinfo_without_openid_scope(as_client: Client) -> None:
    """Item 116(e), product decision: an AT without openid -> 403 insufficient_scope."""
    body = await tokens(as_client, "conf", scope="profile email")
    info = await userinfo(as_client, body["access_token"])
    assert info.status == 403
    assert 'error="insufficient_scope"' in challenge(info)
    assert "sub" not in await info.text()


# --- item 135: token-type confusion --------------------------------------------------------------


async def test_id_token_and_refresh_token_are_not_access_tokens(as_client: Client) -> None:
    """Item 135(a)(c): Bearer {IDT} and Bearer {RT} at userinfo -> B401(invalid_token); the AT of
    the same response works (control) and is typed at+jwt."""
    body = await tokens(as_client, "conf")
    assert (await userinfo(as_client, body["access_token"])).status == 200
    assert unverified(body["access_token"])[0]["typ"].lower() in ("at+jwt", "application/at+jwt")
    await assert_invalid_token(await userinfo(as_client, body["id_token"]))
    await assert_invalid_token(await userinfo(as_client, body["refresh_token"]))


# --- items 129-132: forged and malformed JWTs in the userinfo and introspection slots ------------


@pytest.fixture
async def real_tokens(as_client: Client) -> dict[str, Any]:
    """A live token response for alice/conf, as the template for forgeries."""
    body = await tokens(as_client, "conf")
    assert (await userinfo(as_client, body["access_token"])).status == 200
    active = await (await introspect(as_client, body["access_token"])).json()
    assert active["active"] is True
    return body


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def sign_rs256(header: Mapping[str, Any], claims: Mapping[str, Any], key: Any) -> str:
    return jwt.encode(dict(claims), key, algorithm="RS256", headers=dict(header))


def sign_hs256(header: Mapping[str, Any], claims: Mapping[str, Any], secret: bytes) -> str:
    signing_input = f"{segment(dict(header))}.{segment(dict(claims))}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


async def forgeries(client: Client, access_token: str) -> dict[str, str]:
    """Items 129-132: the AT's own claims (so only the JOSE layer is wrong), re-packaged."""
    header, claims = unverified(access_token)
    kid = header["kid"]
    jwks = await (await client.get("/oauth2/jwks")).json()
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    public = jwt.PyJWK(jwk).key
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    attacker = rsa_key()
    attacker_jwk = json.loads(RSAAlgorithm.to_jwk(attacker.public_key()))
    head, payload, signature = access_token.split(".")
    typ = header["typ"]
    out: dict[str, str] = {
        # 129: structurally malformed
        "abc": "abc",
        "a.b": "a.b",
        "a.b.c.d": "a.b.c.d",
        "header-not-base64url": f"!!!*.{payload}.{signature}",
        "header-not-json": f"{b64url(b'not json')}.{payload}.{signature}",
        "payload-json-array": f"{head}.{segment([claims])}.{signature}",
        "empty-signature": f"{head}.{payload}.",
        "signature-of-other-token": f"{head}.{segment({**claims, 'sub': 'x'})}.{signature}",
        # 130: alg none
        **{
            f"alg-{alg}": f"{segment({'alg': alg, 'typ': typ})}.{payload}."
            for alg in ("none", "None", "NONE", "nOnE")
        },
        "alg-none-with-signature": f"{segment({'alg': 'none', 'typ': typ})}.{payload}.{signature}",
        # 131: HS256 keyed with the AS's public key
        "hs256-pem": sign_hs256({"alg": "HS256", "kid": kid, "typ": typ}, claims, pem),
        "hs256-pem-stripped": sign_hs256(
            {"alg": "HS256", "kid": kid, "typ": typ}, claims, pem.strip()
        ),
        "hs256-der": sign_hs256({"alg": "HS256", "kid": kid, "typ": typ}, claims, der),
        "hs256-jwk": sign_hs256(
            {"alg": "HS256", "kid": kid, "typ": typ}, claims, json.dumps(jwk).encode()
        ),
        # 132: key selection from the token
        "kid-path": sign_rs256({"kid": "../../../../../dev/null", "typ": typ}, claims, attacker),
        "kid-sql": sign_rs256({"kid": "x' UNION SELECT 'k", "typ": typ}, claims, attacker),
        "kid-own-but-attacker-key": sign_rs256({"kid": kid, "typ": typ}, claims, attacker),
        "jku": sign_rs256(
            {"kid": kid, "typ": typ, "jku": "https://evil.example/jwks.json"}, claims, attacker
        ),
        "x5u": sign_rs256(
            {"kid": kid, "typ": typ, "x5u": "https://evil.example/c.pem"}, claims, attacker
        ),
        "embedded-jwk": sign_rs256({"typ": typ, "jwk": attacker_jwk}, claims, attacker),
        "embedded-jwk-with-kid": sign_rs256(
            {"kid": kid, "typ": typ, "jwk": attacker_jwk}, claims, attacker
        ),
        "x5c-self-signed": sign_rs256(
            {"kid": kid, "typ": typ, "x5c": [b64url(b"not really a certificate")]},
            claims,
            attacker,
        ),
    }
    return out


def big_forgeries(access_token: str) -> dict[str, str]:
    """Oversized tokens, sent in a form body (they exceed any header limit)."""
    header, claims = unverified(access_token)
    attacker = rsa_key()
    _, payload, signature = access_token.split(".")
    padding = "A" * (1_040_000 - len(payload) - len(signature))
    return {
        "kid-10KiB": sign_rs256({"kid": "k" * 10240, "typ": header["typ"]}, claims, attacker),
        "about-1MiB": f"{segment(header)}.{payload}{padding}.{signature}",
    }


async def test_forged_jwts_at_userinfo(as_client: Client, real_tokens: dict[str, Any]) -> None:
    """Items 129-132, userinfo slot: every malformed or forged access token in the Bearer
    header -> B401(invalid_token), never a 5xx."""
    forged = await forgeries(as_client, real_tokens["access_token"])
    failures = []
    for name, token in forged.items():
        response = await userinfo(as_client, token)
        header = response.headers.get("WWW-Authenticate", "")
        if response.status != 401 or 'error="invalid_token"' not in header:
            failures.append((name, response.status, header, (await response.text())[:120]))
    assert not failures, failures


async def test_forged_jwts_at_userinfo_in_body(
    as_client: Client, real_tokens: dict[str, Any]
) -> None:
    """Items 129 (a ~1 MiB JWT) and 132 (a 10 KiB kid) at userinfo: too large for any header, so
    sent as access_token in a form body -> refused as invalid_token (401) or as a malformed
    request (400 invalid_request, RFC 6750 3.1); never 200, never 5xx."""
    for name, token in big_forgeries(real_tokens["access_token"]).items():
        response = await as_client.post("/oauth2/userinfo", data={"access_token": token})
        text = await response.text()
        assert response.status in (400, 401), (name, response.status, text[:200])
        assert json.loads(text)["error"] in ("invalid_request", "invalid_token"), (name, text)


async def test_oversized_bearer_header_is_not_a_server_error(as_client: Client) -> None:
    """Item 129 (1 MiB JWT) in the Authorization header: refused before the handler (400/431)
    or 401, never 5xx and never 200."""
    token = "eyJ" + "A" * (1024 * 1024)
    try:
        response = await userinfo(as_client, token)
    except aiohttp.ClientError:
        return  # the server closed the connection on an oversized header: also a refusal
    assert response.status in (400, 401, 413, 431), response.status


async def test_forged_jwts_at_introspection(as_client: Client, real_tokens: dict[str, Any]) -> None:
    """Items 129-132, introspection slot: each forged token (including a 10 KiB kid and a
    ~1 MiB JWT) -> 200 with exactly {"active": false}, never a 5xx."""
    forged = {
        **await forgeries(as_client, real_tokens["access_token"]),
        **big_forgeries(real_tokens["access_token"]),
    }
    failures = []
    for name, token in forged.items():
        response = await introspect(as_client, token)
        text = await response.text()
        if response.status != 200 or json.loads(text) != {"active": False}:
            failures.append((name, response.status, text[:120]))
    assert not failures, failures
