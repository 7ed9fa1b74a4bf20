"""Token exchange (RFC 8693, SECURITY-CHECKLIST items 38-43) and JWT bearer assertions (RFC 7523,
items 44-46), through real HTTP against a real database.

The trusted assertion issuer ``https://idp.partner.test`` is a provider file
``conf/oauth2/partner.json`` whose ``jwks_uri`` is a stub JWKS server on 127.0.0.1 serving the
public half of an RSA key generated here (kid ``partner-key-1``).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from pytest_aiohttp.plugin import AiohttpServer

from tests.http.checklist import TOKEN, assert_e400, assert_tok200
from tests.http.conftest import CLIENTS, EXCHANGE, ISSUER, JWT_BEARER, RELAXED_LIMITS, SCOPES, basic
from tests.support import Client, clock_of, write_conf

PARTNER = "https://idp.partner.test"
PARTNER_KID = "partner-key-1"
AT_TYPE = "urn:ietf:params:oauth:token-type:access_token"
RT_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
SHORT = {
    "client_id": "short",
    "client_secret": "shorts3cr3t",
    "scopes": SCOPES,
    "grant_types": ["password"],
    "access_ttl": 3,
}


@pytest.fixture(scope="module")
def partner_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rogue_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def jwks_server(aiohttp_server: AiohttpServer, partner_key: rsa.RSAPrivateKey) -> TestServer:
    """A stub of the partner's JWKS endpoint on 127.0.0.1."""
    jwk = json.loads(RSAAlgorithm.to_jwk(partner_key.public_key()))
    jwk.update(kid=PARTNER_KID, use="sig", alg="RS256")

    async def keys(request: web.Request) -> web.Response:
        return web.json_response({"keys": [jwk]})

    app = web.Application()
    app.router.add_get("/jwks", keys)
    return await aiohttp_server(app, host="127.0.0.1")


@pytest.fixture
def as_conf_path(tmp_path: Path, jwks_server: TestServer) -> Path:
    """The checklist clients plus ``short`` (1 s access tokens) and the partner issuer."""
    directory = tmp_path / "conf"
    path = write_conf(
        directory,
        gateway={"issuer": ISSUER, "limits": RELAXED_LIMITS},
        clients={**CLIENTS, "short": SHORT},
    )
    partner = {
        "partner": {
            "client_id": "gateway",
            "issuers": [PARTNER],
            "jwks_uri": f"http://127.0.0.1:{jwks_server.port}/jwks",
        }
    }
    (directory / "oauth2" / "partner.json").write_text(json.dumps(partner))
    return path


# --- assertions and helpers -------------------------------------------------------------------


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unverified(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def user_token(
    client: Client,
    username: str = "alice",
    scope: str = "orders.read",
    auth: tuple[str, str] = ("conf", "s3cr3t"),
) -> dict[str, Any]:
    """Tokens of a user from the password grant."""
    passwords = {"alice": "Correct-Horse-9", "bob": "B0b-Passw0rd!"}
    resp = await client.post(
        TOKEN,
        data={
            "grant_type": "password",
            "username": username,
            "password": passwords[username],
            "scope": scope,
        },
        headers=basic(*auth),
    )
    return await assert_tok200(resp)


async def service_token(client: Client) -> str:
    resp = await client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "scope": "orders.read"},
        headers=basic("cc", "ccs3cr3t"),
    )
    return str((await assert_tok200(resp))["access_token"])


async def exchange(
    client: Client,
    auth: tuple[str, str] = ("conf", "s3cr3t"),
    **params: str,
) -> ClientResponse:
    return await client.post(TOKEN, data={"grant_type": EXCHANGE, **params}, headers=basic(*auth))


