"""Refreshes at an external OpenID provider: the store functions named after
``daemon.external_refresh_*`` (sql/functions/065_external_refresh.sql)."""

from __future__ import annotations

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


async def external_refresh_claim(
    db: Executor, token_hash: bytes, *, wait: int, keep: int
) -> tuple[str, str | None]:
    """(outcome, sealed successor): claimed, pending, done, replayed or refused."""
    with sql_errors():
        row = await db.fetchrow(
            "SELECT * FROM daemon.external_refresh_claim($1, $2, $3)", token_hash, wait, keep
        )
    assert row is not None
    return str(row["outcome"]), row["successor_sealed"]


async def external_refresh_store(
    db: Executor, token_hash: bytes, successor_sealed: str, *, grace: int
) -> None:
    with sql_errors():
        await db.execute(
            "SELECT daemon.external_refresh_store($1, $2, $3)", token_hash, successor_sealed, grace
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
