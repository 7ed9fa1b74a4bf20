"""Issuing and verifying JWTs (RFC 7519) with the defences of RFC 8725.

Verification is strict before any signature check: a bounded size, exactly three segments, header
and claims JSON objects without duplicate members, no ``crit``, ``jku``, ``x5u``, ``jwk`` or ``x5c``
(keys come only from the gateway's own key ring or the client's configured secret, never from the
token), an algorithm that is the one the selected key is for, and an explicit ``typ`` so an ID token
is never accepted as an access token (RFC 9068).
"""

from __future__ import annotations

import binascii
import json
import time
from collections.abc import Mapping
from typing import Any

import jwt

from gateway.clock import Now
from gateway.tokens.keys import KeyRing, SigningKey
from gateway.tokens.seal import b64url_decode

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a media type, not a secret
ID_TOKEN_TYP = "JWT"  # noqa: S105
MAX_TOKEN_LENGTH = 8192
LEEWAY = 30  # for other issuers' clocks; the gateway's own tokens get none
_FORBIDDEN_HEADERS = ("crit", "jku", "x5u", "jwk", "x5c")


class TokenInvalid(Exception):  # noqa: N818 - reads as "raise TokenInvalid(reason)"
    """The token must not be accepted; ``reason`` is for logs, never for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise TokenInvalid(f"duplicate member {key!r}")
        result[key] = value
    return result


def _segment(text: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(text), object_pairs_hook=_no_duplicates)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise TokenInvalid("malformed segment") from exc
    if not isinstance(value, dict):
        raise TokenInvalid("segment is not a JSON object")
    return value


def inspect(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a structurally valid JWT, unverified."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenInvalid("missing or oversized token")
    parts = token.split(".")
    if len(parts) != 3 or not parts[2]:
        raise TokenInvalid("not a signed compact JWT")
    header, claims = _segment(parts[0]), _segment(parts[1])
    for name in _FORBIDDEN_HEADERS:
        if name in header:
            raise TokenInvalid(f"header {name!r} is not accepted")
    return header, claims


def mint(claims: Mapping[str, Any], key: SigningKey, typ: str) -> str:
    assert key.private_key is not None
    return jwt.encode(
        dict(claims),
        key.private_key,  # type: ignore[arg-type]
        algorithm=key.alg,
        headers={"kid": key.kid, "typ": typ},
    )


def mint_for(claims: Mapping[str, Any], ring: KeyRing, typ: str, hs256_key: bytes | None) -> str:
    """Signed as a client's tokens are: with its HS256 key when it has one, else the ring's
    signing key."""
    if hs256_key is not None:
        return mint_hs256(claims, hs256_key, typ)
    return mint(claims, ring.signing, typ)


def mint_hs256(claims: Mapping[str, Any], secret: bytes, typ: str) -> str:
    return jwt.encode(dict(claims), secret, algorithm="HS256", headers={"typ": typ})


CLOCK_SKEW = 30  # seconds a token's iat/nbf may lie ahead (clocks of replicas); exp is exact


def check_times(
    claims: Mapping[str, Any], now: float, *, exp_leeway: int, ahead: int, verify_exp: bool = True
) -> None:
    """``exp`` passed (give or take ``exp_leeway``), ``nbf`` (else ``iat``) no more than ``ahead``
    seconds in the future. An expired token says so as pyjwt would (ExpiredSignatureError)."""
    for name in ("exp", "iat", "nbf"):
        if name in claims and (
            isinstance(claims[name], bool) or not isinstance(claims[name], int | float)
        ):
            raise TokenInvalid(f"{name} is not a number")
    if verify_exp and "exp" in claims and claims["exp"] <= now - exp_leeway:
        raise TokenInvalid("ExpiredSignatureError")
    not_before = claims.get("nbf", claims.get("iat"))
    if not_before is not None and not_before > now + ahead:
        raise TokenInvalid("not yet valid")


class Verifier:
    """Verifies tokens the gateway signed with its own keys.

    HS256 tokens (clients configured with ``"algorithm": "HS256"``) are never accepted here:
    their key is the client's secret, so the client could mint tokens for any user. They are
    for APIs that share that secret, not for the gateway's own endpoints or the token handler.
    """

    def __init__(self, ring: KeyRing, issuer: str, now: Now = time.time) -> None:
        self.ring = ring
        self.issuer = issuer
        self.now = now

    def verify(
        self,
        token: str,
        *,
        typ: str,
        audience: str | None = None,
        verify_exp: bool = True,
    ) -> dict[str, Any]:
        header, _ = inspect(token)
        if str(header.get("typ", "")).lower().removeprefix("application/") != typ.lower():
            raise TokenInvalid(f"typ is not {typ}")
        alg = header.get("alg")
        if alg not in ("RS256", "ES256"):
            raise TokenInvalid("algorithm not accepted")
        kid = header.get("kid")
        signing_key = self.ring.get(kid) if isinstance(kid, str) else None
        if signing_key is None:
            raise TokenInvalid("unknown kid")
        if signing_key.alg != alg:
            raise TokenInvalid("algorithm does not match the key")
        key: Any = signing_key.public_key
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self.issuer,
                audience=audience,
                leeway=0,
                options={
                    "require": ["exp", "iat", "iss", "sub"],
                    "verify_aud": audience is not None,
                    # pyjwt reads time.time(); check_times reads the application's clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenInvalid(exc.__class__.__name__) from exc
        # exp is exact; iat/nbf get a little skew: another replica's clock may run ahead.
        check_times(claims, self.now(), exp_leeway=0, ahead=CLOCK_SKEW, verify_exp=verify_exp)
        return claims
