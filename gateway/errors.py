"""The one error hierarchy of the gateway.

``GatewayError`` is the root. Each family is rendered in exactly one place:

* ``oauth.errors.OAuthError`` (RFC 6749 error codes) by the web layer's error middleware;
* ``UpstreamError`` by the proxy (502/504 JSON);
* ``ConfigError`` by the command line (one line per problem) and by hot reload (a log line);
* ``StoreError`` when the database cannot be used at all (unreachable, misconfigured).

Messages are public: they never contain a secret, a token or a DSN password.
"""

from __future__ import annotations

from dataclasses import dataclass


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem found in the configuration: which file, which key, and why."""

    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: {self.reason}"


class ConfigError(GatewayError):
    """The configuration cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


class StoreError(GatewayError):
    """The database cannot be used (unreachable, refused, broken migrations)."""


class InvalidInputError(GatewayError):
    """A value the database refuses to store: the request is at fault (400), not the database
    (503)."""


class SecretsError(GatewayError):
    """A sealed secret cannot be opened: the master key is not the one that sealed it."""


class UpstreamError(GatewayError):
    """An upstream API failed to answer (connection refused, timeout)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        self.status = status
        self.error = error
        self.description = description
        super().__init__(description)


# --- organisations and invitations (sql/functions/090_organizations.sql) -----------------------


class OrganizationError(GatewayError):
    """A change to organisations that cannot be made: ``status`` and ``error`` for the admin
    API's JSON answer, the message for it and for the command line."""

    status = 400
    error = "invalid_request"


class OrganizationExistsError(OrganizationError):
    """GO001."""

    status, error = 409, "conflict"


class UnknownOrganizationError(OrganizationError):
    """GO002."""

    status, error = 404, "not_found"


class AlreadyMemberError(OrganizationError):
    """GO003."""

    status, error = 409, "conflict"


class NotMemberError(OrganizationError):
    """GO004."""

    status, error = 404, "not_found"


class NoPendingInvitationError(OrganizationError):
    """GO005."""

    status, error = 404, "not_found"


class InvitationUnusable(GatewayError):  # noqa: N818 - a state of the invitation, not a fault
    """An invitation link that cannot be redeemed; ``state`` says why (the page says it too)."""

    state = "unknown"


class InvitationUnknown(InvitationUnusable):
    """GI001: no invitation has this token (forged, truncated, or deleted)."""


class InvitationExpired(InvitationUnusable):
    """GI002."""

    state = "expired"


class InvitationUsed(InvitationUnusable):
    """GI003."""

    state = "used"


class InvitationRevoked(InvitationUnusable):
    """GI004."""

    state = "revoked"


class InvitationOrganizationRemoved(InvitationUnusable):
    """GI005."""

    state = "organization_removed"


class InvitationAccountExists(InvitationUnusable):
    """GI006: registering, but an account with the invited email exists (it self-registered
    in between): sign in and accept instead."""

    state = "account_exists"


class InvitationForAnotherEmail(InvitationUnusable):
    """GI007: accepting while signed in with an account of another email."""

    state = "other_email"


# --- account links (sql/functions/095_accounts.sql) -------------------------------------------


class AccountLinkUnusable(GatewayError):  # noqa: N818 - a state of the link, not a fault
    """A verification or password-reset link that cannot be used; ``state`` says why."""

    state = "unknown"


class AccountLinkUnknown(AccountLinkUnusable):
    """GK001: no link has this token (forged, truncated), or its account was locked."""


class AccountLinkExpired(AccountLinkUnusable):
    """GK002."""

    state = "expired"


class AccountLinkUsed(AccountLinkUnusable):
    """GK003."""

    state = "used"


# --- mail (sql/functions/090_mail.sql) ---------------------------------------------------------


class UnknownMailError(StoreError):
    """GM001: there is no message with that id in the outbox."""


class MailAlreadySentError(StoreError):
    """GM002: the message was sent, or a sender holds it right now: nothing to retry."""
