"""Hostile shapes (issue 9 item 8): request-smuggling framings get 400 and a closed connection
and never reach an upstream as a second request (SECURITY-CHECKLIST item 108); JWTs validly
signed by a trusted key but carrying ``crit``, or duplicate members, are refused in every slot
the gateway accepts a token in (item 133)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.keys import AUTHORITY, CONFIG
from gateway.tokens.keys import SigningKey
from tests.http.conftest import EXCHANGE, basic
from tests.http.proxy_support import AT, Gateway, running_gateway, send

# Sent to an ``auth: none`` route, so that were it ever read as a request of its own it would
# reach the upstream (a route needing a session would stop it at the gateway's own 401).
SMUGGLED = b"GET /public/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n"
FRAMINGS = {
    "length and chunked": (
        b"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "two lengths": b"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: 4, 5\r\n\r\nabcd"
    + SMUGGLED,
    "two length lines": (
        b"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n"
        b"abcd" + SMUGGLED
    ),
    "chunked not last": (
        b"POST {path} HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED
    ),
    "space before colon": (
        b"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length : 4\r\n\r\nabcd" + SMUGGLED
    ),
    "obs-fold": b"GET {path} HTTP/1.1\r\nHost: gw\r\nX-A: a\r\n b\r\n\r\n" + SMUGGLED,
    "no host": b"GET {path} HTTP/1.1\r\n\r\n" + SMUGGLED,
    "two hosts": b"GET {path} HTTP/1.1\r\nHost: gw\r\nHost: other\r\n\r\n" + SMUGGLED,
}


@pytest.fixture
async def gw(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path / "conf", database_url) as gateway:
        yield gateway


@pytest.mark.parametrize("path", ["/public/1", "/api/orders/1", "/oauth2/token"])
@pytest.mark.parametrize("name", list(FRAMINGS))
async def test_smuggling_framings_are_400_and_closed(gw: Gateway, name: str, path: str) -> None:
    """Item 108, on a proxied route and on the token endpoint: 400, the connection closed
    after it (nothing is read as a next request), and no upstream ever sees a request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(FRAMINGS[name].replace(b"{path}", path.encode()))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)  # read() ends at the close
    writer.close()
    # Every status line, wherever it starts (a second answer follows a body without CRLF).
    assert answer.count(b"HTTP/1.") == 1, answer[:300]
    assert answer.split(b" ", 2)[1] == b"400", answer[:200]
    assert gw.upstream.requests == []


# --- item 133: crit and duplicate members ------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_raw(key: SigningKey, header: str, claims: str) -> str:
    """A compact JWS over exactly these JSON texts (duplicate members included), signed with
    the gateway's own key: only the content is hostile, never the signature."""
    signing_input = f"{b64(header.encode())}.{b64(claims.encode())}".encode()
    algorithm: Any = (
        RSAAlgorithm(RSAAlgorithm.SHA256) if key.alg == "RS256" else ECAlgorithm(ECAlgorithm.SHA256)
    )
    signature = algorithm.sign(signing_input, key.private_key)
    return f"{signing_input.decode()}.{b64(signature)}"


def hostile_variants(key: SigningKey, claims: dict[str, Any], typ: str) -> dict[str, str]:
    """Item 133 (a)-(c) of a token whose claims are otherwise valid."""
    header = {"alg": key.alg, "kid": key.kid, "typ": typ}
    body = json.dumps(claims)
    other = json.dumps({**claims, "sub": "00000000-0000-0000-0000-000000000000"})
    return {
        "crit": sign_raw(key, json.dumps({**header, "crit": ["exp2"], "exp2": 1}), body),
        "two alg": sign_raw(key, json.dumps(header)[:-1] + f', "alg": "{key.alg}"}}', body),
        "two sub": sign_raw(key, json.dumps(header), other[:-1] + f', "sub": "{claims["sub"]}"}}'),
    }


