"""SQLSTATE -> error class.

The daemon functions raise their own SQLSTATEs (``sql/functions/000_errors.sql``); this module maps
the code, never the message text, to the gateway's error hierarchy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.exceptions._base import DataError as ClientDataError

from gateway.errors import GatewayError, InvalidInputError, StoreError
from gateway.oauth import errors as oauth

__all__ = ["InvalidInputError", "UnknownUserError", "UserExistsError", "sql_errors", "translate"]


class UserExistsError(StoreError):
    """GW001: a user with this name or email already exists."""


class UnknownUserError(StoreError):
    """GW003: there is no user by that name."""


_OAUTH: dict[str, type[oauth.OAuthError]] = {
    "OA001": oauth.InvalidGrantError,
    "OA002": oauth.InvalidClientError,
    "OA003": oauth.InvalidScopeError,
    "OA004": oauth.UnauthorizedClientError,
    "OA005": oauth.InvalidRequestError,
    "OA006": oauth.AccessDeniedError,
    "OA007": oauth.LoginRequiredError,
    "OA008": oauth.ConsentRequiredError,
    "OA009": oauth.InvalidTargetError,
}

UNREACHABLE = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError)


def translate(exc: asyncpg.PostgresError) -> GatewayError:
    """The gateway error for a database error raised by a daemon function."""
    code = getattr(exc, "sqlstate", None) or ""
    message = str(getattr(exc, "message", "") or "")
    if code == "GW001":
        return UserExistsError(message)
    if code == "GW002":
        return InvalidInputError(message)
    if code == "GW003":
        return UnknownUserError(message)
    oauth_error = _OAUTH.get(code)
    if oauth_error is not None:
        return oauth_error(message)
    return StoreError(f"database error {code}")


@contextmanager
def sql_errors() -> Iterator[None]:
    """Translate database errors raised inside the block."""
    try:
        yield
    except (asyncpg.DataError, ClientDataError) as exc:
        # A value PostgreSQL (class 22) or asyncpg's encoder refuses: bad input, not an outage.
        raise InvalidInputError("a value cannot be stored") from exc
    except asyncpg.PostgresError as exc:
        raise translate(exc) from exc
    except UNREACHABLE as exc:
        raise StoreError(f"database unreachable: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a connection failure."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return "authentication failed"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return "database does not exist"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return exc.__class__.__name__


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<invalid database URL>"
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
