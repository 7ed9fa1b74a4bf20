"""The gateway's signing keys in ``oauth2.signing_key`` (private halves sealed by the caller)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


@dataclass(frozen=True)
class StoredKey:
    kid: str
    alg: str
    public_jwk: dict[str, Any]
    private_key_sealed: str
    activated_at: datetime
    retired_at: datetime | None


def _stored(row: Any) -> StoredKey:
    jwk = row["public_jwk"]
    if isinstance(jwk, str):  # a connection without the jsonb codec
        jwk = json.loads(jwk)
    return StoredKey(
        row["kid"],
        row["alg"],
        jwk,
        row["private_key_sealed"],
        row["activated_at"],
        row["retired_at"],
    )


async def signing_key_ensure(
    db: Executor,
    *,
    kid: str,
    alg: str,
    public_jwk: dict[str, Any],
    private_sealed: str,
    rotate_after: int,
    publish_ahead: int,
    keep: int,
    force: bool = False,
) -> list[StoredKey]:
    with sql_errors():
        rows = await db.fetch(
            "SELECT * FROM daemon.signing_key_ensure($1, $2, $3::text::jsonb, $4, $5, $6, $7, $8)",
            kid,
            alg,
            json.dumps(public_jwk),
            private_sealed,
            rotate_after,
            publish_ahead,
            keep,
            force,
        )
    return [_stored(row) for row in rows]


async def signing_keys(db: Executor, keep: int) -> list[StoredKey]:
    with sql_errors():
        rows = await db.fetch("SELECT * FROM daemon.signing_keys($1)", keep)
    return [_stored(row) for row in rows]
