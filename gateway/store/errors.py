"""SQLSTATE -> error: one code per cause, one table.

The daemon functions raise their own SQLSTATEs (``sql/functions/000_errors.sql``); ``CAUSES``
maps each code, never the message text, to the error the gateway raises, the HTTP status it
answers with and the public message. docs/sql.md shows the same table."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.exceptions._base import DataError as ClientDataError

from gateway.errors import (
    AccountLinkExpired,
    AccountLinkUnknown,
    AccountLinkUsed,
    AlreadyMemberError,
    GatewayError,
    InvalidInputError,
    InvitationAccountExists,
    InvitationExpired,
    InvitationForAnotherEmail,
    InvitationOrganizationRemoved,
    InvitationRevoked,
    InvitationUnknown,
    InvitationUsed,
    MailAlreadySentError,
    NoPendingInvitationError,
    NotMemberError,
    OrganizationExistsError,
    StoreError,
    UnknownMailError,
    UnknownOrganizationError,
)
from gateway.oauth import errors as oauth

__all__ = [
    "CAUSES",
    "InvalidInputError",
    "MailAlreadySentError",
    "SessionEndedError",
    "UnknownMailError",
    "UnknownUserError",
    "UserExistsError",
    "sql_errors",
    "translate",
]


class UserExistsError(StoreError):
    """GW001: a user with this name or email already exists."""


class UnknownUserError(StoreError):
    """GW003: there is no user by that name."""


class SessionEndedError(oauth.InvalidGrantError):
    """GS001: the session a code, token or sign-in belongs to is over (revoked or expired):
    ``invalid_grant`` at the token endpoint, ``login_required`` to an authorization request."""


@dataclass(frozen=True, slots=True)
class Cause:
    """What one SQLSTATE means: the error raised, its HTTP status, its public message."""

    error: type[GatewayError]
    status: int
    message: str


CAUSES: Mapping[str, Cause] = MappingProxyType(
    {
        # The gateway's own input and users.
        "GW001": Cause(UserExistsError, 409, "a user with this name or email already exists"),
        "GW002": Cause(InvalidInputError, 400, "a value cannot be stored"),
        "GW003": Cause(UnknownUserError, 404, "there is no such user"),
        # Sessions and accounts.
        "GS001": Cause(SessionEndedError, 400, "the session is over"),
        "GS002": Cause(
            oauth.InvalidGrantError, 400, "the account changed since the token was issued"
        ),
        "GS003": Cause(oauth.InvalidGrantError, 400, "the account cannot sign in"),
        "GS004": Cause(oauth.AccessDeniedError, 403, "the account cannot sign in"),
        "GS005": Cause(oauth.AccessDeniedError, 403, "this identity is linked to another user"),
        "GS006": Cause(oauth.InvalidClientError, 401, "unknown client"),
        # Authorization codes (RFC 6749 4.1.3, RFC 7636 4.6).
        "GC001": Cause(oauth.InvalidGrantError, 400, "unknown authorization code"),
        "GC002": Cause(oauth.InvalidGrantError, 400, "the authorization code has expired"),
        "GC003": Cause(oauth.InvalidGrantError, 400, "the code was issued to another client"),
        "GC004": Cause(
            oauth.InvalidGrantError, 400, "redirect_uri differs from the authorization request"
        ),
        "GC005": Cause(oauth.InvalidGrantError, 400, "code_verifier is required"),
        "GC006": Cause(
            oauth.InvalidGrantError,
            400,
            "code_verifier sent but no code_challenge was registered",
        ),
        "GC007": Cause(
            oauth.InvalidGrantError, 400, "code_verifier does not match the code_challenge"
        ),
        # Refresh tokens (RFC 6749 6).
        "GR001": Cause(oauth.InvalidGrantError, 400, "unknown refresh token"),
        "GR002": Cause(
            oauth.InvalidGrantError, 400, "the refresh token was issued to another client"
        ),
        "GR003": Cause(oauth.InvalidGrantError, 400, "the refresh token is no longer valid"),
        "GR004": Cause(oauth.InvalidGrantError, 400, "the refresh token has expired"),
        "GR005": Cause(
            oauth.InvalidScopeError, 400, "the requested scope exceeds the granted scope"
        ),
        # JWT bearer assertions (RFC 7523 3).
        "GA001": Cause(oauth.InvalidGrantError, 400, "the assertion was already used"),
        # Organisations and invitations (sql/functions/090_organizations.sql).
        "GO001": Cause(OrganizationExistsError, 409, "an organisation with this alias exists"),
        "GO002": Cause(UnknownOrganizationError, 404, "there is no such organisation"),
        "GO003": Cause(AlreadyMemberError, 409, "this email belongs to a member already"),
        "GO004": Cause(NotMemberError, 404, "this user is not a member"),
        "GO005": Cause(NoPendingInvitationError, 404, "no pending invitation for this email"),
        "GI001": Cause(InvitationUnknown, 404, "this invitation link is not valid"),
        "GI002": Cause(InvitationExpired, 410, "this invitation has expired"),
        "GI003": Cause(InvitationUsed, 410, "this invitation has been used"),
        "GI004": Cause(InvitationRevoked, 410, "this invitation was withdrawn"),
        "GI005": Cause(InvitationOrganizationRemoved, 410, "the organisation no longer exists"),
        "GI006": Cause(InvitationAccountExists, 409, "an account with this email exists"),
        "GI007": Cause(InvitationForAnotherEmail, 403, "the invitation is for another email"),
        # Account links: verify an email, reset a password (sql/functions/095_accounts.sql).
        "GK001": Cause(AccountLinkUnknown, 404, "this link is not valid"),
        "GK002": Cause(AccountLinkExpired, 410, "this link has expired"),
        "GK003": Cause(AccountLinkUsed, 410, "this link has been used"),
        # The mail outbox (an operator's retry).
        "GM001": Cause(UnknownMailError, 404, "there is no such message"),
        "GM002": Cause(MailAlreadySentError, 409, "the message was sent or is being sent"),
        # A locked throttle key checked inside a grant's statement (daemon.throttle_guard).
        "GT001": Cause(oauth.SlowDownError, 429, "too many failed client authentications"),
    }
)

UNREACHABLE = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError)


def translate(exc: asyncpg.PostgresError) -> GatewayError:
    """The gateway error for a database error raised by a daemon function."""
    code = getattr(exc, "sqlstate", None) or ""
    cause = CAUSES.get(code)
    if cause is None:
        return StoreError(f"database error {code}")
    if cause.error is oauth.SlowDownError:
        # The one value a daemon function hands over in DETAIL: the seconds to wait.
        detail = getattr(exc, "detail", None) or ""
        return oauth.SlowDownError(
            cause.message, retry_after=int(detail) if detail.isdigit() else 1
        )
    if issubclass(cause.error, oauth.OAuthError):
        return cause.error(cause.message, status=cause.status)
    return cause.error(cause.message)


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
