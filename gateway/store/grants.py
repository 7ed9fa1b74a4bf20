"""Codes, refresh-token rotation, token status and revocation: one function per SQL function."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


@dataclass(frozen=True)
class Redeemed:
    status: str  # "ok" or "replay"
    session_id: UUID | None
    family_id: UUID | None
    user_id: UUID | None
    scope: tuple[str, ...]
    nonce: str | None
    auth_time: datetime | None
    offline: bool
    username: str | None = None
    email: str | None = None
    name: str | None = None
    email_verified: bool = False


@dataclass(frozen=True)
class Rotation:
    status: str  # "rotated", "recovered" (after a lost response), "grace" or "replay"
    family_id: UUID | None
    session_id: UUID | None
    user_id: UUID | None
    scope: tuple[str, ...]
    successor_sealed: str | None
    auth_time: datetime | None
    generation: int | None
    username: str | None = None
    email: str | None = None
    name: str | None = None
    email_verified: bool = False
    # The "organization" claim when the scope asks for it (read in the same statement).
    organizations: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TokenStatus:
    active: bool
    client_id: str
    session_id: UUID
    user_id: UUID | None
    username: str | None
    email: str | None
    name: str | None
    scope: tuple[str, ...]
    expires_at: datetime
    email_verified: bool | None = None


@dataclass(frozen=True)
class RefreshInfo:
    active: bool
    family_id: UUID
    client_id: str
    user_id: UUID | None
    username: str | None
    scope: tuple[str, ...]
    created_at: datetime
    expires_at: datetime


async def code_issue(
    db: Executor,
    *,
    code_hash: bytes,
    client_id: str,
    user_id: UUID,
    session_id: UUID,
    redirect_uri: str | None,
    scope: tuple[str, ...],
    nonce: str | None,
    code_challenge: str | None,
    offline: bool,
    ttl: int,
) -> None:
    with sql_errors():
        await db.execute(
            "SELECT daemon.code_issue($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            code_hash,
            client_id,
            user_id,
            session_id,
            redirect_uri,
            list(scope),
            nonce,
            code_challenge,
            offline,
            ttl,
        )


async def code_redeem(
    db: Executor,
    *,
    code_hash: bytes,
    client_id: str,
    redirect_uri: str | None,
    verifier_challenge: str | None,
    refresh_hash: bytes | None,
    refresh_ttl: int,
) -> Redeemed:
    with sql_errors():
        row = await db.fetchrow(
            "SELECT * FROM daemon.code_redeem($1, $2, $3, $4, $5, $6)",
            code_hash,
            client_id,
            redirect_uri,
            verifier_challenge,
            refresh_hash,
            refresh_ttl,
        )
    assert row is not None
    return Redeemed(
        row["status"],
        row["session_id"],
        row["family_id"],
        row["user_id"],
        tuple(row["scope"] or ()),
        row["nonce"],
        row["auth_time"],
        bool(row["offline"]),
        row["username"],
        row["email"],
        row["name"],
        bool(row["email_verified"]),
    )


async def family_open(
    db: Executor,
    *,
    session_id: UUID,
    client_id: str,
    user_id: UUID | None,
    scope: tuple[str, ...],
    origin: str,
) -> UUID:
    with sql_errors():
        family_id: UUID = await db.fetchval(
            "SELECT daemon.family_open($1, $2, $3, $4, $5)",
            session_id,
            client_id,
            user_id,
            list(scope),
            origin,
        )
    return family_id


async def refresh_token(
    db: Executor,
    *,
    old_hash: bytes,
    client_id: str,
    new_hash: bytes,
    new_sealed: str,
    scope: tuple[str, ...] | None,
    grace: int,
    refresh_ttl: int,
    recover: bool = False,
    guard: tuple[str, ...] = (),
    ip: str | None = None,
    user_agent: str | None = None,
) -> Rotation:
    """``daemon.refresh_token``; ``guard``: the client's throttle keys, whose lock refuses the
    refresh before anything else (``daemon.throttle_guard``); ``ip`` and ``user_agent`` of the
    refresh go to its audit event."""
    with sql_errors():
        row = await db.fetchrow(
            "SELECT * FROM daemon.refresh_token($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            old_hash,
            client_id,
            new_hash,
            new_sealed,
            list(scope) if scope is not None else None,
            grace,
            refresh_ttl,
            recover,
            ip,
            user_agent,
            list(guard) or None,
        )
    assert row is not None
    return Rotation(
        row["status"],
        row["family_id"],
        row["session_id"],
        row["user_id"],
        tuple(row["scope"] or ()),
        row["successor_sealed"],
        row["auth_time"],
        row["generation"],
        row["username"],
        row["email"],
        row["name"],
        bool(row["email_verified"]),
        tuple(row["organizations"]) if row["organizations"] is not None else None,
    )


async def token_status(db: Executor, family_id: UUID) -> TokenStatus | None:
    with sql_errors():
        row = await db.fetchrow("SELECT * FROM daemon.token_status($1)", family_id)
    if row is None:
        return None
    values = dict(row)
    values["scope"] = tuple(values["scope"] or ())
    return TokenStatus(**values)


async def refresh_lookup(db: Executor, token_hash: bytes) -> RefreshInfo | None:
    with sql_errors():
        row = await db.fetchrow("SELECT * FROM daemon.refresh_lookup($1)", token_hash)
    if row is None:
        return None
    values = dict(row)
    values["scope"] = tuple(values["scope"] or ())
    return RefreshInfo(**values)


async def family_delivered(db: Executor, family_id: UUID, generation: int) -> None:
    with sql_errors():
        await db.execute("SELECT daemon.family_delivered($1, $2)", family_id, generation)


async def token_revoke(
    db: Executor,
    family_id: UUID,
    client_id: str,
    reason: str,
    ip: str | None = None,
    user_agent: str | None = None,
) -> str:
    with sql_errors():
        return str(
            await db.fetchval(
                "SELECT daemon.token_revoke($1, $2, $3, $4, $5)",
                family_id,
                client_id,
                reason,
                ip,
                user_agent,
            )
        )


async def assertion_use(db: Executor, issuer: str, jti: str, expires_at: datetime) -> None:
    with sql_errors():
        await db.execute("SELECT daemon.assertion_use($1, $2, $3)", issuer, jti, expires_at)
