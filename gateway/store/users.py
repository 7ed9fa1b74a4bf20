"""Users: the store functions named after the SQL functions they call."""

from __future__ import annotations

from uuid import UUID

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


async def user_add(
    db: Executor, username: str, password_hash: str, email: str | None, name: str | None
) -> UUID:
    """``daemon.user_add``: raises ``UserExistsError`` (GW001) or ``InvalidInputError`` (GW002)."""
    with sql_errors():
        user_id: UUID = await db.fetchval(
            "SELECT daemon.user_add($1, $2, $3, $4)", username, password_hash, email, name
        )
    return user_id


async def user_update(
    db: Executor,
    username: str,
    password_hash: str | None,
    locked: bool | None,
    actor: str | None = None,
) -> int:
    """``daemon.user_update``: the number of sessions ended; ``UnknownUserError`` (GW003).
    ``actor`` (e.g. ``cli``) goes to the audit events."""
    with sql_errors():
        ended: int = await db.fetchval(
            "SELECT daemon.user_update($1, $2, $3, $4)", username, password_hash, locked, actor
        )
    return ended
