"""Identities at external providers: the store function named after ``daemon.identity_login``."""

from __future__ import annotations

from uuid import UUID

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


async def identity_login(
    db: Executor, provider: str, subject: str, email: str | None, email_verified: bool
) -> UUID:
    """The local user for an external identity; ``AccessDeniedError`` (OA006) when none."""
    with sql_errors():
        user_id: UUID = await db.fetchval(
            "SELECT daemon.identity_login($1, $2, $3, $4)",
            provider,
            subject,
            email,
            email_verified,
        )
    return user_id
