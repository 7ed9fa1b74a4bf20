"""The mail outbox: the store functions named after ``daemon.mail_*``
(sql/functions/090_mail.sql, where the state machine is drawn).

``daemon.mail_enqueue`` and ``daemon.mail_requeue`` announce new work with ``NOTIFY gateway_mail``
(``CHANNEL``); every process that sends listens for it (``gateway.store.wakeups.Wakeups``), so a
message queued by any replica goes out at once rather than at the next poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor

CHANNEL = "gateway_mail"


@dataclass(frozen=True, slots=True)
class ClaimedMail:
    """A message leased to this sender (``daemon.mail_claim``); ``claim`` names the lease."""

    id: UUID
    kind: str
    recipient: str
    content_sealed: str
    attempts: int
    created_at: datetime
    claim: UUID


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A row of ``gateway mail outbox``: metadata only, never the content."""

    id: UUID
    kind: str
    recipient: str
    state: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None


async def mail_enqueue(
    db: Executor, mail_id: UUID, kind: str, recipient: str, content_sealed: str
) -> UUID:
    """``daemon.mail_enqueue``: queued, due now; the senders are woken at commit."""
    with sql_errors():
        queued: UUID = await db.fetchval(
            "SELECT daemon.mail_enqueue($1, $2, $3, $4)", mail_id, kind, recipient, content_sealed
        )
    return queued


async def mail_claim(db: Executor, *, limit: int, lease: int) -> list[ClaimedMail]:
    """``daemon.mail_claim``: up to ``limit`` due messages, leased for ``lease`` seconds."""
    with sql_errors():
        rows = await db.fetch("SELECT * FROM daemon.mail_claim($1, $2)", limit, lease)
    return [ClaimedMail(**dict(row)) for row in rows]


async def mail_sent(db: Executor, mail_id: UUID, claim: UUID) -> bool:
    """``daemon.mail_sent``: False when the lease was taken over in the meantime."""
    with sql_errors():
        done: bool = await db.fetchval("SELECT daemon.mail_sent($1, $2)", mail_id, claim)
    return done


async def mail_failed(
    db: Executor, mail_id: UUID, claim: UUID, error: str, *, permanent: bool, give_up: int
) -> tuple[str, datetime | None] | None:
    """``daemon.mail_failed``: (``queued``, next attempt) or (``failed``, None); None when the
    lease was taken over in the meantime."""
    with sql_errors():
        row = await db.fetchrow(
            "SELECT * FROM daemon.mail_failed($1, $2, $3, $4, $5)",
            mail_id,
            claim,
            error,
            permanent,
            give_up,
        )
    return None if row is None else (str(row["state"]), row["next_attempt_at"])


async def mail_release(db: Executor, mail_id: UUID, claim: UUID) -> bool:
    """``daemon.mail_release``: the message is due again at once."""
    with sql_errors():
        done: bool = await db.fetchval("SELECT daemon.mail_release($1, $2)", mail_id, claim)
    return done


async def mail_requeue(db: Executor, mail_id: UUID | None) -> int:
    """``daemon.mail_requeue``: that message, or (None) every failed one; how many.
    ``UnknownMailError`` / ``MailAlreadySentError`` for an id that cannot be retried."""
    with sql_errors():
        count: int = await db.fetchval("SELECT daemon.mail_requeue($1)", mail_id)
    return count


async def mail_outbox(db: Executor, *, include_sent: bool, limit: int) -> list[OutboxEntry]:
    """``daemon.mail_outbox``: unsent messages (or every one kept), oldest first."""
    with sql_errors():
        rows = await db.fetch("SELECT * FROM daemon.mail_outbox($1, $2)", include_sent, limit)
    return [OutboxEntry(**dict(row)) for row in rows]
