"""The pure parts of token revocation (RFC 7009, ``gateway.oauth.rfc7009``) and introspection
(RFC 7662, ``gateway.oauth.rfc7662``): no database, no server.

Covered: ``revocation_token`` (``token`` required, ``token_type_hint`` ignored, oversize values
answered as an unknown token); ``audience_allows`` (which resource server may learn about an
access token); the introspection answers (``{"active": false}`` with nothing else, the members of
an active access token and of a refresh token).

SECURITY-CHECKLIST items 118 and 119 (revocation: wrong or unknown hint, empty body), 122
(introspection answers; inactive tokens say nothing more; audience of the resource server) and
123 (``token`` required).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.oauth.errors import InvalidRequestError
from gateway.oauth.params import Params, parse_form
from gateway.oauth.rfc7009 import MAX_TOKEN_LENGTH, revocation_token
from gateway.oauth.rfc7662 import (
    INACTIVE,
    access_token_answer,
    audience_allows,
    refresh_token_answer,
)

# --- RFC 7009 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        pytest.param([("token", "rt-1")], "rt-1", id="token"),
        pytest.param(
            [("token", "rt-1"), ("token_type_hint", "refresh_token")], "rt-1", id="118-hint"
        ),
        pytest.param(
            [("token", "at-1"), ("token_type_hint", "refresh_token")], "at-1", id="118-wrong-hint"
        ),
        pytest.param([("token", "rt-1"), ("token_type_hint", "foo")], "rt-1", id="119d-unknown"),
        pytest.param([("token", "not-a-real-token")], "not-a-real-token", id="119a-unknown"),
        pytest.param([("token", "t" * MAX_TOKEN_LENGTH)], "t" * MAX_TOKEN_LENGTH, id="at-limit"),
        pytest.param([("token", "t" * (MAX_TOKEN_LENGTH + 1))], None, id="over-limit-is-no-token"),
    ],
)
def test_revocation_token(pairs: list[tuple[str, str]], expected: str | None) -> None:
    params = Params(pairs, long_values=frozenset({"token"}))
    assert revocation_token(params) == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="119b-empty-body"),
        pytest.param(b"token=", id="empty-token"),
        pytest.param(b"token_type_hint=refresh_token", id="hint-only"),
    ],
)
def test_revocation_without_token_is_invalid_request(body: bytes) -> None:
    with pytest.raises(InvalidRequestError) as info:
        revocation_token(parse_form(body))
    assert (info.value.error, info.value.status, info.value.description) == (
        "invalid_request",
        400,
        "parameter token is required",
    )


def test_repeated_token_is_refused_before_revocation() -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_form(b"token=a&token=b")
    assert info.value.description == "parameter token is repeated"


# --- RFC 7662 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "audiences", "resource_client_id", "allowed"),
    [
        pytest.param({"aud": "orders-api"}, ["orders-api"], "rs", True, id="122a-same-audience"),
        pytest.param(
            {"aud": ["billing-api", "orders-api"]}, ["orders-api"], "rs", True, id="aud-list"
        ),
        pytest.param({"aud": "billing-api"}, ["orders-api"], "rs", False, id="122f-other-aud"),
        pytest.param({"aud": ["billing-api"]}, ["orders-api"], "rs", False, id="aud-list-other"),
        pytest.param({}, ["orders-api"], "rs", False, id="no-aud"),
        pytest.param({"aud": []}, ["orders-api"], "rs", False, id="empty-aud-list"),
        pytest.param(
            {"aud": "billing-api", "client_id": "rs"}, ["orders-api"], "rs", True, id="own-token"
        ),
        pytest.param(
            {"aud": "billing-api", "client_id": "conf"}, ["orders-api"], "rs", False, id="other"
        ),
        pytest.param({"aud": "anything"}, [], "rs", True, id="rs-without-audiences"),
        pytest.param({"aud": "Orders-API"}, ["orders-api"], "rs", False, id="case-sensitive"),
    ],
)
def test_audience_allows(
    claims: dict[str, Any], audiences: list[str], resource_client_id: str, allowed: bool
) -> None:
    assert audience_allows(claims, audiences, resource_client_id) is allowed


def test_inactive_answer_is_exactly_active_false() -> None:
    """Item 122 (c)-(f): nothing but ``active``."""
    assert dict(INACTIVE) == {"active": False}


@pytest.mark.parametrize(
    ("claims", "username", "expected"),
    [
        pytest.param(
            {
                "iss": "https://as.example.test",
                "sub": "u1",
                "aud": "orders-api",
                "exp": 2000,
                "iat": 1000,
                "scope": "openid orders.read",
                "client_id": "conf",
                "sid": "s1",
                "jti": "j1",
                "nonce": "n",
                "auth_time": 999,
            },
            "alice",
            {
                "active": True,
                "token_type": "Bearer",
                "iss": "https://as.example.test",
                "sub": "u1",
                "aud": "orders-api",
                "exp": 2000,
                "iat": 1000,
                "scope": "openid orders.read",
                "client_id": "conf",
                "sid": "s1",
                "username": "alice",
            },
            id="122a-user-token",
        ),
        pytest.param(
            {"client_id": "cc", "exp": 2000, "iat": 1000, "scope": "orders.read"},
            None,
            {
                "active": True,
                "token_type": "Bearer",
                "client_id": "cc",
                "exp": 2000,
                "iat": 1000,
                "scope": "orders.read",
            },
            id="client-credentials-token",
        ),
        pytest.param(
            {"sub": "u1", "act": {"sub": "svc"}},
            "",
            {"active": True, "token_type": "Bearer", "sub": "u1", "act": {"sub": "svc"}},
            id="exchanged-token-keeps-act",
        ),
    ],
)
def test_access_token_answer(
    claims: dict[str, Any], username: str | None, expected: dict[str, Any]
) -> None:
    assert access_token_answer(claims, username) == expected


@pytest.mark.parametrize(
    ("user_id", "username", "extra"),
    [
        pytest.param("u1", "alice", {"sub": "u1", "username": "alice"}, id="user"),
        pytest.param(None, None, {}, id="client-only"),
    ],
)
def test_refresh_token_answer(
    user_id: str | None, username: str | None, extra: dict[str, str]
) -> None:
    answer = refresh_token_answer(
        client_id="conf",
        scope=("openid", "offline_access"),
        issued=datetime(2026, 1, 1, tzinfo=UTC),
        expires=datetime(2026, 3, 2, tzinfo=UTC),
        issuer="https://as.example.test",
        user_id=user_id,
        username=username,
    )
    assert answer == {
        "active": True,
        "token_type": "refresh_token",
        "client_id": "conf",
        "scope": "openid offline_access",
        "iat": 1767225600,
        "exp": 1772409600,
        "iss": "https://as.example.test",
        **extra,
    }
