"""The master key: seals private signing keys and in-flight refresh tokens at rest.

Configured (``keys.master_key``, at least 32 bytes) or, when unset, generated once into
``keys.master_key_file`` (``var/master.key``, mode 0600) and read from there afterwards. Every
replica of one deployment must share it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from gateway.errors import SecretsError
from gateway.tokens.seal import Sealer, b64url, derive_key

MASTER_KID = "m1"


def read_or_create_master_secret(path: Path) -> bytes:
    """The secret in ``path``, created (exclusively, 0600) when it does not exist yet."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise SecretsError(f"cannot read the master key {path}: {exc.strerror}") from None
        if len(secret) < 32:
            raise SecretsError(f"the master key {path} holds fewer than 32 bytes") from None
        return secret
    except OSError as exc:
        raise SecretsError(f"cannot create the master key {path}: {exc.strerror}") from None
    secret = b64url(secrets.token_bytes(48)).encode()
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret + b"\n")
    return secret


def master_sealer(secret: bytes) -> Sealer:
    return Sealer([(MASTER_KID, derive_key(secret, "gateway master key v1"))])
