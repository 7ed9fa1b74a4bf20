"""The back-channel logout outbox: the store functions named after ``daemon.backchannel_*``
(sql/functions/100_backchannel_logout.sql, where the state machine is drawn).

Rows are queued by a trigger on ``auth.session`` in the transaction that ends a session, which
announces them with ``NOTIFY gateway_backchannel_logout`` (``CHANNEL``); every process that sends
listens for it (``gateway.store.wakeups.Wakeups``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor

CHANNEL = "gateway_backchannel_logout"


@dataclass(frozen=True, slots=True)
class ClaimedLogout:
    """A logout leased to this sender (``daemon.backchannel_claim``); ``claim`` names the
    lease."""

    id: UUID
    session_id: UUID
    user_id: UUID
    client_id: str
    attempts: int
    claim: UUID


@dataclass(frozen=True, slots=True)
class LogoutEntry:
    """A row of ``gateway logout outbox``."""

    id: UUID
    session_id: UUID
    user_id: UUID
    client_id: str
    reason: str | None
    state: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None


async def backchannel_claim(db: Executor, *, limit: int, lease: int) -> list[ClaimedLogout]:
    """``daemon.backchannel_claim``: up to ``limit`` due logouts, leased for ``lease`` s."""
    with sql_errors():
        rows = await db.fetch("SELECT * FROM daemon.backchannel_claim($1, $2)", limit, lease)
    return [ClaimedLogout(**dict(row)) for row in rows]


async def backchannel_sent(db: Executor, logout_id: UUID, claim: UUID) -> bool:
    """``daemon.backchannel_sent``: False when the lease was taken over in the meantime."""
    with sql_errors():
        done: bool = await db.fetchval("SELECT daemon.backchannel_sent($1, $2)", logout_id, claim)
    return done


async def backchannel_failed(
    db: Executor, logout_id: UUID, claim: UUID, error: str, *, max_age: int
) -> tuple[str, datetime | None] | None:
    """``daemon.backchannel_failed``: (``queued``, next attempt) or (``failed``, None); None
    when the lease was taken over in the meantime."""
    with sql_errors():
        row = await db.fetchrow(
            "SELECT * FROM daemon.backchannel_failed($1, $2, $3, $4)",
            logout_id,
            claim,
            error,
            max_age,
        )
    return None if row is None else (str(row["state"]), row["next_attempt_at"])


async def backchannel_skipped(db: Executor, logout_id: UUID, claim: UUID, reason: str) -> bool:
    """``daemon.backchannel_skipped``: closed unsent (no URI for the client any more)."""
    with sql_errors():
        done: bool = await db.fetchval(
            "SELECT daemon.backchannel_skipped($1, $2, $3)", logout_id, claim, reason
        )
    return done


async def backchannel_release(db: Executor, logout_id: UUID, claim: UUID) -> bool:
    """``daemon.backchannel_release``: the logout is due again at once."""
    with sql_errors():
        done: bool = await db.fetchval(
            "SELECT daemon.backchannel_release($1, $2)", logout_id, claim
        )
    return done


async def backchannel_outbox(db: Executor, *, include_done: bool, limit: int) -> list[LogoutEntry]:
    """``daemon.backchannel_outbox``: logouts not delivered (or every one kept), oldest
    first."""
    with sql_errors():
        rows = await db.fetch(
            "SELECT * FROM daemon.backchannel_outbox($1, $2)", include_done, limit
        )
    return [LogoutEntry(**dict(row)) for row in rows]
