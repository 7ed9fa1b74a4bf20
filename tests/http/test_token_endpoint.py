"""The token endpoint's common rules (SECURITY-CHECKLIST section B.1, items 17-24) and its
handling of hostile bodies (items 19, 124, 126-128), through real HTTP against a real database."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from urllib.parse import quote

import jwt
import pytest
from aiohttp import ClientResponse

from tests.http.checklist import TOKEN, assert_e400, assert_e401c, assert_tok200
from tests.http.conftest import basic
from tests.support import Client, GatewayTestServer

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSONCT = {"Content-Type": "application/json"}


async def post_raw(
    client: Client,
    body: bytes | str,
    content_type: str | None = "application/x-www-form-urlencoded",
    headers: dict[str, str] | None = None,
) -> ClientResponse:
    all_headers = dict(headers or {})
    skip: list[str] = []
    if content_type is None:
        skip.append("Content-Type")
    else:
        all_headers["Content-Type"] = content_type
    data = body.encode() if isinstance(body, str) else body
    return await client.post(TOKEN, data=data, headers=all_headers, skip_auto_headers=skip)


# --- item 17 ----------------------------------------------------------------------------------


async def test_get_is_refused_with_405_and_allow_post(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 17: GET /token is 405 with ``Allow: POST``; no token."""
    resp = await as_client.get(
        TOKEN, params={"grant_type": "client_credentials"}, headers=basic("cc", "ccs3cr3t")
    )
    text = await resp.text()
    assert resp.status == 405, text
    allowed = {m.strip() for m in resp.headers["Allow"].split(",")}
    assert allowed == {"POST"}
    assert "access_token" not in text


# --- item 18 ----------------------------------------------------------------------------------


