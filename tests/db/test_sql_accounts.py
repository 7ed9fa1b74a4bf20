"""The account-link functions (sql/functions/095_accounts.sql) through the store layer, on a
real database: one transaction per change with its mail, one winner when a link is used twice at
once, nothing at all for an unknown email, and a pending account that no sign-in path accepts."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import pytest

from gateway.errors import AccountLinkUnusable, AccountLinkUsed
from gateway.store import accounts as store
from gateway.store import organizations as org_store
from gateway.store.errors import UserExistsError
from gateway.store.housekeeping import housekeep
from tests.support import light_passwords

HASH = light_passwords().hash("Some-Passw0rd-1")


@pytest.fixture(autouse=True)
async def clean(db: asyncpg.Connection, users: dict[str, str]) -> None:
    await db.execute(
        "DELETE FROM mail.outbox; DELETE FROM auth.users WHERE email LIKE '%@accounts.example'"
    )


@pytest.fixture
async def other(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


def token() -> bytes:
    return hashlib.sha256(secrets.token_bytes(32)).digest()


async def register(db: asyncpg.Connection, email: str, username: str, digest: bytes) -> str:
    return await store.account_register(
        db, email=email, username=username, name="N", password_hash=HASH, token_hash=digest,
        ttl=3600, continue_to=None, verify_mail=(uuid4(), "verify.sealed"),
        notice_mail=(uuid4(), "notice.sealed"),
    )  # fmt: skip


async def test_register_queues_one_mail_with_the_account(db: asyncpg.Connection) -> None:
    assert await register(db, "a@accounts.example", "a1", token()) == "created"
    kinds = await db.fetch("SELECT kind, recipient FROM mail.outbox")
    assert [(r["kind"], r["recipient"]) for r in kinds] == [("verify_email", "a@accounts.example")]
    pending = await db.fetchval("SELECT locked FROM daemon.user_lookup('a1')")
    assert pending is True  # no password check accepts it
    # A verified owner's email: the notice only, no account, no link.
    assert await register(db, "alice@example.test", "a2", token()) == "exists"
    assert await db.fetchval("SELECT count(*) FROM mail.outbox WHERE kind = 'account_exists'") == 1
    with pytest.raises(UserExistsError):
        await register(db, "b@accounts.example", "ALICE", token())


async def test_a_failed_registration_queues_nothing(db: asyncpg.Connection) -> None:
    with pytest.raises(UserExistsError):
        await register(db, "c@accounts.example", "bob", token())
    assert await db.fetchval("SELECT count(*) FROM mail.outbox") == 0


async def test_an_email_that_is_another_accounts_user_name_is_refused(
    db: asyncpg.Connection,
) -> None:
    """Sign-in takes a user name or an email (daemon.user_lookup prefers the name): a
    registration whose email is an existing account's user name would make an account that can
    never sign in by its email, so it is refused as daemon.user_add refuses it (review)."""
    await db.execute(
        "SELECT daemon.user_add('dora@accounts.example', $1, 'dora.real@accounts.example', 'D')",
        HASH,
    )
    with pytest.raises(UserExistsError):
        await register(db, "dora@accounts.example", "dora2", token())
    assert await db.fetchval("SELECT count(*) FROM mail.outbox") == 0


async def test_recovery_for_an_unknown_email_does_nothing(db: asyncpg.Connection) -> None:
    made = await store.account_recover(
        db, email="nobody@accounts.example", token_hash=token(), ttl=1800, continue_to=None,
        mail=(uuid4(), "reset.sealed"),
    )  # fmt: skip
    assert made is False
    assert await db.fetchval("SELECT count(*) FROM mail.outbox") == 0
    assert await db.fetchval("SELECT count(*) FROM auth.account_token") == 0


async def test_one_link_used_twice_at_once_has_one_winner(
    db: asyncpg.Connection, other: asyncpg.Connection
) -> None:
    await db.execute("SELECT daemon.user_add('dora', $1, 'dora@accounts.example', 'Dora')", HASH)
    digest = token()
    assert await store.account_recover(
        db, email="dora@accounts.example", token_hash=digest, ttl=1800, continue_to=None,
        mail=(uuid4(), "reset.sealed"),
    )  # fmt: skip
    results = await asyncio.gather(
        store.account_reset(db, digest, HASH),
        store.account_reset(other, digest, HASH),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, store.LinkUsed)]
    losses = [r for r in results if isinstance(r, AccountLinkUnusable)]
    assert len(wins) == 1
    assert len(losses) == 1
    assert isinstance(losses[0], AccountLinkUsed)


async def test_an_invitation_to_a_pending_email_registers_in_its_place(
    db: asyncpg.Connection,
) -> None:
    await register(db, "e@accounts.example", "squatter", token())
    await db.execute("DELETE FROM auth.invitation; DELETE FROM auth.organization")
    await org_store.org_add(db, "acct", "Accounts Ltd", (), "test")
    digest = token()
    await org_store.org_invite(
        db, "acct", "e@accounts.example", role="member", client_id=None, token_hash=digest,
        ttl=3600, actor="test",
    )  # fmt: skip
    view = await org_store.invitation_lookup(db, digest)
    assert view is not None
    assert view.user_id is None  # the pending account does not count as an account
    user_id = await org_store.invitation_register(
        db, digest, username="erin", name="Erin", password_hash=HASH
    )
    rows = await db.fetch(
        "SELECT id, username, pending_verification FROM auth.users "
        "WHERE email = 'e@accounts.example'"
    )
    assert [(r["id"], r["username"], r["pending_verification"]) for r in rows] == [
        (user_id, "erin", False)
    ]


async def test_housekeeping_removes_old_links_and_accounts_never_verified(
    db: asyncpg.Connection,
) -> None:
    await register(db, "f@accounts.example", "never", token())
    await register(db, "g@accounts.example", "fresh", token())
    await db.execute(
        "UPDATE auth.account_token t SET expires_at = now() - interval '3 days' "
        "FROM auth.users u WHERE u.id = t.user_id AND u.username = 'never'; "
        "UPDATE auth.users SET created_at = now() - interval '4 days' WHERE username = 'never'"
    )
    deleted = await housekeep(db, keep=86400, audit_days=0, batch=100)
    assert deleted["account links"] == 1
    assert deleted["pending accounts"] == 1
    names = await db.fetch("SELECT username FROM auth.users WHERE email LIKE '%@accounts.example'")
    assert [r["username"] for r in names] == ["fresh"]
