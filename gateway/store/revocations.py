"""Revoked sessions and token families: the recent ones, and a listener for new ones."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import asyncpg

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor

CHANNEL = "gateway_revocation"


async def revocations_since(db: Executor, seconds: int) -> list[tuple[str, UUID]]:
    with sql_errors():
        rows = await db.fetch("SELECT * FROM daemon.revocations_since($1)", seconds)
    return [(row["kind"], row["id"]) for row in rows]


async def listen(conn: asyncpg.Connection, callback: Callable[[str, str], None]) -> None:
    """Call ``callback(kind, id)`` for every revocation announced on ``conn``."""

    def on_notify(_conn: object, _pid: int, _channel: str, payload: object) -> None:
        kind, _, ident = str(payload).partition(":")
        if kind in ("s", "f") and ident:
            callback(kind, ident)

    with sql_errors():
        await conn.add_listener(CHANNEL, on_notify)
