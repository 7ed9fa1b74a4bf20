"""Scopes (RFC 6749 section 3.3): ``parse_scope``, ``grant_scope`` and ``format_scope`` in
``gateway.oauth.rfc6749`` and ``check_scope_token`` in ``gateway.config.model``. Pure.

Covered: scope tokens are NQCHAR (%x21 / %x23-5B / %x5D-7E); space-delimited, duplicates
removed in order, case-sensitive; absent scope is None and then means the client's scopes
without ``offline_access``; a scope the client may not have is ``invalid_scope`` (no silent
down-scoping).

SECURITY-CHECKLIST items 6 (``invalid_scope``) and 21 (b) (an empty scope is absent, so the
client's default applies).
"""

from __future__ import annotations

import re

import pytest

from gateway.config.model import AppConfig, check_scope_token
from gateway.oauth.errors import InvalidScopeError
from gateway.oauth.rfc6749 import format_scope, grant_scope, parse_scope

NQCHAR = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"\\')


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("openid", ("openid",), id="one"),
        pytest.param("openid profile email", ("openid", "profile", "email"), id="three"),
        pytest.param("email openid", ("email", "openid"), id="order-kept"),
        pytest.param("openid openid", ("openid",), id="duplicate"),
        pytest.param("a b a c b", ("a", "b", "c"), id="duplicates-first-kept"),
        pytest.param("Openid openid", ("Openid", "openid"), id="case-sensitive"),
        pytest.param("openid  profile", ("openid", "profile"), id="double-space"),
        pytest.param(" openid ", ("openid",), id="outer-spaces"),
        pytest.param("orders.read admin:all", ("orders.read", "admin:all"), id="punctuation"),
        pytest.param(NQCHAR, (NQCHAR,), id="every-nqchar"),
        pytest.param("urn:example:scope/x?y=1#z", ("urn:example:scope/x?y=1#z",), id="uri-like"),
    ],
)
def test_parse_scope(value: str | None, expected: tuple[str, ...] | None) -> None:
    assert parse_scope(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('openid "profile"', id="double-quote"),
        pytest.param("openid a\\b", id="backslash"),
        pytest.param("openid é", id="non-ascii"),
        pytest.param("openid\tprofile", id="tab"),
        pytest.param("openid\nprofile", id="newline"),
        pytest.param("openid\x7f", id="del"),
        pytest.param("openid\x00", id="nul"),
        pytest.param("openid\u00a0profile", id="no-break-space"),
    ],
)
def test_parse_scope_refuses_invalid_characters(value: str) -> None:
    with pytest.raises(InvalidScopeError) as info:
        parse_scope(value)
    assert (info.value.error, info.value.status, info.value.description) == (
        "invalid_scope",
        400,
        "the scope contains an invalid character",
    )


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("a b", id="space"),
        pytest.param('a"b', id="quote"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("é", id="non-ascii"),
        pytest.param("a\x1f", id="control"),
    ],
)
def test_check_scope_token_refuses(token: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(repr(token))} is not a valid scope token$"):
        check_scope_token(token)


CLIENT = AppConfig.model_validate(
    {
        "client_id": "conf",
        "client_secret": "s3cr3t",
        "scopes": ["openid", "profile", "email", "offline_access", "orders.read"],
    }
)
ONLY_OFFLINE = AppConfig.model_validate(
    {"client_id": "o", "client_secret": "s", "scopes": ["offline_access"]}
)


@pytest.mark.parametrize(
    ("requested", "client", "expected"),
    [
        pytest.param(None, CLIENT, ("openid", "profile", "email", "orders.read"), id="default"),
        pytest.param(("orders.read",), CLIENT, ("orders.read",), id="subset"),
        pytest.param(("offline_access",), CLIENT, ("offline_access",), id="offline-on-request"),
        pytest.param((), CLIENT, (), id="empty-request"),
        pytest.param(None, ONLY_OFFLINE, (), id="default-without-offline"),
    ],
)
def test_grant_scope(
    requested: tuple[str, ...] | None, client: AppConfig, expected: tuple[str, ...]
) -> None:
    assert grant_scope(requested, client) == expected


@pytest.mark.parametrize(
    "requested",
    [
        pytest.param(("openid", "admin:all"), id="6-admin-all"),
        pytest.param(("orders.admin",), id="orders-admin"),
        pytest.param(("OPENID",), id="case-sensitive"),
        pytest.param(("openid", "openid2"), id="prefix-is-not-enough"),
    ],
)
def test_grant_scope_refuses_what_the_client_may_not_have(requested: tuple[str, ...]) -> None:
    with pytest.raises(InvalidScopeError) as info:
        grant_scope(requested, CLIENT)
    assert info.value.description == "the requested scope is not allowed for this client"


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        pytest.param((), "", id="empty"),
        pytest.param(("openid",), "openid", id="one"),
        pytest.param(("openid", "orders.read"), "openid orders.read", id="two"),
    ],
)
def test_format_scope(scope: tuple[str, ...], expected: str) -> None:
    assert format_scope(scope) == expected
    assert parse_scope(expected) == scope
