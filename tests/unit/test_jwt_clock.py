"""The gateway's own tokens across replicas whose clocks differ a little: ``iat``/``nbf`` may lie
a few seconds ahead (another replica minted the token), ``exp`` is exact."""

from __future__ import annotations

import time

import pytest

from gateway.clock import Clock
from gateway.tokens.jwt import ACCESS_TOKEN_TYP, CLOCK_SKEW, TokenInvalid, Verifier, mint
from gateway.tokens.keys import KeyRing, SigningKey, generate_signing_key

ISSUER = "https://gw.example.test"


@pytest.fixture(scope="module")
def verifier_and_key() -> tuple[Verifier, SigningKey]:
    key = generate_signing_key("ES256")
    return Verifier(KeyRing([key]), ISSUER), key


def token(key: SigningKey, *, ahead: int, lifetime: int = 300) -> str:
    now = int(time.time()) + ahead
    claims = {"iss": ISSUER, "sub": "u", "iat": now, "nbf": now, "exp": now + lifetime}
    return mint(claims, key, ACCESS_TOKEN_TYP)


def test_a_token_minted_by_a_replica_a_few_seconds_ahead_is_accepted(
    verifier_and_key: tuple[Verifier, SigningKey],
) -> None:
    verifier, key = verifier_and_key
    assert verifier.verify(token(key, ahead=5), typ=ACCESS_TOKEN_TYP)["sub"] == "u"


def test_a_token_from_the_future_is_refused(verifier_and_key: tuple[Verifier, SigningKey]) -> None:
    verifier, key = verifier_and_key
    with pytest.raises(TokenInvalid, match="not yet valid"):
        verifier.verify(token(key, ahead=CLOCK_SKEW + 60), typ=ACCESS_TOKEN_TYP)


def test_expiry_has_no_leeway(verifier_and_key: tuple[Verifier, SigningKey]) -> None:
    verifier, key = verifier_and_key
    with pytest.raises(TokenInvalid):
        verifier.verify(token(key, ahead=-10, lifetime=9), typ=ACCESS_TOKEN_TYP)


def test_expiry_is_read_on_the_applications_clock() -> None:
    """Issue 10 item 5: a token valid by the wall clock is expired once the application's clock
    (what tests move instead of sleeping) has passed its exp, and valid again when it goes back."""
    key = generate_signing_key("ES256")
    clock = Clock()
    verifier = Verifier(KeyRing([key]), ISSUER, clock.time)
    fresh = token(key, ahead=0, lifetime=60)
    assert verifier.verify(fresh, typ=ACCESS_TOKEN_TYP)["sub"] == "u"
    clock.advance(61)
    with pytest.raises(TokenInvalid, match="ExpiredSignatureError"):
        verifier.verify(fresh, typ=ACCESS_TOKEN_TYP)
    assert verifier.verify(fresh, typ=ACCESS_TOKEN_TYP, verify_exp=False)["sub"] == "u"
    clock.advance(-61 - CLOCK_SKEW - 10)  # now the token's iat lies too far ahead
    with pytest.raises(TokenInvalid, match="not yet valid"):
        verifier.verify(fresh, typ=ACCESS_TOKEN_TYP)
