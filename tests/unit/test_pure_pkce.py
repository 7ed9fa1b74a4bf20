"""PKCE (RFC 7636) in ``gateway.oauth.rfc7636``, S256 only: no I/O, no server.

Covered: the S256 transform against the RFC 7636 Appendix B test vector (and the checklist's
``V42`` vector); ``check_challenge`` (authorization request: challenge required, S256 only, plain
and unknown methods refused, a method without a challenge refused, exactly 43 base64url
characters); ``challenge_of_verifier`` (token request: 43-128 characters of the unreserved set,
boundaries of length and charset, ``invalid_grant`` for a malformed verifier).

SECURITY-CHECKLIST items 55 (S256 round trip), 59 (public clients must send a challenge),
60 (only S256), 61 (challenge and verifier syntax) and Appendix C-8 (malformed verifier is
``invalid_grant``).
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from gateway.oauth import rfc7636
from gateway.oauth.errors import InvalidGrantError, InvalidRequestError

# RFC 7636 Appendix B, and SECURITY-CHECKLIST section 0.3.
V = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
C = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
V42 = "EEM_I_OaM991MBJtP9NskPou30uUbTeH0arOA36L6C"
C42 = "n3GhAa-jTlZuWhYYBlZNzTq8P-EAK5UPO_ZhTIAlGQ0"

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"

REQUIRED = "code_challenge is required (PKCE with S256)"
ONLY_S256 = "code_challenge_method must be S256; plain is not supported"
METHOD_ALONE = "code_challenge_method was sent without code_challenge"
CHALLENGE_SYNTAX = "code_challenge must be 43 base64url characters (S256)"
VERIFIER_SYNTAX = "code_verifier must be 43 to 128 unreserved characters"


def reference_s256(verifier: str) -> str:
    """RFC 7636 section 4.2 written out independently of ``gateway.tokens.seal.b64url``."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


# --- the S256 transform ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verifier", "challenge"),
    [
        pytest.param(V, C, id="rfc7636-appendix-b"),
        pytest.param(V42, C42, id="checklist-V42"),
    ],
)
def test_s256_matches_published_vectors(verifier: str, challenge: str) -> None:
    assert rfc7636.s256(verifier) == challenge


def test_s256_has_no_padding_and_is_43_characters() -> None:
    for verifier in (V, "a" * 43, "~" * 128):
        value = rfc7636.s256(verifier)
        assert len(value) == 43
        assert "=" not in value
        assert value == reference_s256(verifier)


# --- the authorization request: check_challenge ------------------------------------------------


@pytest.mark.parametrize(
    ("challenge", "method", "required", "expected"),
    [
        pytest.param(C, "S256", True, C, id="s256-required"),
        pytest.param(C, "S256", False, C, id="s256-optional-still-validated"),
        pytest.param(None, None, False, None, id="absent-not-required"),
        pytest.param(C42, "S256", True, C42, id="another-valid-challenge"),
        pytest.param("A" * 43, "S256", True, "A" * 43, id="43-letters"),
        pytest.param("-" * 21 + "_" * 22, "S256", True, "-" * 21 + "_" * 22, id="dash-underscore"),
    ],
)
def test_check_challenge_accepts(
    challenge: str | None, method: str | None, required: bool, expected: str | None
) -> None:
    assert rfc7636.check_challenge(challenge, method, required=required) == expected


