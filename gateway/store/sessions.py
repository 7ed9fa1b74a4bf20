"""Sign-in, sessions and consent: one function per ``daemon.*`` SQL function, same names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


@dataclass(frozen=True)
class Account:
    user_id: UUID
    username: str
    email: str | None
    name: str | None
    password_hash: str
    locked: bool
    password_changed_at: datetime
    email_verified: bool = False


@dataclass(frozen=True)
class Login:
    session_id: UUID
    family_id: UUID
    auth_time: datetime


@dataclass(frozen=True)
class Session:
    session_id: UUID
    user_id: UUID
    username: str
    email: str | None
    name: str | None
    auth_time: datetime
    expires_at: datetime
    email_verified: bool = False


async def user_lookup(db: Executor, login: str) -> Account | None:
    with sql_errors():
        row = await db.fetchrow("SELECT * FROM daemon.user_lookup($1)", login)
    return Account(**dict(row)) if row else None


async def login(
    db: Executor,
    *,
    user_id: UUID | None,
    client_id: str,
    kind: str,
    scope: tuple[str, ...],
    origin: str,
    refresh_hash: bytes | None,
    session_ttl: int,
    refresh_ttl: int,
    ip: str | None,
    user_agent: str | None,
    session_id: UUID | None = None,
    clear: tuple[str, ...] = (),
    secret_hash: bytes | None = None,
    password_changed_at: datetime | None = None,
    guard: tuple[str, ...] = (),
) -> Login:
    """``daemon.login``; ``password_changed_at`` of the password the caller verified, if any.
    ``guard``: throttle keys whose lock refuses the sign-in first (``daemon.throttle_guard``)."""
    with sql_errors():
        row = await db.fetchrow(
            "SELECT * FROM daemon.login("
            "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            user_id,
            client_id,
            kind,
            list(scope),
            origin,
            refresh_hash,
            session_ttl,
            refresh_ttl,
            ip,
            user_agent,
            session_id,
            list(clear),
            secret_hash,
            password_changed_at,
            list(guard) or None,
        )
    assert row is not None
    return Login(row["session_id"], row["family_id"], row["auth_time"])


async def session_open(
    db: Executor,
    *,
    user_id: UUID,
    client_id: str,
    ttl: int,
    ip: str | None,
    user_agent: str | None,
    clear: tuple[str, ...] = (),
    session_id: UUID | None = None,
    password_changed_at: datetime | None = None,
) -> UUID:
    """``daemon.session_open``; ``password_changed_at`` of the password the caller verified."""
    with sql_errors():
        row = await db.fetchrow(
            "SELECT * FROM daemon.session_open($1, $2, $3, $4, $5, $6, $7, $8)",
            user_id,
            client_id,
            ttl,
            ip,
            user_agent,
            list(clear),
            session_id,
            password_changed_at,
        )
    assert row is not None
    opened: UUID = row["session_id"]
    return opened


async def session_by_secret(db: Executor, secret_hash: bytes) -> tuple[UUID, UUID] | None:
    with sql_errors():
        row = await db.fetchrow("SELECT * FROM daemon.session_by_secret($1)", secret_hash)
    return (row["session_id"], row["user_id"]) if row else None


async def session_get(db: Executor, session_id: UUID) -> Session | None:
    with sql_errors():
        row = await db.fetchrow("SELECT * FROM daemon.session_get($1)", session_id)
    return Session(**dict(row)) if row else None


async def session_revoke(db: Executor, session_id: UUID, reason: str) -> bool:
    with sql_errors():
        return bool(await db.fetchval("SELECT daemon.session_revoke($1, $2)", session_id, reason))


async def consent_get(db: Executor, user_id: UUID, client_id: str) -> tuple[str, ...]:
    with sql_errors():
        scope = await db.fetchval("SELECT daemon.consent_get($1, $2)", user_id, client_id)
    return tuple(scope or ())


async def consent_grant(
    db: Executor, user_id: UUID, client_id: str, scope: tuple[str, ...]
) -> None:
    with sql_errors():
        await db.execute("SELECT daemon.consent_grant($1, $2, $3)", user_id, client_id, list(scope))


async def login_failure(
    db: Executor,
    *,
    user_id: UUID | None,
    login: str,
    client_id: str | None,
    origin: str,
    ip: str | None,
    user_agent: str | None,
) -> None:
    """``daemon.login_failure``: audit a failed sign-in (never the password); ``user_id``: the
    account the name refers to, when there is one."""
    with sql_errors():
        await db.execute(
            "SELECT daemon.login_failure($1, $2, $3, $4, $5, $6)",
            user_id,
            login[:320],
            client_id,
            origin,
            ip,
            user_agent,
        )


@dataclass(frozen=True)
class SessionInfo:
    """One of a user's sessions as the account page and ``gateway session list`` show it."""

    session_id: UUID
    client_id: str
    app: str | None
    kind: str
    ip: str | None
    user_agent: str | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None
    state: str  # live, ended, expired


async def session_list(db: Executor, user_id: UUID, *, include_over: bool) -> list[SessionInfo]:
    """``daemon.session_list``: live sessions first, most recently used first."""
    with sql_errors():
        rows = await db.fetch("SELECT * FROM daemon.session_list($1, $2)", user_id, include_over)
    return [
        SessionInfo(**{**dict(row), "ip": str(row["ip"]) if row["ip"] is not None else None})
        for row in rows
    ]


async def session_end(
    db: Executor,
    session_id: UUID,
    *,
    user_id: UUID | None,
    reason: str,
    actor: str | None,
    ip: str | None,
    user_agent: str | None,
) -> bool:
    """``daemon.session_end``: whether it ended the session (with ``user_id``: a live session of
    that user; without: any session not ended yet)."""
    with sql_errors():
        ended: bool = await db.fetchval(
            "SELECT daemon.session_end($1, $2, $3, $4, $5, $6)",
            session_id,
            user_id,
            reason,
            actor,
            ip,
            user_agent,
        )
    return ended


async def session_end_all(
    db: Executor,
    user_id: UUID,
    *,
    keep: UUID | None,
    reason: str,
    actor: str | None,
    ip: str | None,
    user_agent: str | None,
) -> int:
    """``daemon.session_end_all``: how many of the user's live sessions (all but ``keep``)
    it ended."""
    with sql_errors():
        ended: int = await db.fetchval(
            "SELECT daemon.session_end_all($1, $2, $3, $4, $5, $6)",
            user_id,
            keep,
            reason,
            actor,
            ip,
            user_agent,
        )
    return ended
