"""Keys of external issuers (JWT bearer assertions, RFC 7523) and assertion verification.

The web layer fetches each provider's ``jwks_uri`` (JWKS) or ``cert_uri`` (``{kid: x509 PEM}``, as
Google publishes) every 30 minutes, 5 seconds after a failure, and hands the documents to
``parse_key_document``. Keys are looked up by ``kid`` only; a token can never bring its own key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.tokens.jwt import LEEWAY, TokenInvalid, check_times, inspect

REFRESH_SECONDS = 1800
RETRY_SECONDS = 5
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


@dataclass(frozen=True)
class RemoteKey:
    kid: str
    kty: str
    key: Any
    alg: str | None


def parse_key_document(document: Any) -> dict[str, RemoteKey]:
    """Public keys from a JWKS ``{"keys": [...]}`` or a ``{kid: PEM certificate}`` map."""
    keys: dict[str, RemoteKey] = {}
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        for jwk in document["keys"]:
            if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
                continue
            if jwk.get("use", "sig") != "sig" or any(p in jwk for p in ("d", "k")):
                continue
            try:
                if jwk.get("kty") == "RSA":
                    key: Any = RSAAlgorithm.from_jwk(json.dumps(jwk))
                elif jwk.get("kty") == "EC":
                    key = ECAlgorithm.from_jwk(json.dumps(jwk))
                else:
                    continue
            except (ValueError, KeyError, TypeError, jwt.InvalidKeyError):
                continue
            alg = jwk.get("alg") if isinstance(jwk.get("alg"), str) else None
            keys[jwk["kid"]] = RemoteKey(jwk["kid"], jwk["kty"], key, alg)
    elif isinstance(document, dict):
        for kid, pem in document.items():
            if not isinstance(pem, str):
                continue
            try:
                public = x509.load_pem_x509_certificate(pem.encode()).public_key()
            except ValueError:
                continue
            if isinstance(public, rsa.RSAPublicKey):
                keys[kid] = RemoteKey(kid, "RSA", public, None)
            elif isinstance(public, ec.EllipticCurvePublicKey):
                keys[kid] = RemoteKey(kid, "EC", public, None)
    return keys


def verify_assertion(
    token: str,
    keys: dict[str, RemoteKey],
    *,
    issuers: tuple[str, ...],
    audiences: tuple[str, ...],
    now: float,
) -> dict[str, Any]:
    """RFC 7523 section 3: signed by a known key of a trusted issuer, for us, unexpired."""
    return _verify(token, keys, issuers, audiences, now)


def verify_issued_token(
    token: str, keys: dict[str, RemoteKey], *, issuers: tuple[str, ...], now: float
) -> dict[str, Any]:
    """A JWT access token of an external provider (RFC 9068) as its client sees it: signed by
    a key the provider publishes, by one of its issuers, unexpired. Its audience is for the
    API that receives it to check, not for the client that forwards it."""
    return _verify(token, keys, issuers, None, now)


def _verify(
    token: str,
    keys: dict[str, RemoteKey],
    issuers: tuple[str, ...],
    audiences: tuple[str, ...] | None,
    now: float,
) -> dict[str, Any]:
    header, unverified = inspect(token)
    alg = header.get("alg")
    if alg not in ASYMMETRIC:
        raise TokenInvalid("assertion algorithm not accepted")
    kid = header.get("kid")
    remote = keys.get(kid) if isinstance(kid, str) else None
    if remote is None:
        raise TokenInvalid("unknown kid")
    if (remote.alg and remote.alg != alg) or remote.kty != (
        "EC" if alg.startswith("ES") else "RSA"
    ):
        raise TokenInvalid("algorithm does not match the key")
    if unverified.get("iss") not in issuers:
        raise TokenInvalid("untrusted issuer")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            remote.key,
            algorithms=[alg],
            audience=list(audiences) if audiences is not None else None,
            issuer=unverified["iss"],
            options={
                "require": ["exp", "iss", "sub", "aud"]
                if audiences is not None
                else ["exp", "iss"],
                "verify_aud": audiences is not None,
                # pyjwt reads time.time(); check_times reads the application's clock.
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise TokenInvalid(exc.__class__.__name__) from exc
    check_times(claims, now, exp_leeway=LEEWAY, ahead=LEEWAY)
    return claims