async def introspect_rs(client: Client, token: str) -> dict[str, Any]:
    resp = await client.post(
        "/oauth2/introspect", data={"token": token}, headers=basic("rs", "rss3cr3t")
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def make_assertion(
    key: rsa.RSAPrivateKey,
    *,
    drop: tuple[str, ...] = (),
    kid: str = PARTNER_KID,
    **claims: Any,
) -> str:
    """An RS256 assertion of the partner for alice, valid unless told otherwise."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": PARTNER,
        "sub": "alice",
        "aud": f"{ISSUER}/oauth2/token",
        "exp": now + 300,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    payload.update(claims)
    for name in drop:
        payload.pop(name)
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


async def bearer(
    client: Client,
    assertion: str,
    auth: tuple[str, str] = ("conf", "s3cr3t"),
) -> ClientResponse:
    return await client.post(
        TOKEN, data={"grant_type": JWT_BEARER, "assertion": assertion}, headers=basic(*auth)
    )


# --- token exchange: items 38-43 --------------------------------------------------------------


async def test_exchange_happy_path(
    as_client: Client,
    users: dict[str, str],
) -> None:
    """SECURITY-CHECKLIST item 38: 200, no-store, ``issued_token_type``, ``token_type`` Bearer,
    ``expires_in``; the new token's sub is alice, its aud holds orders-api, its scope is within
    orders.read, and ``rs`` introspects it as active."""
    subject = (await user_token(as_client))["access_token"]
    resp = await exchange(
        as_client,
        subject_token=subject,
        subject_token_type=AT_TYPE,
        audience="orders-api",
        scope="orders.read",
    )
    body = await assert_tok200(resp)
    assert body["issued_token_type"] == AT_TYPE
    assert body["token_type"] == "Bearer"
    claims = unverified(body["access_token"])
    assert claims["sub"] == users["alice"]
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert "orders-api" in aud
    assert set(claims["scope"].split()) <= {"orders.read"}
    info = await introspect_rs(as_client, body["access_token"])
    assert info["active"] is True
    assert info["sub"] == users["alice"]
    assert "orders-api" in (info["aud"] if isinstance(info["aud"], list) else [info["aud"]])
    assert set(info["scope"].split()) <= {"orders.read"}


async def test_exchange_parameter_validation(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 39(a)-(f): each malformed exchange is ``E400(invalid_request)``."""
    subject = (await user_token(as_client))["access_token"]
    actor = (await user_token(as_client, "bob"))["access_token"]
    cases: list[dict[str, str]] = [
        {"subject_token_type": AT_TYPE},
        {"subject_token": subject},
        {"subject_token": subject, "subject_token_type": AT_TYPE, "actor_token": actor},
        {"subject_token": subject, "subject_token_type": AT_TYPE, "actor_token_type": AT_TYPE},
        {
            "subject_token": subject,
            "subject_token_type": "urn:ietf:params:oauth:token-type:saml2",
        },
        {
            "subject_token": subject,
            "subject_token_type": AT_TYPE,
            "requested_token_type": "urn:example:unknown",
        },
    ]
    for params in cases:
        await assert_e400(
            await exchange(as_client, ("conf", "s3cr3t"), **params), "invalid_request"
        )
    # The same subject is acceptable in a well-formed request.
    await assert_tok200(
        await exchange(as_client, subject_token=subject, subject_token_type=AT_TYPE)
    )


async def test_exchange_refuses_unusable_subject_tokens(
    as_client: Client,
    rogue_key: rsa.RSAPrivateKey,
) -> None:
    """SECURITY-CHECKLIST item 40: garbage, a revoked AT, a JWT signed by an unknown key, an
    ``alg=none`` JWT and a refresh token labelled ``access_token`` are each
    ``E400(invalid_request)`` (not invalid_grant)."""
    tokens = await user_token(as_client, scope="openid offline_access orders.read")
    good = tokens["access_token"]
    await assert_tok200(await exchange(as_client, subject_token=good, subject_token_type=AT_TYPE))
    header = jwt.get_unverified_header(good)
    claims = unverified(good)
    forged = jwt.encode(claims, rogue_key, algorithm="RS256", headers=header)
    unsigned = f"{b64({**header, 'alg': 'none'})}.{b64(claims)}."
    for subject in ("garbage", forged, unsigned, tokens["refresh_token"]):
        await assert_e400(
            await exchange(as_client, subject_token=subject, subject_token_type=AT_TYPE),
            "invalid_request",
        )
    revoked = (await user_token(as_client))["access_token"]
    await assert_tok200(
        await exchange(as_client, subject_token=revoked, subject_token_type=AT_TYPE)
    )
    resp = await as_client.post(
        "/oauth2/revoke", data={"token": revoked}, headers=basic("conf", "s3cr3t")
    )
    assert resp.status == 200, await resp.text()
    await assert_e400(
        await exchange(as_client, subject_token=revoked, subject_token_type=AT_TYPE),
        "invalid_request",
    )


async def test_exchange_refuses_an_expired_subject_token(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 40: an expired AT (3 s lifetime; the gateway allows its own tokens
    no clock leeway) is ``E400(invalid_request)``; the same token was accepted while fresh."""
    subject = (await user_token(as_client, auth=("short", "shorts3cr3t")))["access_token"]
    assert unverified(subject)["exp"] - unverified(subject)["iat"] == 3
    await assert_tok200(
        await exchange(as_client, subject_token=subject, subject_token_type=AT_TYPE)
    )
    clock_of(as_client).advance(4)
    await assert_e400(
        await exchange(as_client, subject_token=subject, subject_token_type=AT_TYPE),
        "invalid_request",
    )


async def test_exchange_disallowed_audience_is_invalid_target(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 41: ``audience=billing-api`` is not in conf's audiences."""
    subject = (await user_token(as_client))["access_token"]
    resp = await exchange(
        as_client, subject_token=subject, subject_token_type=AT_TYPE, audience="billing-api"
    )
    await assert_e400(resp, "invalid_target")


async def test_exchange_cannot_widen_scope(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 42: ``scope=orders.read orders.admin`` from a subject token with
    only orders.read is invalid_scope; so is a scope the client has but the subject lacks."""
    subject = (await user_token(as_client, scope="orders.read"))["access_token"]
    for scope in ("orders.read orders.admin", "orders.read profile"):
        resp = await exchange(
            as_client, subject_token=subject, subject_token_type=AT_TYPE, scope=scope
        )
        await assert_e400(resp, "invalid_scope")


async def test_exchange_delegation_is_visible(
    as_client: Client,
    users: dict[str, str],
) -> None:
    """SECURITY-CHECKLIST item 43: with cc's client_credentials AT as actor the issued token has
    ``sub`` = alice and ``act.sub`` = the actor's subject, in the JWT and at introspection."""
    subject = (await user_token(as_client))["access_token"]
    actor = await service_token(as_client)
    resp = await exchange(
        as_client,
        subject_token=subject,
        subject_token_type=AT_TYPE,
        actor_token=actor,
        actor_token_type=AT_TYPE,
        audience="orders-api",
        scope="orders.read",
    )
    body = await assert_tok200(resp)
    claims = unverified(body["access_token"])
    assert claims["sub"] == users["alice"]
    assert claims["act"]["sub"] == unverified(actor)["sub"] == "client:cc"
    info = await introspect_rs(as_client, body["access_token"])
    assert info["active"] is True
    assert info["sub"] == users["alice"]
    assert info["act"]["sub"] == "client:cc"


async def test_exchange_subject_refresh_token(
    as_client: Client,
    users: dict[str, str],
) -> None:
    """SECURITY-CHECKLIST item 38 (refresh token as subject, typed correctly): accepted, and the
    issued token is alice's."""
    tokens = await user_token(as_client, scope="offline_access orders.read")
    body = await assert_tok200(
        await exchange(as_client, subject_token=tokens["refresh_token"], subject_token_type=RT_TYPE)
    )
    assert unverified(body["access_token"])["sub"] == users["alice"]


async def test_exchange_and_jwt_bearer_not_enabled_for_conf2(
    as_client: Client,
    partner_key: rsa.RSAPrivateKey,
) -> None:
    """SECURITY-CHECKLIST item 22(b)(c): ``conf2`` with a valid assertion and with a valid
    subject token gets ``E400(unauthorized_client)``."""
    await assert_e400(
        await bearer(as_client, make_assertion(partner_key), auth=("conf2", "s3cr3t2")),
        "unauthorized_client",
    )
    subject = (await user_token(as_client))["access_token"]
    resp = await exchange(
        as_client, ("conf2", "s3cr3t2"), subject_token=subject, subject_token_type=AT_TYPE
    )
    await assert_e400(resp, "unauthorized_client")


# --- JWT bearer: items 44-46 ------------------------------------------------------------------


@pytest.mark.parametrize(
    "audience",
    [
        pytest.param(f"{ISSUER}/oauth2/token", id="token-endpoint"),
        pytest.param(ISSUER, id="issuer"),
    ],
)
async def test_jwt_bearer_happy_path(
    as_client: Client,
    users: dict[str, str],
    partner_key: rsa.RSAPrivateKey,
    audience: str,
) -> None:
    """SECURITY-CHECKLIST item 44: an RS256 assertion of the trusted issuer for alice, with the
    token endpoint or the issuer as audience, gives TOK200 for subject alice."""
    body = await assert_tok200(await bearer(as_client, make_assertion(partner_key, aud=audience)))
    assert unverified(body["access_token"])["sub"] == users["alice"]


async def test_jwt_bearer_missing_assertion(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 45(a)."""
    resp = await as_client.post(
        TOKEN, data={"grant_type": JWT_BEARER}, headers=basic("conf", "s3cr3t")
    )
    await assert_e400(resp, "invalid_request")


async def test_jwt_bearer_duplicate_assertion(
    as_client: Client,
    partner_key: rsa.RSAPrivateKey,
) -> None:
    """SECURITY-CHECKLIST item 45(b): ``assertion`` sent twice (both valid)."""
    first, second = make_assertion(partner_key), make_assertion(partner_key)
    body = f"grant_type={JWT_BEARER}&assertion={first}&assertion={second}"
    resp = await as_client.post(
        TOKEN,
        data=body.encode(),
        headers={**basic("conf", "s3cr3t"), "Content-Type": "application/x-www-form-urlencoded"},
    )
    await assert_e400(resp, "invalid_request")


def _flip_signature(token: str) -> str:
    head, payload, signature = token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"


def _unsigned(key: rsa.RSAPrivateKey) -> str:
    claims = unverified(make_assertion(key))
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def _hostile(key: rsa.RSAPrivateKey, variant: str) -> str:
    """Item 133 for assertions: a partner-signed assertion with ``crit``, two ``alg`` or two
    ``sub`` members (only the JSON is hostile; the signature is the partner's)."""
    claims = unverified(make_assertion(key))
    header = {"alg": "RS256", "kid": PARTNER_KID, "typ": "JWT"}
    head, body = json.dumps(header), json.dumps(claims)
    if variant == "crit":
        head = json.dumps({**header, "crit": ["exp2"], "exp2": 1})
    elif variant == "two alg":
        head = head[:-1] + ', "alg": "RS256"}'
    else:
        body = json.dumps({**claims, "sub": "bob"})[:-1] + ', "sub": "alice"}'
    signing_input = f"{_seg(head)}.{_seg(body)}".encode()
    signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(signing_input, key)
    return f"{signing_input.decode()}.{_seg(signature)}"


def _seg(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


INVALID_ASSERTIONS = [
    pytest.param(lambda k, r: _hostile(k, "crit"), id="133a-crit"),
    pytest.param(lambda k, r: _hostile(k, "two alg"), id="133b-two-alg"),
    pytest.param(lambda k, r: _hostile(k, "two sub"), id="133c-two-sub"),
    pytest.param(lambda k, r: _flip_signature(make_assertion(k)), id="a-signature-flipped"),
    pytest.param(lambda k, r: _unsigned(k), id="b-alg-none"),
    pytest.param(lambda k, r: make_assertion(k, iss="https://unknown.test"), id="c-unknown-iss"),
    pytest.param(lambda k, r: make_assertion(k, aud="https://other.example"), id="d-wrong-aud"),
    pytest.param(lambda k, r: make_assertion(k, exp=int(time.time()) - 600), id="e-expired"),
    pytest.param(lambda k, r: make_assertion(k, drop=("exp",)), id="f-no-exp"),
    pytest.param(lambda k, r: make_assertion(k, nbf=int(time.time()) + 600), id="g-nbf-future"),
    pytest.param(lambda k, r: make_assertion(k, drop=("sub",)), id="h-no-sub"),
    pytest.param(lambda k, r: make_assertion(r), id="signed-by-unknown-key"),
    pytest.param(lambda k, r: make_assertion(k, kid="other-kid"), id="unknown-kid"),
    pytest.param(lambda k, r: make_assertion(k, sub="mallory"), id="unknown-user"),
    pytest.param(lambda k, r: make_assertion(k, sub="carol"), id="locked-user"),
    pytest.param(lambda k, r: "garbage", id="not-a-jwt"),
]


@pytest.mark.parametrize("build", INVALID_ASSERTIONS)
async def test_jwt_bearer_invalid_assertions(
    as_client: Client,
    partner_key: rsa.RSAPrivateKey,
    rogue_key: rsa.RSAPrivateKey,
    build: Any,
) -> None:
    """SECURITY-CHECKLIST item 46(a)-(h) (and items 130, 134 for assertions): each invalid
    assertion is ``E400(invalid_grant)``."""
    await assert_e400(await bearer(as_client, build(partner_key, rogue_key)), "invalid_grant")


async def test_jwt_bearer_jti_replay(
    as_client: Client,
    partner_key: rsa.RSAPrivateKey,
) -> None:
    """SECURITY-CHECKLIST item 46(i): the same valid assertion (same ``jti``) a second time is
    ``E400(invalid_grant)``."""
    assertion = make_assertion(partner_key)
    await assert_tok200(await bearer(as_client, assertion))
    await assert_e400(await bearer(as_client, assertion), "invalid_grant")
