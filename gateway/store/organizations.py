"""Organisations, memberships and invitations: the store functions named after the
``daemon.org_*``, ``daemon.invitation_*`` and ``daemon.user_organizations`` functions
(sql/functions/090_organizations.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


@dataclass(frozen=True)
class Organization:
    alias: str
    name: str
    domains: tuple[str, ...]
    members: int
    pending: int
    created_at: datetime


@dataclass(frozen=True)
class Member:
    user_id: UUID
    username: str
    email: str | None
    name: str | None
    role: str
    joined_at: datetime


@dataclass(frozen=True)
class Invitation:
    id: UUID
    email: str
    role: str
    client_id: str | None
    invited_by: str
    created_at: datetime
    expires_at: datetime
    state: str  # pending, used, revoked, expired


@dataclass(frozen=True)
class Invited:
    """A new invitation: its id, its end, and whether it replaced a pending one."""

    id: UUID
    expires_at: datetime
    replaced: bool


@dataclass(frozen=True)
class InvitationView:
    """An invitation as its link shows it (``daemon.invitation_lookup``)."""

    state: str  # pending, used, revoked, expired, organization_removed
    alias: str
    organization_name: str
    email: str
    role: str
    client_id: str | None
    expires_at: datetime
    user_id: UUID | None  # the account that has the invited email, if any


async def org_add(
    db: Executor, alias: str, name: str, domains: tuple[str, ...], actor: str
) -> UUID:
    with sql_errors():
        org_id: UUID = await db.fetchval(
            "SELECT daemon.org_add($1, $2, $3, $4)", alias, name, list(domains), actor
        )
    return org_id


async def org_remove(db: Executor, alias: str, actor: str) -> None:
    with sql_errors():
        await db.execute("SELECT daemon.org_remove($1, $2)", alias, actor)


async def org_list(db: Executor, admin: UUID | None = None) -> list[Organization]:
    """The live organisations; with ``admin``, those that user is an admin of."""
    with sql_errors():
        rows = await db.fetch("SELECT * FROM daemon.org_list($1)", admin)
    return [_organization(row) for row in rows]


async def org_get(db: Executor, alias: str) -> Organization | None:
    with sql_errors():
        rows = await db.fetch("SELECT * FROM daemon.org_list(NULL, $1)", alias)
    return _organization(rows[0]) if rows else None


def _organization(r: asyncpg.Record) -> Organization:
    return Organization(
        r["alias"], r["name"], tuple(r["domains"]), r["members"], r["pending"], r["created_at"]
    )


async def org_members(db: Executor, alias: str) -> list[Member]:
    with sql_errors():
        rows = await db.fetch("SELECT * FROM daemon.org_members($1)", alias)
    return [Member(**dict(row)) for row in rows]


async def org_invitations(db: Executor, alias: str, *, include_all: bool) -> list[Invitation]:
    with sql_errors():
        rows = await db.fetch("SELECT * FROM daemon.org_invitations($1, $2)", alias, include_all)
    return [Invitation(**dict(row)) for row in rows]


async def org_role(db: Executor, alias: str, user_id: UUID) -> str | None:
    with sql_errors():
        role: str | None = await db.fetchval("SELECT daemon.org_role($1, $2)", alias, user_id)
    return role


async def org_invite(
    db: Executor,
    alias: str,
    email: str,
    *,
    role: str,
    client_id: str | None,
    token_hash: bytes,
    ttl: int,
    actor: str,
    mail: tuple[UUID, str, str] | None = None,
) -> Invited:
    """``mail``: (id, recipient, sealed content) of the invitation email, queued in the same
    transaction."""
    mail_id, recipient, sealed = mail if mail is not None else (None, None, None)
    with sql_errors():
        row = await db.fetchrow(
            "SELECT * FROM daemon.org_invite($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            alias,
            email,
            role,
            client_id,
            token_hash,
            ttl,
            actor,
            mail_id,
            recipient,
            sealed,
        )
    assert row is not None
    return Invited(row["id"], row["expires_at"], row["replaced"])


async def org_revoke_invite(db: Executor, alias: str, email: str, actor: str) -> int:
    with sql_errors():
        count: int = await db.fetchval(
            "SELECT daemon.org_revoke_invite($1, $2, $3)", alias, email, actor
        )
    return count


async def org_remove_member(db: Executor, alias: str, user: str, actor: str) -> UUID:
    with sql_errors():
        user_id: UUID = await db.fetchval(
            "SELECT daemon.org_remove_member($1, $2, $3)", alias, user, actor
        )
    return user_id


async def invitation_lookup(db: Executor, token_hash: bytes) -> InvitationView | None:
    with sql_errors():
        row = await db.fetchrow("SELECT * FROM daemon.invitation_lookup($1)", token_hash)
    if row is None:
        return None
    return InvitationView(
        row["state"],
        row["alias"],
        row["organization_name"],
        row["email"],
        row["role"],
        row["client_id"],
        row["expires_at"],
        row["user_id"],
    )


async def invitation_register(
    db: Executor, token_hash: bytes, *, username: str, name: str, password_hash: str
) -> UUID:
    with sql_errors():
        user_id: UUID = await db.fetchval(
            "SELECT daemon.invitation_register($1, $2, $3, $4)",
            token_hash,
            username,
            name,
            password_hash,
        )
    return user_id


async def invitation_accept(db: Executor, token_hash: bytes, user_id: UUID) -> str:
    with sql_errors():
        alias: str = await db.fetchval(
            "SELECT daemon.invitation_accept($1, $2)", token_hash, user_id
        )
    return alias


async def user_organizations(db: Executor, user_id: UUID) -> tuple[str, ...]:
    with sql_errors():
        aliases: list[str] = await db.fetchval("SELECT daemon.user_organizations($1)", user_id)
    return tuple(aliases)
