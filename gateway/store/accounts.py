"""Self-registration and recovery: the store functions named after the ``daemon.account_*``
functions (sql/functions/095_accounts.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor

# (outbox id, sealed content) of a mail a daemon function queues in its own transaction.
QueuedMail = tuple[UUID, str]


@dataclass(frozen=True)
class AccountLink:
    """An account link as its page shows it (``daemon.account_link_lookup``)."""

    state: str  # pending, used, expired
    email: str | None
    continue_to: str | None
    expires_at: datetime


@dataclass(frozen=True)
class LinkUsed:
    """What using a link did: whose account, where the person was going, sessions ended."""

    user_id: UUID
    continue_to: str | None
    sessions_ended: int = 0


async def account_register(
    db: Executor,
    *,
    email: str,
    username: str,
    name: str,
    password_hash: str,
    token_hash: bytes,
    ttl: int,
    continue_to: str | None,
    verify_mail: QueuedMail | None,
    notice_mail: QueuedMail | None,
) -> str:
    """``created``, ``replaced`` or ``exists``; ``UserExistsError`` (GW001) for a taken name."""
    verify_id, verify_sealed = verify_mail if verify_mail is not None else (None, None)
    notice_id, notice_sealed = notice_mail if notice_mail is not None else (None, None)
    with sql_errors():
        status: str = await db.fetchval(
            "SELECT daemon.account_register($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            email,
            username,
            name,
            password_hash,
            token_hash,
            ttl,
            continue_to,
            verify_id,
            verify_sealed,
            notice_id,
            notice_sealed,
        )
    return status


async def account_link_lookup(db: Executor, token_hash: bytes, purpose: str) -> AccountLink | None:
    with sql_errors():
        row = await db.fetchrow(
            "SELECT * FROM daemon.account_link_lookup($1, $2)", token_hash, purpose
        )
    if row is None:
        return None
    return AccountLink(row["state"], row["email"], row["continue_to"], row["expires_at"])


async def account_verify(db: Executor, token_hash: bytes) -> LinkUsed:
    """``AccountLinkUnknown``/``Expired``/``Used`` (GK001-GK003) when it cannot be used."""
    with sql_errors():
        row = await db.fetchrow("SELECT * FROM daemon.account_verify($1)", token_hash)
    assert row is not None
    return LinkUsed(row["user_id"], row["continue_to"])


async def account_recover(
    db: Executor,
    *,
    email: str,
    token_hash: bytes,
    ttl: int,
    continue_to: str | None,
    mail: QueuedMail | None,
) -> bool:
    """Whether a link was made (and its mail queued); the caller's answer must not depend on it."""
    mail_id, sealed = mail if mail is not None else (None, None)
    with sql_errors():
        made: bool = await db.fetchval(
            "SELECT daemon.account_recover($1, $2, $3, $4, $5, $6)",
            email,
            token_hash,
            ttl,
            continue_to,
            mail_id,
            sealed,
        )
    return made


async def account_reset(db: Executor, token_hash: bytes, password_hash: str) -> LinkUsed:
    """``AccountLinkUnknown``/``Expired``/``Used`` (GK001-GK003) when it cannot be used."""
    with sql_errors():
        row = await db.fetchrow(
            "SELECT * FROM daemon.account_reset($1, $2)", token_hash, password_hash
        )
    assert row is not None
    return LinkUsed(row["user_id"], row["continue_to"], row["sessions_ended"])
