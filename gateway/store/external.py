"""Sessions and refreshes at an external OpenID provider: the store functions named after
``daemon.external_session_*`` and ``daemon.external_refresh_*``
(sql/functions/065_external_refresh.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


async def external_session_start(
    db: Executor, session_id: UUID, *, provider: str, subject: str, ttl: int
) -> datetime:
    """Record a new session; when it ends at the latest."""
    with sql_errors():
        expires: datetime = await db.fetchval(
            "SELECT daemon.external_session_start($1, $2, $3, $4)",
            session_id,
            provider,
            subject,
            ttl,
        )
    return expires


@dataclass(frozen=True)
class Claim:
    """``outcome``: claimed, pending, done, replayed, refused or ended (the session is over)."""

    outcome: str
    successor_sealed: str | None
    session_expires: datetime | None


async def external_refresh_claim(
    db: Executor, token_hash: bytes, session_id: UUID, *, wait: int, keep: int
) -> Claim:
    with sql_errors():
        row = await db.fetchrow(
            "SELECT * FROM daemon.external_refresh_claim($1, $2, $3, $4)",
            token_hash,
            session_id,
            wait,
            keep,
        )
    assert row is not None
    return Claim(str(row["outcome"]), row["successor_sealed"], row["session_expires"])


async def external_refresh_store(
    db: Executor, token_hash: bytes, successor_sealed: str, *, grace: int, rotated: bool
) -> None:
    with sql_errors():
        await db.execute(
            "SELECT daemon.external_refresh_store($1, $2, $3, $4)",
            token_hash,
            successor_sealed,
            grace,
            rotated,
        )


async def external_refresh_refused(db: Executor, token_hash: bytes) -> None:
    with sql_errors():
        await db.execute("SELECT daemon.external_refresh_refused($1)", token_hash)


async def external_refresh_release(db: Executor, token_hash: bytes) -> None:
    with sql_errors():
        await db.execute("SELECT daemon.external_refresh_release($1)", token_hash)


async def external_refresh_delivered(db: Executor, token_hash: bytes) -> None:
    with sql_errors():
        await db.execute("SELECT daemon.external_refresh_delivered($1)", token_hash)
