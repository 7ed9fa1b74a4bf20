"""OAuth 2.0 errors as classes named by their RFC error code (RFC 6749 section 4.1.2.1, 5.2;
RFC 6750 section 3.1; RFC 8693 section 2.2.2; OpenID Connect Core section 3.1.2.6).

``description`` is public and goes to the client; it must never echo raw input or contain
CR, LF, TAB, ``"`` or ``\\`` (RFC 6749 section 5.2 restricts the character set).
"""

from __future__ import annotations

import re

from gateway.errors import GatewayError

_UNSAFE = re.compile(r"[^\x20-\x21\x23-\x5B\x5D-\x7E]")


class OAuthError(GatewayError):
    """Base of the OAuth error family. ``error`` is the RFC error code."""

    error = "invalid_request"
    status = 400

    def __init__(self, description: str = "", *, status: int | None = None) -> None:
        self.description = _UNSAFE.sub(" ", description)[:300]
        if status is not None:
            self.status = status
        super().__init__(self.description or self.error)

    def as_dict(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


class InvalidRequestError(OAuthError):
    error = "invalid_request"


class InvalidClientError(OAuthError):
    """401. ``challenge``: answer with ``WWW-Authenticate: Basic`` (section 5.2), which is right
    when the client tried the ``Authorization`` header or did not even name itself, and wrong
    once it named itself in the body (with a secret or, as a public client, without one):
    strict clients report the challenge, not the error."""

    error = "invalid_client"
    status = 401

    def __init__(
        self, description: str = "", *, status: int | None = None, challenge: bool = True
    ) -> None:
        super().__init__(description, status=status)
        self.challenge = challenge


class InvalidGrantError(OAuthError):
    error = "invalid_grant"


class UnauthorizedClientError(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantTypeError(OAuthError):
    error = "unsupported_grant_type"


class UnsupportedResponseTypeError(OAuthError):
    error = "unsupported_response_type"


class InvalidScopeError(OAuthError):
    error = "invalid_scope"


class InvalidTargetError(OAuthError):
    error = "invalid_target"


class AccessDeniedError(OAuthError):
    error = "access_denied"
    status = 403


class UnsupportedTokenTypeError(OAuthError):
    error = "unsupported_token_type"


class LoginRequiredError(OAuthError):
    error = "login_required"


class ConsentRequiredError(OAuthError):
    error = "consent_required"


class InteractionRequiredError(OAuthError):
    error = "interaction_required"


class InvalidTokenError(OAuthError):
    """RFC 6750 section 3.1: the bearer token is expired, revoked or malformed."""

    error = "invalid_token"
    status = 401


class BearerRequestError(InvalidRequestError):
    """RFC 6750 section 3.1 ``invalid_request`` at a resource: 400 with a Bearer challenge."""


class MissingTokenError(InvalidTokenError):
    """RFC 6750 section 3.1: no credentials at all; the challenge carries no error code."""


class InsufficientScopeError(OAuthError):
    error = "insufficient_scope"
    status = 403


class TemporarilyUnavailableError(OAuthError):
    error = "temporarily_unavailable"
    status = 503


class SlowDownError(OAuthError):
    """Throttled (RFC 6585 section 4): 429 with ``Retry-After``."""

    error = "slow_down"
    status = 429

    def __init__(self, description: str = "", *, retry_after: int = 1) -> None:
        super().__init__(description)
        self.retry_after = max(1, retry_after)


class ServerError(OAuthError):
    error = "server_error"
    status = 500