@pytest.mark.parametrize(
    ("challenge", "method", "required", "description"),
    [
        # item 59: public clients (and here every client that requires PKCE) must send one
        pytest.param(None, None, True, REQUIRED, id="missing-when-required"),
        # item 60 (a)-(d)
        pytest.param(C, "plain", True, ONLY_S256, id="60a-plain"),
        pytest.param(C, None, True, ONLY_S256, id="60b-no-method-means-plain"),
        pytest.param(C, "S512", True, ONLY_S256, id="60c-unknown-method"),
        pytest.param(None, "S256", True, METHOD_ALONE, id="60d-method-without-challenge"),
        pytest.param(None, "S256", False, METHOD_ALONE, id="method-without-challenge-optional"),
        pytest.param(None, "plain", False, METHOD_ALONE, id="plain-method-alone"),
        pytest.param(C, "s256", True, ONLY_S256, id="method-is-case-sensitive"),
        pytest.param(C, "S256 ", True, ONLY_S256, id="method-with-trailing-space"),
        pytest.param(C, "", True, ONLY_S256, id="method-empty-string"),
        pytest.param(C, "plain", False, ONLY_S256, id="plain-refused-even-if-optional"),
        # item 61 (a): syntax of an S256 challenge
        pytest.param(C[:42], "S256", True, CHALLENGE_SYNTAX, id="61a-i-42-chars"),
        pytest.param("A" * 129, "S256", True, CHALLENGE_SYNTAX, id="61a-ii-129-chars"),
        pytest.param(C[:42] + "=", "S256", True, CHALLENGE_SYNTAX, id="61a-iii-padding"),
        pytest.param(C + "=", "S256", True, CHALLENGE_SYNTAX, id="44-with-padding"),
        pytest.param(C + "A", "S256", True, CHALLENGE_SYNTAX, id="44-chars"),
        pytest.param(V + "A" * 85, "S256", True, CHALLENGE_SYNTAX, id="128-char-verifier"),
        pytest.param("", "S256", True, CHALLENGE_SYNTAX, id="empty"),
        pytest.param(C[:42] + "+", "S256", True, CHALLENGE_SYNTAX, id="standard-b64-plus"),
        pytest.param(C[:42] + "/", "S256", True, CHALLENGE_SYNTAX, id="standard-b64-slash"),
        pytest.param(C[:42] + ".", "S256", True, CHALLENGE_SYNTAX, id="unreserved-dot"),
        pytest.param(C[:42] + "~", "S256", True, CHALLENGE_SYNTAX, id="unreserved-tilde"),
        pytest.param(C[:42] + "é", "S256", True, CHALLENGE_SYNTAX, id="non-ascii"),
        pytest.param(C[:42] + "٣", "S256", True, CHALLENGE_SYNTAX, id="non-ascii-digit"),
        pytest.param(" " + C[:42], "S256", True, CHALLENGE_SYNTAX, id="leading-space"),
        pytest.param(C + "\n", "S256", True, CHALLENGE_SYNTAX, id="trailing-newline"),
    ],
)
def test_check_challenge_refuses_with_invalid_request(
    challenge: str | None, method: str | None, required: bool, description: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        rfc7636.check_challenge(challenge, method, required=required)
    assert type(info.value) is InvalidRequestError
    assert info.value.error == "invalid_request"
    assert info.value.status == 400
    assert info.value.description == description


def test_missing_challenge_description_names_code_challenge() -> None:
    """Item 59: the error description mentions ``code_challenge``."""
    with pytest.raises(InvalidRequestError) as info:
        rfc7636.check_challenge(None, None, required=True)
    assert "code_challenge" in info.value.as_dict()["error_description"]


# --- the token request: challenge_of_verifier --------------------------------------------------


@pytest.mark.parametrize(
    "verifier",
    [
        pytest.param(V, id="rfc7636-appendix-b"),
        pytest.param("a" * 43, id="43-chars-minimum"),
        pytest.param("a" * 128, id="128-chars-maximum"),
        pytest.param(UNRESERVED, id="every-unreserved-character"),
        pytest.param("-" * 43, id="only-dash"),
        pytest.param("." * 43, id="only-dot"),
        pytest.param("_" * 43, id="only-underscore"),
        pytest.param("~" * 43, id="only-tilde"),
        pytest.param("0" * 43, id="only-digits"),
        pytest.param("Z" * 64 + "z" * 64, id="upper-and-lower-128"),
    ],
)
def test_verifier_accepted_gives_its_s256_challenge(verifier: str) -> None:
    assert rfc7636.challenge_of_verifier(verifier) == reference_s256(verifier)


def test_verifier_of_appendix_b_gives_appendix_b_challenge() -> None:
    """Item 55: the verifier the client keeps answers the challenge it sent."""
    assert rfc7636.challenge_of_verifier(V) == C


def test_absent_verifier_is_none() -> None:
    """No verifier: the grant decides (item 57); nothing is hashed here."""
    assert rfc7636.challenge_of_verifier(None) is None


@pytest.mark.parametrize(
    "verifier",
    [
        # item 61 (b): syntax is checked even when the hashes would match
        pytest.param(V42, id="61b-V42-42-chars"),
        pytest.param("a" * 129, id="61b-129-chars"),
        pytest.param(V[:42] + "$", id="61b-dollar"),
        pytest.param("", id="empty"),
        pytest.param("a", id="one-char"),
        pytest.param(V[:42] + "+", id="plus"),
        pytest.param(V[:42] + "/", id="slash"),
        pytest.param(V[:42] + "=", id="equals"),
        pytest.param(V[:42] + "%", id="percent"),
        pytest.param(V[:42] + " ", id="space"),
        pytest.param(V[:42] + "!", id="exclamation"),
        pytest.param(V[:42] + "*", id="asterisk"),
        pytest.param(V[:42] + "é", id="non-ascii-letter"),
        pytest.param(V[:42] + "٣", id="non-ascii-digit"),
        pytest.param(V[:42] + "\x00", id="nul"),
        pytest.param(V + "\n", id="trailing-newline"),
        pytest.param("\n" + V, id="leading-newline"),
    ],
)
def test_malformed_verifier_is_invalid_grant(verifier: str) -> None:
    with pytest.raises(InvalidGrantError) as info:
        rfc7636.challenge_of_verifier(verifier)
    assert info.value.error == "invalid_grant"
    assert info.value.status == 400
    assert info.value.description == VERIFIER_SYNTAX


def test_v42_hash_is_known_but_verifier_still_refused() -> None:
    """Item 61 (b): ``C42`` is the S256 of ``V42``; the length rule alone refuses it."""
    assert rfc7636.s256(V42) == C42
    with pytest.raises(InvalidGrantError):
        rfc7636.challenge_of_verifier(V42)


def test_wrong_verifier_does_not_answer_the_challenge() -> None:
    """Item 56: a different valid verifier yields a different challenge."""
    other = "EEM_I_OaM991MBJtP9NskPou30uUbTeH0arOA36L6Co"
    assert rfc7636.challenge_of_verifier(other) != C
    assert rfc7636.challenge_of_verifier(other) == reference_s256(other)
