"""Client authentication at the token endpoint (SECURITY-CHECKLIST section F, items 69-75)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.http.checklist import TOKEN, assert_e400, assert_e401c, assert_tok200
from tests.http.conftest import CLIENTS, ISSUER, RELAXED_LIMITS, basic
from tests.support import Client, write_conf

SPECIAL_ID = "conf:special"
SPECIAL_SECRET = "p@ss:w%rd+/"


@pytest.fixture
def as_conf_path(tmp_path: Path) -> Path:
    """The checklist clients plus ``conf:special`` (item 73), for every test of this module."""
    special = {
        "client_id": SPECIAL_ID,
        "client_secret": SPECIAL_SECRET,
        "scopes": ["orders.read"],
        "grant_types": ["client_credentials"],
    }
    registered = {
        f"{method}only": {
            "client_id": f"{method}only",
            "client_secret": "bos3cr3t",
            "scopes": ["orders.read"],
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": f"client_secret_{method}",
        }
        for method in ("basic", "post")
    }
    return write_conf(
        tmp_path / "conf",
        gateway={"issuer": ISSUER, "limits": RELAXED_LIMITS},
        clients={**CLIENTS, "special": special, **registered},
    )


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


# --- item 69 ----------------------------------------------------------------------------------


async def test_client_secret_basic(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 69(a): ``BASIC(cc)`` with a form body."""
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic Y2M6Y2NzM2NyM3Q="},
    )
    body = await assert_tok200(resp)
    assert claims_of(body["access_token"])["client_id"] == "cc"


async def test_client_secret_post(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 69(b): id and secret in the form body."""
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_id": "cc", "client_secret": "ccs3cr3t"},
    )
    body = await assert_tok200(resp)
    assert claims_of(body["access_token"])["client_id"] == "cc"


async def test_client_secret_in_json_body(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 69(c): id and secret in a JSON body."""
    resp = await as_client.post(
        TOKEN,
        json={"grant_type": "client_credentials", "client_id": "cc", "client_secret": "ccs3cr3t"},
    )
    body = await assert_tok200(resp)
    assert claims_of(body["access_token"])["client_id"] == "cc"


# --- item 70 ----------------------------------------------------------------------------------


async def test_wrong_secret_over_basic_is_401_with_basic_challenge(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 70: ``BASIC(conf,wrong)`` is E401C with ``Basic realm=...``."""
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic Y29uZjp3cm9uZw=="},
    )
    await assert_e401c(resp)


# --- item 71 ----------------------------------------------------------------------------------


async def test_wrong_secret_and_unknown_client_in_body_are_identical(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 71(a)(b): invalid_client, 401 with a challenge, and the same
    status and body for a wrong secret and an unknown client (form and JSON)."""
    wrong = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_id": "cc", "client_secret": "wrong"},
    )
    unknown = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
    )
    assert await assert_e401c(wrong) == await assert_e401c(unknown)
    assert await wrong.read() == await unknown.read()
    wrong_json = await as_client.post(
        TOKEN,
        json={"grant_type": "client_credentials", "client_id": "cc", "client_secret": "wrong"},
    )
    unknown_json = await as_client.post(
        TOKEN,
        json={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
    )
    await assert_e401c(wrong_json)
    await assert_e401c(unknown_json)
    assert await wrong_json.read() == await unknown_json.read() == await wrong.read()


async def test_wrong_and_unknown_over_basic_are_identical(as_client: Client) -> None:
    """SECURITY-CHECKLIST items 70-71: over Basic too, a wrong secret and an unknown client are
    indistinguishable."""
    wrong = await as_client.post(
        TOKEN, data={"grant_type": "client_credentials"}, headers=basic("cc", "wrong")
    )
    unknown = await as_client.post(
        TOKEN, data={"grant_type": "client_credentials"}, headers=basic("nobody", "x")
    )
    await assert_e401c(wrong)
    await assert_e401c(unknown)
    assert await wrong.read() == await unknown.read()


async def test_confidential_client_without_secret_is_invalid_client(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 71(c): ``client_id=cc`` alone is E401C (401; no Basic challenge,
    since the client identified itself in the body)."""
    resp = await as_client.post(TOKEN, data={"grant_type": "client_credentials", "client_id": "cc"})
    await assert_e401c(resp)


async def test_no_client_authentication_at_all_is_invalid_client(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 71: no client identification at all is ``invalid_client``."""
    resp = await as_client.post(TOKEN, data={"grant_type": "client_credentials"})
    await assert_e401c(resp, anonymous=True)


# --- item 72 ----------------------------------------------------------------------------------


async def test_basic_and_body_secret_together_is_invalid_request(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 72(a): two authentication methods at once."""
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_id": "cc", "client_secret": "ccs3cr3t"},
        headers=basic("cc", "ccs3cr3t"),
    )
    await assert_e400(resp, "invalid_request")


async def test_basic_with_other_client_id_in_body_never_yields_a_token(
    as_client: Client,
) -> None:
    """SECURITY-CHECKLIST item 72(b): ``BASIC(cc)`` with ``client_id=conf`` in the body is
    ``E400(invalid_request)``; never a token for ``conf``."""
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_id": "conf"},
        headers=basic("cc", "ccs3cr3t"),
    )
    await assert_e400(resp, "invalid_request")


async def test_basic_with_empty_body_secret_is_invalid_request(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 72: an (empty) ``client_secret`` in the body beside Basic still
    counts as a second method."""
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_secret": ""},
        headers=basic("cc", "ccs3cr3t"),
    )
    await assert_e400(resp, "invalid_request")


# --- item 73 ----------------------------------------------------------------------------------


async def test_basic_credentials_are_form_url_decoded(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 73: ``conf:special`` / ``p@ss:w%rd+/`` form-encoded in Basic."""
    header = "Basic Y29uZiUzQXNwZWNpYWw6cCU0MHNzJTNBdyUyNXJkJTJCJTJG"
    assert basic(SPECIAL_ID, SPECIAL_SECRET)["Authorization"] == header
    resp = await as_client.post(
        TOKEN, data={"grant_type": "client_credentials"}, headers={"Authorization": header}
    )
    body = await assert_tok200(resp)
    claims = claims_of(body["access_token"])
    assert claims["client_id"] == SPECIAL_ID
    assert claims["sub"] == f"client:{SPECIAL_ID}"


async def test_special_characters_in_body_credentials(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 73 (body variant of item 69(b)): the same client by
    ``client_secret_post`` with a form-encoded body."""
    resp = await as_client.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_id": SPECIAL_ID,
            "client_secret": SPECIAL_SECRET,
        },
    )
    body = await assert_tok200(resp)
    assert claims_of(body["access_token"])["client_id"] == SPECIAL_ID


# --- item 74 ----------------------------------------------------------------------------------


MALFORMED_AUTHORIZATION = [
    pytest.param("Basic", id="basic-no-value"),
    pytest.param("Basic ", id="basic-space"),
    pytest.param("Basic !!!notbase64!!!", id="not-base64"),
    pytest.param("Basic Y2M=", id="no-colon"),
    pytest.param("Basic Og==", id="colon-only"),
    pytest.param("Basic " + base64.b64encode(b"cc:\xff\xfe").decode(), id="not-utf8"),
    pytest.param("Basic " + base64.b64encode(b":ccs3cr3t").decode(), id="empty-id"),
    pytest.param("Bearer xyz", id="bearer"),
    pytest.param('Digest username="cc"', id="digest"),
    pytest.param("Basic " + base64.b64encode(b"a" * 12288).decode(), id="16k-base64"),
]


@pytest.mark.parametrize("authorization", MALFORMED_AUTHORIZATION)
async def test_malformed_authorization_never_5xx(
    as_client: Client,
    authorization: str,
) -> None:
    """SECURITY-CHECKLIST item 74: E401C (Basic challenge) or ``E400(invalid_request)``; never a
    5xx or a hang, and never a token."""
    started = time.monotonic()
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": authorization},
    )
    assert time.monotonic() - started < 5
    if resp.status == 401:
        await assert_e401c(resp)
    else:
        await assert_e400(resp, "invalid_request")


