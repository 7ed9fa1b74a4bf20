"""The audit log (``sql/functions/010_audit.sql``): one function per ``daemon.audit_*``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: datetime
    kind: str
    actor: str | None
    user_id: UUID | None
    username: str | None
    client_id: str | None
    session_id: UUID | None
    ip: str | None
    user_agent: str | None
    detail: dict[str, Any]


def _event(row: asyncpg.Record) -> AuditEvent:
    values = dict(row)
    values["ip"] = str(row["ip"]) if row["ip"] is not None else None
    detail = values["detail"]
    values["detail"] = dict(detail) if isinstance(detail, dict) else {}
    return AuditEvent(**values)


async def audit_list(
    db: Executor,
    *,
    user_id: UUID | None,
    kinds: tuple[str, ...] | None,
    since: datetime | None,
    limit: int,
) -> list[AuditEvent]:
    """``daemon.audit_list``: the newest ``limit`` events (of ``user_id`` when given), oldest
    first."""
    with sql_errors():
        rows = await db.fetch(
            "SELECT * FROM daemon.audit_list($1, $2, $3, $4)",
            user_id,
            list(kinds) if kinds is not None else None,
            since,
            limit,
        )
    return [_event(row) for row in rows]


async def emit_audit_events(
    pool: asyncpg.Pool, limit: int, write: Callable[[list[AuditEvent]], None]
) -> int:
    """One batch of the SIEM output: ``daemon.audit_emit`` and ``write(events)`` in one
    transaction, so the cursor moves only once the lines are written (at least once: a process
    that dies before the commit leaves them to the next writer). How many were written."""
    with sql_errors():
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch("SELECT * FROM daemon.audit_emit($1)", limit)
            events = [_event(row) for row in rows]
            if events:
                write(events)
    return len(events)
