"""OAuth errors as values (``gateway.oauth.errors``): codes, statuses, safe descriptions. Pure.

Covered: each class's RFC error code and default HTTP status (RFC 6749 sections 4.1.2.1 and
5.2, RFC 6750 section 3.1, RFC 6585 section 4); ``error_description`` restricted to
%x20-21 / %x23-5B / %x5D-7E (CR, LF, TAB, ``"``, ``\\`` and non-ASCII replaced) and capped;
``as_dict`` (no ``error_description`` when empty); the status override; the Basic challenge flag
of ``invalid_client``; ``Retry-After`` of ``slow_down``; codes given at construction
(``request_not_supported``).

SECURITY-CHECKLIST items 19 (error shape, no reflection, restricted charset), 70/71 (invalid_client
at 401 with a challenge), 116 (RFC 6750 codes) and Appendix C-8 (throttling is 429).
"""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.oauth import errors
from gateway.oauth.errors import OAuthError


@pytest.mark.parametrize(
    ("error_class", "code", "status"),
    [
        pytest.param(errors.OAuthError, "invalid_request", 400, id="base"),
        pytest.param(errors.InvalidRequestError, "invalid_request", 400, id="invalid_request"),
        pytest.param(errors.InvalidClientError, "invalid_client", 401, id="invalid_client"),
        pytest.param(errors.InvalidGrantError, "invalid_grant", 400, id="invalid_grant"),
        pytest.param(errors.UnauthorizedClientError, "unauthorized_client", 400, id="unauth"),
        pytest.param(errors.UnsupportedGrantTypeError, "unsupported_grant_type", 400, id="ugt"),
        pytest.param(
            errors.UnsupportedResponseTypeError, "unsupported_response_type", 400, id="urt"
        ),
        pytest.param(errors.InvalidScopeError, "invalid_scope", 400, id="invalid_scope"),
        pytest.param(errors.InvalidTargetError, "invalid_target", 400, id="invalid_target"),
        pytest.param(errors.AccessDeniedError, "access_denied", 403, id="access_denied"),
        pytest.param(errors.UnsupportedTokenTypeError, "unsupported_token_type", 400, id="utt"),
        pytest.param(errors.LoginRequiredError, "login_required", 400, id="login_required"),
        pytest.param(errors.ConsentRequiredError, "consent_required", 400, id="consent"),
        pytest.param(errors.InteractionRequiredError, "interaction_required", 400, id="interact"),
        pytest.param(errors.InvalidTokenError, "invalid_token", 401, id="invalid_token"),
        pytest.param(errors.BearerRequestError, "invalid_request", 400, id="bearer_request"),
        pytest.param(errors.MissingTokenError, "invalid_token", 401, id="missing_token"),
        pytest.param(errors.InsufficientScopeError, "insufficient_scope", 403, id="scope403"),
        pytest.param(
            errors.TemporarilyUnavailableError, "temporarily_unavailable", 503, id="unavailable"
        ),
        pytest.param(errors.SlowDownError, "slow_down", 429, id="slow_down"),
        pytest.param(errors.ServerError, "server_error", 500, id="server_error"),
    ],
)
def test_error_code_and_status(error_class: type[OAuthError], code: str, status: int) -> None:
    error = error_class("something failed")
    assert (error.error, error.status) == (code, status)
    assert error.as_dict() == {"error": code, "error_description": "something failed"}
    assert isinstance(error, GatewayError)


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        pytest.param("plain words", "plain words", id="plain"),
        pytest.param("a\r\nb", "a  b", id="crlf"),
        pytest.param("a\tb", "a b", id="tab"),
        pytest.param('say "hi"', "say  hi ", id="double-quote"),
        pytest.param("C:\\path", "C: path", id="backslash"),
        pytest.param("café", "caf ", id="non-ascii"),
        pytest.param("\x00\x7f", "  ", id="nul-del"),
        pytest.param("<script>'x'</script>", "<script>'x'</script>", id="allowed-punctuation"),
        pytest.param("!#[]~", "!#[]~", id="range-boundaries"),
        pytest.param("x" * 301, "x" * 300, id="capped-at-300"),
    ],
)
def test_description_is_restricted_to_the_rfc_charset(description: str, expected: str) -> None:
    error = errors.InvalidGrantError(description)
    assert error.description == expected
    assert error.as_dict() == {"error": "invalid_grant", "error_description": expected}
    assert str(error) == expected


def test_empty_description_is_left_out() -> None:
    error = errors.InvalidGrantError()
    assert error.as_dict() == {"error": "invalid_grant"}
    assert str(error) == "invalid_grant"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        pytest.param(errors.InvalidClientError("unknown", status=400), 400, id="client-at-400"),
        pytest.param(errors.InvalidRequestError("x", status=405), 405, id="request-at-405"),
        pytest.param(errors.InvalidClientError("x"), 401, id="default-kept"),
    ],
)
def test_status_override(error: OAuthError, status: int) -> None:
    assert error.status == status
    # the class default is untouched
    assert type(error).status == (401 if isinstance(error, errors.InvalidClientError) else 400)


@pytest.mark.parametrize(
    ("error", "challenge"),
    [
        pytest.param(errors.InvalidClientError("x"), True, id="default-challenge"),
        pytest.param(errors.InvalidClientError("x", challenge=False), False, id="body-creds"),
    ],
)
def test_invalid_client_challenge(error: errors.InvalidClientError, challenge: bool) -> None:
    assert error.challenge is challenge


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        pytest.param(30, 30, id="kept"),
        pytest.param(1, 1, id="one"),
        pytest.param(0, 1, id="zero-becomes-one"),
        pytest.param(-5, 1, id="negative-becomes-one"),
    ],
)
def test_slow_down_retry_after_is_at_least_one(retry_after: int, expected: int) -> None:
    assert errors.SlowDownError("slow", retry_after=retry_after).retry_after == expected
