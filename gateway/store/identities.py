"""Identities at external providers: the store functions named after the SQL functions."""

from __future__ import annotations

from uuid import UUID

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


async def identity_login(db: Executor, issuer: str, subject: str) -> UUID | None:
    """``daemon.identity_login``: the linked user, None when unlinked; ``AccessDeniedError``
    (OA006) when that user is locked."""
    with sql_errors():
        user_id: UUID | None = await db.fetchval(
            "SELECT daemon.identity_login($1, $2)", issuer, subject
        )
    return user_id


async def identity_link(
    db: Executor, *, provider: str, issuer: str, subject: str, user_id: UUID, email: str | None
) -> None:
    """``daemon.identity_link``: ``AccessDeniedError`` (OA006) when linked to someone else."""
    with sql_errors():
        await db.execute(
            "SELECT daemon.identity_link($1, $2, $3, $4, $5)",
            provider,
            issuer,
            subject,
            user_id,
            email,
        )