# --- item 75 ----------------------------------------------------------------------------------


async def test_basic_only_client_refuses_the_secret_in_the_body(
    as_client: Client,
) -> None:
    """SECURITY-CHECKLIST item 75: ``basiconly`` is registered for ``client_secret_basic``; the
    right secret sent in the body is E401C, the same credentials via Basic succeed."""
    resp = await as_client.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_id": "basiconly",
            "client_secret": "bos3cr3t",
        },
    )
    await assert_e401c(resp)
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers=basic("basiconly", "bos3cr3t"),
    )
    body = await assert_tok200(resp)
    assert claims_of(body["access_token"])["client_id"] == "basiconly"


async def test_post_only_client_refuses_basic(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 75, the other way round: ``postonly`` (``client_secret_post``)
    sending the right secret by Basic is E401C; in the body it succeeds."""
    resp = await as_client.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers=basic("postonly", "bos3cr3t"),
    )
    await assert_e401c(resp)
    resp = await as_client.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_id": "postonly",
            "client_secret": "bos3cr3t",
        },
    )
    await assert_tok200(resp)


async def test_registered_method_applies_to_introspection(
    as_client: Client,
) -> None:
    """Item 75 at ``/oauth2/introspect``: the registration binds every client-authenticated
    endpoint, not only the token endpoint."""
    token = (
        await assert_tok200(
            await as_client.post(
                TOKEN,
                data={"grant_type": "client_credentials"},
                headers=basic("basiconly", "bos3cr3t"),
            )
        )
    )["access_token"]
    resp = await as_client.post(
        "/oauth2/introspect",
        data={"token": token, "client_id": "basiconly", "client_secret": "bos3cr3t"},
    )
    await assert_e401c(resp)
    resp = await as_client.post(
        "/oauth2/introspect", data={"token": token}, headers=basic("basiconly", "bos3cr3t")
    )
    assert resp.status == 200
    assert (await resp.json())["active"] is True