async def real_access_token(gw: Gateway) -> tuple[str, dict[str, Any], SigningKey]:
    signed = await gw.sign_in(client_id="spab")
    token = signed.body["access_token"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    key = gw.server.app[AUTHORITY].keyring.signing
    assert key.kid == json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))["kid"]
    return token, claims, key


async def test_the_valid_original_is_accepted_everywhere(gw: Gateway) -> None:
    """Control: re-signing the token's own claims with sign_raw gives a token every slot takes,
    so each refusal below is about crit or the duplicates, not the signing."""
    _, claims, key = await real_access_token(gw)
    token = sign_raw(
        key, json.dumps({"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}), json.dumps(claims)
    )
    answer = await send(gw, "/api/orders/1", headers={"Authorization": f"Bearer {token}"})
    assert answer.status == 200, answer.text
    async with gw.bare().get(
        gw.url("/oauth2/userinfo"), headers={"Authorization": f"Bearer {token}"}
    ) as info:
        assert info.status == 200


@pytest.mark.parametrize("variant", ["crit", "two alg", "two sub"])
async def test_hostile_jwts_are_refused_in_every_slot(gw: Gateway, variant: str) -> None:
    """Item 133: the token handler (Bearer header and sealed cookie), userinfo, introspection,
    token exchange and the logout hint all refuse the token."""
    _, claims, key = await real_access_token(gw)
    access = hostile_variants(key, claims, "at+jwt")[variant]
    id_claims = {**claims, "aud": "spab", "nonce": "n"}
    id_token = hostile_variants(key, id_claims, "JWT")[variant]

    bearer = await send(gw, "/api/orders/1", headers={"Authorization": f"Bearer {access}"})
    assert bearer.status == 401, bearer.text
    config = gw.server.app[CONFIG].current
    sealer = gw.server.app[AUTHORITY].cookie_sealer(config)
    cookie = sealer.seal(access.encode(), purpose=f"cookie:{AT}")
    by_cookie = await send(gw, "/api/orders/1", cookies=f"{AT}={cookie}")
    assert by_cookie.status == 401, by_cookie.text
    assert gw.upstream.requests == []

    async with gw.bare().get(
        gw.url("/oauth2/userinfo"), headers={"Authorization": f"Bearer {access}"}
    ) as info:
        assert info.status == 401
        assert 'error="invalid_token"' in info.headers["WWW-Authenticate"]
    async with gw.bare().post(
        gw.url("/oauth2/introspect"), data={"token": access}, headers=basic("rs", "rss3cr3t")
    ) as introspected:
        assert (await introspected.json()) == {"active": False}
    async with gw.bare().post(
        gw.url("/oauth2/token"),
        data={
            "grant_type": EXCHANGE,
            "subject_token": access,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        },
        headers=basic("conf", "s3cr3t"),
    ) as exchanged:
        body = await exchanged.json()
        assert exchanged.status == 400, body
        assert body["error"] == "invalid_request", body
    async with gw.bare().get(
        gw.url("/oauth2/logout"),
        params={
            "id_token_hint": id_token,
            "post_logout_redirect_uri": "https://rp.example.test/bye",
        },
    ) as logout:
        assert logout.status == 400
        assert "id_token_hint is not valid" in await logout.text()


async def test_the_framing_check_sees_a_second_request(gw: Gateway) -> None:
    """Control for the test above: a well-framed request followed by the smuggled one is two
    answers, and the second does reach the upstream; so one answer and an untouched upstream
    above really mean the smuggled request was never read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"POST /public/1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\nabcd" + SMUGGLED)
    await writer.drain()
    answer = b""
    for _ in range(50):
        answer += await asyncio.wait_for(reader.read(65536), timeout=5)
        if answer.count(b"HTTP/1.1 ") == 2:
            break
    writer.close()
    assert answer.count(b"HTTP/1.1 ") == 2, answer[:300]
    assert [r.path_qs for r in gw.upstream.requests] == ["/v1/public/1", "/v1/public/smuggled"]
