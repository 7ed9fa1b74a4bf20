"""Building the ``Authority`` of a process: the master key, the signing keys, their rotation."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from gateway.config.loader import Config
from gateway.errors import SecretsError
from gateway.store import keys as key_store
from gateway.store.keys import StoredKey
from gateway.store.pool import Executor
from gateway.tokens.keys import KeyRing, generate_signing_key, load_signing_key, seal_private_key
from gateway.tokens.master import master_sealer, read_or_create_master_secret
from gateway.tokens.seal import Sealer

log = logging.getLogger(__name__)
PUBLISH_AHEAD = 3600
DAY = 86400


def master_secret(config: Config, workdir: Path | None = None) -> bytes:
    """``keys.master_key``, else the generated ``keys.master_key_file``."""
    keys = config.gateway.keys
    if keys.master_key is not None:
        return keys.master_key.get_secret_value().encode()
    path = Path(keys.master_key_file)
    if not path.is_absolute():
        path = (workdir or Path.cwd()) / path
    return read_or_create_master_secret(path)


def _keep_seconds(config: Config) -> int:
    tokens = config.gateway.tokens
    return max(tokens.access_ttl, tokens.service_access_ttl) + DAY


def _ring(stored: list[StoredKey], master: Sealer, *, skip_unreadable: bool = False) -> KeyRing:
    """The key ring of the stored keys. A key the master key cannot open fails the start (a
    replica with another master key must not sign), unless this is a forced rotation."""
    keys = []
    for k in stored:
        try:
            keys.append(
                load_signing_key(
                    k.kid,
                    k.alg,
                    k.public_jwk,
                    k.private_key_sealed,
                    master,
                    k.activated_at,
                    k.retired_at,
                )
            )
        except SecretsError:
            if not skip_unreadable:
                raise
            log.warning("signing key %s cannot be unsealed with this master key; skipped", k.kid)
    return KeyRing(keys)


async def ensure_signing_keys(
    db: Executor, config: Config, master: Sealer, *, force: bool = False
) -> KeyRing:
    """The published keys, creating (or rotating to) a new one when there is none fresh enough."""
    tokens = config.gateway.tokens
    rotate_after = tokens.key_rotation_days * DAY
    keep = _keep_seconds(config)
    if not force:
        stored = await key_store.signing_keys(db, keep)
        current = [k for k in stored if k.retired_at is None and k.alg == tokens.signing_alg]
        if current:
            newest = max(current, key=lambda k: k.activated_at)
            if newest.activated_at.timestamp() + rotate_after > time.time():
                return _ring(stored, master)
    candidate = await asyncio.to_thread(generate_signing_key, tokens.signing_alg)
    stored = await key_store.signing_key_ensure(
        db,
        kid=candidate.kid,
        alg=candidate.alg,
        public_jwk=candidate.public_jwk,
        private_sealed=seal_private_key(candidate, master),
        rotate_after=rotate_after,
        publish_ahead=PUBLISH_AHEAD,
        keep=keep,
        force=force,
    )
    if any(k.kid == candidate.kid for k in stored):
        log.info("signing key %s (%s) added", candidate.kid, candidate.alg)
    return _ring(stored, master, skip_unreadable=force)


def build_master(config: Config, workdir: Path | None = None) -> tuple[bytes, Sealer]:
    secret = master_secret(config, workdir)
    return secret, master_sealer(secret)
