"""The gateway's own signing keys (RS256 or ES256) and the JWKS that publishes them.

Keys live in ``oauth2.signing_key``, private halves sealed with the master key, so every replica
signs with the same key. A new key is published before it signs anything (``activated_at`` in the
future) and an old one stays published until the tokens it signed have expired (OpenID Connect
Core 10.1.1).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.errors import SecretsError
from gateway.tokens.seal import Sealer, b64url

SIGNING_KEY_PURPOSE = "signing-key"
ALGORITHMS = ("RS256", "ES256")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    public_key: PublicKeyTypes
    public_jwk: dict[str, Any]
    private_key: PrivateKeyTypes | None = None
    activated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    retired_at: datetime | None = None


def public_jwk(public_key: PublicKeyTypes, alg: str) -> dict[str, Any]:
    if alg == "RS256":
        assert isinstance(public_key, rsa.RSAPublicKey)
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(public_key))
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        jwk = json.loads(ECAlgorithm.to_jwk(public_key))
    return {k: jwk[k] for k in ("kty", "n", "e", "crv", "x", "y") if k in jwk}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256), used as the ``kid``."""
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def generate_signing_key(alg: str) -> SigningKey:
    private: PrivateKeyTypes
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"unsupported signing algorithm {alg}")
    public = private.public_key()
    jwk = public_jwk(public, alg)
    kid = thumbprint(jwk)
    return SigningKey(kid, alg, public, {**jwk, "kid": kid, "alg": alg, "use": "sig"}, private)


def seal_private_key(key: SigningKey, sealer: Sealer) -> str:
    assert key.private_key is not None
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return sealer.seal(pem, purpose=f"{SIGNING_KEY_PURPOSE}:{key.kid}")


def load_signing_key(
    kid: str,
    alg: str,
    jwk: dict[str, Any],
    sealed_private: str,
    sealer: Sealer,
    activated_at: datetime,
    retired_at: datetime | None,
) -> SigningKey:
    """A key as stored; ``SecretsError`` when the master key cannot unseal it."""
    pem = sealer.unseal(sealed_private, purpose=f"{SIGNING_KEY_PURPOSE}:{kid}")
    if pem is None:
        raise SecretsError(
            f"signing key {kid} cannot be unsealed: the master key (keys.master_key or "
            "keys.master_key_file) is not the one that sealed it; restore that key, or run "
            "`gateway keys rotate` with the new one (sessions signed by the old keys end)"
        )
    # The key is one this gateway generated and sealed (authenticated encryption): the RSA
    # consistency checks (about 40 ms a key, at every start) could find nothing.
    private = serialization.load_pem_private_key(
        pem, password=None, unsafe_skip_rsa_key_validation=True
    )
    public = private.public_key()
    return SigningKey(kid, alg, public, dict(jwk), private, activated_at, retired_at)


class KeyRing:
    """The keys a process signs and verifies with: the newest active key signs, all verify."""

    def __init__(self, keys: list[SigningKey], now: datetime | None = None) -> None:
        if not keys:
            raise ValueError("no signing keys")
        now = now or datetime.now(UTC)
        self._by_kid = {key.kid: key for key in keys}
        active = [k for k in keys if k.activated_at <= now and k.private_key is not None]
        candidates = active or keys
        self.signing = max(candidates, key=lambda k: k.activated_at)

    def get(self, kid: str) -> SigningKey | None:
        return self._by_kid.get(kid)

    @property
    def keys(self) -> list[SigningKey]:
        return list(self._by_kid.values())

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk for key in self._by_kid.values()]}
