"""The audit log's SQL (sql/functions/010_audit.sql and the functions that audit) on a real
database: client changes, the audit context that stays inside its transaction, the listing
behind ``gateway audit``, and retention by the application's clock (daemon.housekeep)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from gateway.errors import InvalidInputError
from gateway.store import audit as audit_store
from gateway.store.clients import client_sync
from gateway.store.housekeeping import housekeep

SECRET_HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


@pytest.fixture(autouse=True)
async def empty_audit(db: asyncpg.Connection) -> None:
    await db.execute("DELETE FROM audit.event")


async def kinds(db: asyncpg.Connection, prefix: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = await db.fetch(
        "SELECT kind, client_id, detail FROM audit.event WHERE kind LIKE $1 ORDER BY id",
        prefix + "%",
    )
    return [(r["kind"], r["client_id"], json.loads(r["detail"])) for r in rows]


def client(client_id: str, **extra: Any) -> dict[str, Any]:
    return {"client_id": client_id, "app": client_id, "grant_types": ["authorization_code"],
            "redirect_uris": [f"https://{client_id}.example/cb"], **extra}  # fmt: skip


async def test_client_sync_audits_each_client_added_changed_and_disabled(
    db: asyncpg.Connection,
) -> None:
    await db.execute("UPDATE oauth2.client SET enabled = false")
    await client_sync(db, [client("audit-a"), client("audit-b", secret_hash=SECRET_HASH)])
    await client_sync(db, [client("audit-a"), client("audit-b", secret_hash=SECRET_HASH)])
    await client_sync(db, [client("audit-a", redirect_uris=["https://a.example/other"],
                                  secret_hash=SECRET_HASH)])  # fmt: skip
    assert await kinds(db, "client.") == [
        ("client.add", "audit-a", {"app": "audit-a", "provider": "default"}),
        ("client.add", "audit-b", {"app": "audit-b", "provider": "default"}),
        ("client.update", "audit-a", {"app": "audit-a", "changed": ["secret", "redirect_uris"]}),
        ("client.disable", "audit-b", {"app": "audit-b"}),
    ]
    text = await db.fetchval("SELECT string_agg(detail::text, ' ') FROM audit.event")
    assert "argon2" not in text


async def test_the_audit_context_stays_in_its_transaction(db: asyncpg.Connection) -> None:
    async with db.transaction():
        await db.execute("SELECT daemon.audit_context('cli', '192.0.2.7', 'curl/8.1')")
        await db.execute("SELECT daemon.audit('test.inside', NULL, NULL, NULL, NULL)")
    await db.execute("SELECT daemon.audit('test.after', NULL, NULL, NULL, NULL)")
    rows = await db.fetch(
        "SELECT kind, actor, host(ip) AS ip, user_agent FROM audit.event ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [
        ("test.inside", "cli", "192.0.2.7", "curl/8.1"),
        ("test.after", None, None, None),
    ]


async def test_audit_list_filters_by_user_kind_and_time_newest_last(
    db: asyncpg.Connection, users: dict[str, str]
) -> None:
    for kind in ("a.one", "a.two", "a.one"):
        await db.execute("SELECT daemon.audit($1, $2, NULL, NULL, NULL)", kind, users["alice"])
    await db.execute("SELECT daemon.audit('a.one', $1, NULL, NULL, NULL)", users["bob"])
    alice = UUID(users["alice"])
    found = await audit_store.audit_list(db, user_id=alice, kinds=("a.one",), since=None,
                                         limit=10)  # fmt: skip
    assert [(e.kind, e.username) for e in found] == [("a.one", "alice")] * 2
    assert found[0].id < found[1].id
    newest = await audit_store.audit_list(db, user_id=None, kinds=None, since=None, limit=2)
    assert [(e.kind, e.username) for e in newest] == [("a.one", "alice"), ("a.one", "bob")]
    later = await db.fetchval("SELECT daemon.now() + interval '1 minute'")
    assert await audit_store.audit_list(db, user_id=None, kinds=None, since=later, limit=5) == []
    with pytest.raises(InvalidInputError):
        await audit_store.audit_list(db, user_id=None, kinds=None, since=None, limit=0)


async def test_retention_deletes_events_older_than_the_setting_by_the_application_clock(
    db: asyncpg.Connection,
) -> None:
    await db.execute("SELECT daemon.audit('old.enough', NULL, NULL, NULL, NULL)")
    # 366 days later by the application's clock (as a moved app clock sets): older than 365.
    await db.execute("SELECT set_config('gateway.clock_offset', '366 days', false)")
    try:
        await db.execute("SELECT daemon.audit('recent', NULL, NULL, NULL, NULL)")
        deleted = await housekeep(db, keep=86400, audit_days=365, batch=100)
        assert deleted["audit events"] == 1
        left = await db.fetch("SELECT kind FROM audit.event")
        assert [r["kind"] for r in left] == ["recent"]
        # 0 keeps every event.
        await db.execute("SELECT set_config('gateway.clock_offset', '3000 days', false)")
        assert "audit events" not in await housekeep(db, keep=86400, audit_days=0, batch=100)
        assert await db.fetchval("SELECT count(*) FROM audit.event") == 1
    finally:
        await db.execute("SELECT set_config('gateway.clock_offset', '', false)")


async def test_the_siem_cursor_never_passes_an_event_of_a_transaction_still_running(
    db: asyncpg.Connection, database_url: str
) -> None:
    """Review of issue 14: a transaction that wrote an event (a lower id) and commits after a
    later one must not be skipped, however long it takes. daemon.audit_emit waits for every
    older transaction to end, then writes both, in the order their transactions began."""
    await db.execute("DELETE FROM audit.log_cursor")
    assert await db.fetch("SELECT * FROM daemon.audit_emit(100)") == []  # places the cursor
    slow = await asyncpg.connect(database_url)
    try:
        transaction = slow.transaction()
        await transaction.start()
        await slow.execute("SELECT daemon.audit('test.slow', NULL, NULL, NULL, NULL)")
        await db.execute("SELECT daemon.audit('test.fast', NULL, NULL, NULL, NULL)")
        # A minute later by the application's clock the fast event is long committed, but the
        # slow transaction is still running: nothing yet.
        await db.execute("SELECT set_config('gateway.clock_offset', '60 seconds', false)")
        assert await db.fetch("SELECT * FROM daemon.audit_emit(100)") == []
        await transaction.commit()
    finally:
        await slow.close()
    # Every older transaction in the cluster must have ended (another test's, on a busy
    # server): a bounded wait, then both, in order, once.
    emitted: list[str] = []
    deadline = asyncio.get_running_loop().time() + 10
    while len(emitted) < 2 and asyncio.get_running_loop().time() < deadline:
        emitted += [r["kind"] for r in await db.fetch("SELECT * FROM daemon.audit_emit(100)")]
        await asyncio.sleep(0.05)
    assert emitted == ["test.slow", "test.fast"]
    assert await db.fetch("SELECT * FROM daemon.audit_emit(100)") == []  # each once
