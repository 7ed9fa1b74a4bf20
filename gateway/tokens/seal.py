"""Sealing: authenticated encryption (AES-256-GCM) of small values with key ids.

Sealed values are ``<kid>.<base64url(nonce || ciphertext || tag)>``. The first key seals, every key
unseals, so rotating a key (prepend the new one, keep the old) logs nobody out. A ``purpose`` is
bound into the additional data, so a value sealed for one use (a refresh-token cookie) cannot be
replayed as another (an access-token cookie, a login flow).

Keys are derived with HKDF-SHA256 from configured secrets of 32 or more bytes.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAX_SEALED_LENGTH = 16384
_NONCE = 12


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_key(secret: bytes, info: str) -> bytes:
    """A 256-bit key for ``info`` from a configured secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info.encode()).derive(secret)


class Sealer:
    """Seals with the first key, unseals with any; ``kid``s must be unique and dot-free."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("a Sealer needs at least one key")
        for kid, key in keys:
            if "." in kid or not kid or len(key) != 32:
                raise ValueError("sealing keys need a dot-free kid and 32 bytes")
        self._seal_kid, seal_key = keys[0]
        self._seal = AESGCM(seal_key)
        self._open = {kid: AESGCM(key) for kid, key in keys}

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._open)

    def seal(self, plaintext: bytes, *, purpose: str) -> str:
        nonce = os.urandom(_NONCE)
        aad = f"{purpose}|{self._seal_kid}".encode()
        return f"{self._seal_kid}.{b64url(nonce + self._seal.encrypt(nonce, plaintext, aad))}"

    def unseal(
        self, sealed: str, *, purpose: str, max_length: int = MAX_SEALED_LENGTH
    ) -> bytes | None:
        """The plaintext, or None when the value is malformed, forged, for another purpose or
        longer than ``max_length`` (the default suits cookies and tokens; a value the gateway
        stored itself, such as a queued mail, may allow more)."""
        if not sealed or len(sealed) > max_length:
            return None
        kid, _, body = sealed.partition(".")
        aead = self._open.get(kid)
        if aead is None or not body:
            return None
        try:
            raw = b64url_decode(body)
        except (binascii.Error, ValueError):
            return None
        if len(raw) < _NONCE + 16:
            return None
        try:
            return aead.decrypt(raw[:_NONCE], raw[_NONCE:], f"{purpose}|{kid}".encode())
        except InvalidTag:
            return None