async def test_client_credentials_success_shape_and_caching(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 18: TOK200 with no-store / no-cache, JSON number expires_in."""
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "scope": "orders.read"},
        headers=basic("cc", "ccs3cr3t"),
    )
    body = await assert_tok200(resp)
    assert body["scope"] == "orders.read"
    assert "refresh_token" not in body


async def test_access_tokens_are_distinct_and_unpredictable(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 18: 200 client_credentials access tokens are all distinct and each
    carries at least 128 bits of randomness (its ``jti``), none sequential."""
    tokens: list[str] = []
    jtis: list[str] = []
    deadline = time.monotonic() + 120
    for _ in range(200):
        assert time.monotonic() < deadline, "issuing 200 tokens took too long"
        resp = await as_client.post(
            TOKEN,
            data={"grant_type": "client_credentials", "scope": "orders.read"},
            headers=basic("cc", "ccs3cr3t"),
        )
        body = await assert_tok200(resp)
        tokens.append(body["access_token"])
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        jtis.append(str(claims["jti"]))
    assert len(set(tokens)) == 200
    assert len(set(jtis)) == 200
    for jti in jtis:
        assert re.fullmatch(r"[0-9a-f]{32,}", jti), jti  # >= 128 bits in hex
    values = sorted(int(j, 16) for j in jtis)
    gaps = {b - a for a, b in itertools.pairwise(values)}
    assert len(gaps) > 150, "jti values look sequential"


# --- item 19 ----------------------------------------------------------------------------------


async def test_error_code_for_a_hostile_code_is_invalid_grant(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 19: the exact request of the item (a code holding ``"``, CR, LF,
    ``\\`` and ``<script>``) is ``E400(invalid_grant)`` with a clean description."""
    resp = await post_raw(
        as_client,
        "grant_type=authorization_code&code=%22%0D%0A%5C%3Cscript%3E"
        "&redirect_uri=https%3A%2F%2Frp.example.test%2Fcb",
        headers=basic("conf", "s3cr3t"),
    )
    body = await assert_e400(resp, "invalid_grant")
    description = body.get("error_description", "")
    assert "<script" not in description.lower()


async def test_error_description_never_reflects_input(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 19: hostile values in several parameters never come back in
    ``error_description`` (no CR, LF, TAB, quote, backslash, nor the raw input)."""
    marker = "<script>alert(1)</script>"
    cases = [
        {"grant_type": "authorization_code", "code": f'"{marker}\\'},
        {"grant_type": "refresh_token", "refresh_token": f"{marker}"},
        {"grant_type": "client_credentials", "scope": f"{marker}"},
        {"grant_type": f"urn:{marker}"},
        {"grant_type": "password", "username": f"{marker}\r\n", "password": "x"},
    ]
    for params in cases:
        resp = await as_client.post(TOKEN, data=params, headers=basic("conf", "s3cr3t"))
        assert resp.status == 400, await resp.text()
        body = await assert_e400(
            resp,
            "invalid_request",
            "invalid_grant",
            "invalid_scope",
            "unsupported_grant_type",
        )
        text = json.dumps(body)
        assert "<script" not in text.lower(), body
        assert "alert(" not in text, body
    repeated = f"grant_type=client_credentials&{quote(marker)}=1&{quote(marker)}=2"
    resp = await post_raw(as_client, repeated, headers=basic("conf", "s3cr3t"))
    body = await assert_e400(resp, "invalid_request")
    assert "<script" not in json.dumps(body).lower(), body


# --- item 20 ----------------------------------------------------------------------------------


async def test_missing_grant_type_is_invalid_request(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 20(a)."""
    resp = await as_client.post(
        TOKEN, data={"scope": "orders.read"}, headers=basic("cc", "ccs3cr3t")
    )
    await assert_e400(resp, "invalid_request")


async def test_unknown_grant_type_is_unsupported_grant_type(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 20(b)."""
    resp = await as_client.post(
        TOKEN, data={"grant_type": "urn:example:unknown"}, headers=basic("cc", "ccs3cr3t")
    )
    await assert_e400(resp, "unsupported_grant_type")


# --- item 21 ----------------------------------------------------------------------------------


async def test_repeated_parameter_is_invalid_request(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 21(a): ``scope`` twice."""
    resp = await post_raw(
        as_client,
        "grant_type=client_credentials&scope=a&scope=b",
        headers=basic("cc", "ccs3cr3t"),
    )
    await assert_e400(resp, "invalid_request")


async def test_repeated_grant_type_even_identical_is_invalid_request(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 21(a): a parameter repeated with the same value is still refused."""
    resp = await post_raw(
        as_client,
        "grant_type=client_credentials&grant_type=client_credentials",
        headers=basic("cc", "ccs3cr3t"),
    )
    await assert_e400(resp, "invalid_request")


async def test_unknown_and_empty_parameters_are_ignored(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 21(b): ``foo=bar&scope=`` gives TOK200 with the default scope."""
    resp = await post_raw(
        as_client, "grant_type=client_credentials&foo=bar&scope=", headers=basic("cc", "ccs3cr3t")
    )
    body = await assert_tok200(resp)
    assert body["scope"] == "orders.read"


# --- item 22 ----------------------------------------------------------------------------------


async def test_grant_not_enabled_for_client_is_unauthorized_client(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 22(a): ``cc`` may not use the password grant; (b)/(c) for
    ``conf2`` with jwt-bearer and token exchange (the request is refused before the grant)."""
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "password", "username": "alice", "password": "Correct-Horse-9"},
        headers=basic("cc", "ccs3cr3t"),
    )
    await assert_e400(resp, "unauthorized_client")
    alice = await as_client.post(
        TOKEN,
        data={"grant_type": "password", "username": "alice", "password": "Correct-Horse-9"},
        headers=basic("conf", "s3cr3t"),
    )
    access = (await assert_tok200(alice))["access_token"]
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": access},
        headers=basic("conf2", "s3cr3t2"),
    )
    await assert_e400(resp, "unauthorized_client")
    resp = await as_client.post(
        TOKEN,
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": access,
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        },
        headers=basic("conf2", "s3cr3t2"),
    )
    await assert_e400(resp, "unauthorized_client")


# --- item 23 ----------------------------------------------------------------------------------


async def test_credentials_in_query_string_are_refused_and_not_logged(
    as_client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SECURITY-CHECKLIST item 23: ``POST /token?client_id=cc&client_secret=...`` is
    ``E400(invalid_request)``, and the secret is not in the logs."""
    caplog.set_level(logging.DEBUG)
    resp = await as_client.post(
        TOKEN + "?client_id=cc&client_secret=ccs3cr3t",
        data={"grant_type": "client_credentials"},
    )
    await assert_e400(resp, "invalid_request")
    server = as_client.server
    assert isinstance(server, GatewayTestServer)
    for _ in range(50):  # the access line is written once the response has been sent
        if server.access_log.lines:
            break
        await asyncio.sleep(0.02)
    assert server.access_log.lines, "no access line was written"
    assert b"ccs3cr3t" not in b"".join(server.access_log.lines)
    for record in caplog.records:
        assert "ccs3cr3t" not in record.getMessage()
        assert "ccs3cr3t" not in repr(record.__dict__)


async def test_grant_parameters_in_query_string_are_refused(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 23: grant parameters in the URL are refused even with a valid
    body and valid Basic credentials."""
    resp = await as_client.post(
        TOKEN + "?scope=orders.read",
        data={"grant_type": "client_credentials"},
        headers=basic("cc", "ccs3cr3t"),
    )
    await assert_e400(resp, "invalid_request")


# --- item 24 ----------------------------------------------------------------------------------


async def test_json_body_is_equivalent_to_form(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 24(a): a JSON body gives TOK200, the same shape as a form body."""
    creds = {"grant_type": "client_credentials", "client_id": "cc", "client_secret": "ccs3cr3t"}
    as_json = await assert_tok200(await as_client.post(TOKEN, json=creds))
    as_form = await assert_tok200(await as_client.post(TOKEN, data=creds))
    assert set(as_json) == set(as_form)
    assert as_json["scope"] == as_form["scope"] == "orders.read"
    assert as_json["token_type"] == as_form["token_type"]


@pytest.mark.parametrize(
    ("body", "allow_401"),
    [
        pytest.param(
            '{"grant_type":["client_credentials"],"client_id":"cc","client_secret":"ccs3cr3t"}',
            False,
            id="b-array-value",
        ),
        pytest.param(
            '{"grant_type":"client_credentials","grant_type":"password",'
            '"client_id":"cc","client_secret":"ccs3cr3t"}',
            False,
            id="c-duplicate-member",
        ),
        pytest.param(
            '{"grant_type":"client_credentials","client_id":"cc","client_secret":{"$ne":null}}',
            True,
            id="d-operator-object",
        ),
        pytest.param('[{"grant_type":"client_credentials"}]', False, id="e-top-level-array"),
        pytest.param(
            '{"grant_type":"client_credentials","client_id":"cc","client_secret":"ccs3cr3t","n":1}',
            False,
            id="number-value",
        ),
        pytest.param(
            '{"grant_type":"client_credentials","client_id":"cc","client_secret":"ccs3cr3t",'
            '"flag":true}',
            False,
            id="boolean-value",
        ),
    ],
)
async def test_json_body_strictness(
    as_client: Client,
    body: str,
    allow_401: bool,
) -> None:
    """SECURITY-CHECKLIST item 24(b)-(e): non-string values, duplicate members and non-object
    bodies are ``E400(invalid_request)`` ((d) may be E401C); nothing is coerced."""
    resp = await post_raw(as_client, body, "application/json")
    if allow_401 and resp.status == 401:
        await assert_e401c(resp)
    else:
        await assert_e400(resp, "invalid_request")


# --- item 124 ---------------------------------------------------------------------------------


async def test_ten_mebibyte_body_is_413_json(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 124(a): a 10 MiB form body is refused with 413 (JSON), promptly."""
    payload = b"grant_type=client_credentials&a=" + b"a" * (10 * 1024 * 1024)
    started = time.monotonic()
    resp = await post_raw(as_client, payload, headers=basic("cc", "ccs3cr3t"))
    text = await resp.text()
    assert resp.status == 413, text
    assert resp.content_type == "application/json"
    assert "error" in json.loads(text)
    assert "access_token" not in text
    assert time.monotonic() - started < 10


# --- item 126 ---------------------------------------------------------------------------------


def _many_keys(count: int) -> bytes:
    members = ",".join(f'"k{i}":"v"' for i in range(count))
    return ('{"grant_type":"client_credentials",' + members + "}").encode()


MALFORMED_JSON = [
    pytest.param(b'{"grant_type":"client_credentials",', id="truncated"),
    pytest.param(b'{"grant_type":"client_credentials"}garbage', id="trailing-garbage"),
    pytest.param(b'{"grant_type":"client_\xff"}', id="invalid-utf8"),
    pytest.param(b"[" * 10000 + b"]" * 10000, id="nested-arrays-10000"),
    pytest.param(b'{"grant_type":"client_credentials","n":1e999999}', id="huge-number"),
    pytest.param(b'{"grant_type":"client_credentials","n":NaN}', id="nan"),
    pytest.param(_many_keys(50000), id="50000-keys"),
    pytest.param(b"", id="empty"),
    pytest.param(b"null", id="null"),
]


@pytest.mark.parametrize("body", MALFORMED_JSON)
async def test_malformed_json_is_invalid_request_quickly(
    as_client: Client,
    body: bytes,
) -> None:
    """SECURITY-CHECKLIST item 126: each malformed JSON body is ``E400(invalid_request)`` within
    1 s, never a 5xx (the 50,000-key body stays inside the 1 MiB body limit)."""
    assert len(body) < 1024 * 1024
    started = time.monotonic()
    resp = await post_raw(as_client, body, "application/json", headers=basic("cc", "ccs3cr3t"))
    await assert_e400(resp, "invalid_request")
    assert time.monotonic() - started < 1.0


# --- item 127 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("text/plain", b"grant_type=client_credentials", id="text-plain"),
        pytest.param(
            "text/plain", b'{"grant_type":"client_credentials"}', id="text-plain-json-body"
        ),
        pytest.param(
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\n'
            b"client_credentials\r\n--x--\r\n",
            id="multipart",
        ),
        pytest.param(None, b"grant_type=client_credentials", id="no-content-type"),
        pytest.param(
            "application/x-www-form-urlencoded; charset=ISO-8859-1",
            b"grant_type=client_credentials",
            id="iso-8859-1",
        ),
    ],
)
async def test_unsupported_content_types_are_refused(
    as_client: Client,
    content_type: str | None,
    body: bytes,
) -> None:
    """SECURITY-CHECKLIST item 127: text/plain, multipart, no Content-Type and a non-UTF-8
    charset are ``E400(invalid_request)``; the body is never parsed."""
    resp = await post_raw(as_client, body, content_type, headers=basic("cc", "ccs3cr3t"))
    await assert_e400(resp, "invalid_request")


async def test_iso_8859_1_secret_is_refused(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 127: a Latin-1 body with a non-ASCII secret is refused."""
    body = b"grant_type=client_credentials&client_id=cc&client_secret=ccs3cr3t%E9"
    resp = await post_raw(as_client, body, "application/x-www-form-urlencoded; charset=ISO-8859-1")
    await assert_e400(resp, "invalid_request")


# --- item 128 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        pytest.param(
            "grant_type=password&username=ali%00ce&password=Correct-Horse-9",
            ("invalid_request", "invalid_grant"),
            id="nul",
        ),
        pytest.param(
            "grant_type=password&username=%C0%AFalice&password=Correct-Horse-9",
            ("invalid_request", "invalid_grant"),
            id="overlong-utf8",
        ),
        pytest.param(
            "grant_type=password&username=alice&password=%",
            ("invalid_request", "invalid_grant"),
            id="dangling-percent",
        ),
        pytest.param("grant_type=client%5F%FFcredentials", ("invalid_request",), id="ff-byte"),
    ],
)
async def test_invalid_encodings_and_control_characters(
    as_client: Client,
    body: str,
    errors: tuple[str, ...],
) -> None:
    """SECURITY-CHECKLIST item 128: NUL, overlong UTF-8, a dangling ``%`` and a raw 0xFF are
    refused; never a 5xx and never a sign-in as alice through the NUL or overlong variants."""
    resp = await post_raw(as_client, body, headers=basic("conf", "s3cr3t"))
    await assert_e400(resp, *errors)
