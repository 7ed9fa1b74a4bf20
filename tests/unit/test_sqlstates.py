"""One SQLSTATE per cause (issue 10 item 4): every code the SQL functions raise has exactly one
entry in the table of ``gateway/store/errors.py``, and the table holds no code nothing raises."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest

from gateway.errors import InvalidInputError
from gateway.oauth import errors as oauth
from gateway.store.errors import CAUSES, SessionEndedError, translate

FUNCTIONS = Path(__file__).resolve().parents[2] / "sql" / "functions"
RAISE = re.compile(r"RAISE EXCEPTION '((?:[^']|'')*)' USING ERRCODE = '([A-Z0-9]{5})'")


def raised() -> dict[str, set[str]]:
    """SQLSTATE -> the messages raised with it, over every function file."""
    found: dict[str, set[str]] = {}
    for path in sorted(FUNCTIONS.glob("*.sql")):
        for message, code in RAISE.findall(path.read_text()):
            found.setdefault(code, set()).add(message)
    return found


def test_every_raised_code_is_in_the_table_and_every_entry_is_raised() -> None:
    codes = raised()
    assert set(codes) == set(CAUSES)


@pytest.mark.parametrize("code", sorted(set(CAUSES) - {"GW002"}))
def test_each_code_has_one_cause(code: str) -> None:
    """One message per code (GW002 is the one exception: the functions' checks of their own
    arguments, a caller's bug rather than a user's situation)."""
    assert len(raised()[code]) == 1, raised()[code]


@pytest.mark.parametrize(
    ("code", "error", "status"),
    [
        ("GS001", SessionEndedError, 400),
        ("GR005", oauth.InvalidScopeError, 400),
        ("GS005", oauth.AccessDeniedError, 403),
        ("GS006", oauth.InvalidClientError, 401),
        ("GW002", InvalidInputError, None),
    ],
)
def test_translate_uses_the_table(code: str, error: type[Exception], status: int | None) -> None:
    # What asyncpg raises for a RAISE ... USING ERRCODE = code of a daemon function.
    translated = translate(asyncpg.PostgresError.new({"C": code, "M": "raised"}))
    assert type(translated) is error
    assert str(translated) == CAUSES[code].message
    if status is not None:
        assert isinstance(translated, oauth.OAuthError)
        assert translated.status == status


def test_a_session_that_ended_is_invalid_grant_to_the_token_endpoint() -> None:
    assert issubclass(SessionEndedError, oauth.InvalidGrantError)
    assert SessionEndedError().error == "invalid_grant"
