"""Identities at external providers: the store functions named after the SQL functions."""

from __future__ import annotations

from datetime import datetime
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
    db: Executor,
    *,
    provider: str,
    issuer: str,
    subject: str,
    user_id: UUID,
    email: str | None,
    password_changed_at: datetime,
) -> None:
    """``daemon.identity_link``: ``AccessDeniedError`` (OA006) when linked to someone else,
    ``InvalidGrantError`` (OA001) when the user is locked or the password changed meanwhile."""
    with sql_errors():
        await db.execute(
            "SELECT daemon.identity_link($1, $2, $3, $4, $5, $6)",
            provider,
            issuer,
            subject,
            user_id,
            email,
            password_changed_at,
        )
