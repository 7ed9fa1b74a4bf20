"""Back-channel logout in SQL (issue 14 item 1; migration 0012, sql/functions/100_*): every way a
session ends queues, in its own transaction, one outbox row per client that received tokens in
the session and has a backchannel_logout_uri; and the outbox's state machine (claim, lease,
backoff, give-up, skip, release), on the database's clock.

SECURITY-CHECKLIST items 54 (revocation on security events: a new password or a lock ends the
sessions, and now the clients hear of it) and 86/87 (logout is server-side)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.config import load_config
from gateway.store import backchannel, grants, housekeeping, sessions, users
from gateway.store.clients import sync_configured_clients
from gateway.store.users import user_add
from tests.support import light_passwords, write_conf

GRANTS = ["authorization_code", "refresh_token", "password", "implicit"]
CLIENTS: dict[str, dict[str, Any]] = {
    "chat": {
        "client_id": "chat",
        "client_secret": "chat-secret",
        "redirect_uris": ["https://chat.example.test/cb"],
        "grant_types": GRANTS,
        "pkce": "optional",
        "backchannel_logout_uri": "https://chat.example.test/backchannel",
    },
    "crm": {
        "client_id": "crm",
        "client_secret": "crm-secret",
        "redirect_uris": ["https://crm.example.test/cb"],
        "grant_types": GRANTS,
        "pkce": "optional",
        "backchannel_logout_uri": "http://127.0.0.1:9/logout?tenant=1",
        "backchannel_logout_session_required": True,
    },
    "plain": {
        "client_id": "plain",
        "client_secret": "plain-secret",
        "redirect_uris": ["https://plain.example.test/cb"],
        "grant_types": GRANTS,
        "pkce": "optional",
    },
    "svc": {
        "client_id": "svc",
        "client_secret": "svc-secret",
        "grant_types": ["client_credentials"],
        "backchannel_logout_uri": "https://svc.example.test/backchannel",
    },
}


def h(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass
class World:
    conn: asyncpg.Connection
    user_id: uuid.UUID
    username: str


@pytest.fixture
async def world(db: asyncpg.Connection, tmp_path: Path) -> World:
    config = load_config(write_conf(tmp_path / "conf", clients=CLIENTS), environ={})
    await sync_configured_clients(db, config.clients)
    await db.execute("DELETE FROM auth.backchannel_logout")
    name = f"u{uuid.uuid4().hex[:10]}"
    user_id = await user_add(db, name, light_passwords().hash("pw"), None, None)
    return World(db, user_id, name)


async def login(
    world: World, client: str, session_id: uuid.UUID | None = None, refresh: str | None = None
) -> sessions.Login:
    return await sessions.login(
        world.conn,
        user_id=world.user_id,
        client_id=client,
        kind="browser",
        scope=("openid",),
        origin="password",
        refresh_hash=h(refresh) if refresh else None,
        session_ttl=3600,
        refresh_ttl=3600,
        ip="127.0.0.1",
        user_agent="pytest",
        session_id=session_id,
    )


async def a_session_with_three_clients(world: World) -> uuid.UUID:
    """One session in which chat got tokens by the password grant (with a refresh token), crm
    by the code flow, and plain (no URI) by the implicit flow."""
    session = await login(world, "chat", refresh=f"rt-{world.user_id}")
    code = f"code-{uuid.uuid4()}"
    await grants.code_issue(
        world.conn,
        code_hash=h(code),
        client_id="crm",
        user_id=world.user_id,
        session_id=session.session_id,
        redirect_uri="https://crm.example.test/cb",
        scope=("openid",),
        nonce=None,
        code_challenge=None,
        offline=False,
        ttl=60,
    )
    await grants.code_redeem(
        world.conn,
        code_hash=h(code),
        client_id="crm",
        redirect_uri="https://crm.example.test/cb",
        verifier_challenge=None,
        refresh_hash=None,
        refresh_ttl=3600,
    )
    await grants.family_open(
        world.conn,
        session_id=session.session_id,
        client_id="plain",
        user_id=world.user_id,
        scope=("openid",),
        origin="implicit",
    )
    return session.session_id


async def queued(world: World) -> list[tuple[uuid.UUID, uuid.UUID, str, str | None, str]]:
    rows = await world.conn.fetch(
        "SELECT session_id, user_id, client_id, reason, state FROM auth.backchannel_logout"
        " ORDER BY client_id"
    )
    return [(r["session_id"], r["user_id"], r["client_id"], r["reason"], r["state"]) for r in rows]


async def _logout(world: World, session_id: uuid.UUID) -> None:
    assert await sessions.session_revoke(world.conn, session_id, "logout")


async def _operator(world: World, session_id: uuid.UUID) -> None:
    assert await sessions.session_revoke(world.conn, session_id, "ended by an operator")


async def _replay(world: World, session_id: uuid.UUID) -> None:
    old = h(f"rt-{world.user_id}")

    async def rotate(old_hash: bytes, new: str) -> grants.Rotation:
        return await grants.refresh_token(
            world.conn,
            old_hash=old_hash,
            client_id="chat",
            new_hash=h(new),
            new_sealed="sealed",
            scope=None,
            grace=0,
            refresh_ttl=3600,
        )

    assert (await rotate(old, f"rt1-{world.user_id}")).status == "rotated"
    assert (await rotate(old, f"rt2-{world.user_id}")).status == "replay"


async def _password(world: World, session_id: uuid.UUID) -> None:
    assert await users.user_update(world.conn, world.username, light_passwords().hash("new"), None)


async def _lock(world: World, session_id: uuid.UUID) -> None:
    assert await users.user_update(world.conn, world.username, None, True) == 1


async def _plain_update(world: World, session_id: uuid.UUID) -> None:
    # Not a daemon function at all: an operator's UPDATE in psql. The trigger still fires.
    await world.conn.execute(
        "UPDATE auth.session SET revoked_at = now(), revoked_reason = 'psql' WHERE id = $1",
        session_id,
    )


ENDINGS: dict[str, tuple[Callable[[World, uuid.UUID], Awaitable[None]], str]] = {
    "logout": (_logout, "logout"),
    "operator": (_operator, "ended by an operator"),
    "refresh replay": (_replay, "refresh token replay"),
    "user passwd": (_password, "password changed"),
    "user lock": (_lock, "account locked"),
    "plain UPDATE": (_plain_update, "psql"),
}


@pytest.mark.parametrize("way", list(ENDINGS))
async def test_every_way_a_session_ends_queues_one_logout_per_client_with_a_uri(
    world: World, way: str
) -> None:
    end, reason = ENDINGS[way]
    session_id = await a_session_with_three_clients(world)
    assert await queued(world) == []
    await end(world, session_id)
    uid = world.user_id
    assert await queued(world) == [
        (session_id, uid, "chat", reason, "queued"),
        (session_id, uid, "crm", reason, "queued"),
    ]
    # Ending it again (already over) queues nothing more.
    await sessions.session_revoke(world.conn, session_id, "logout")
    assert len(await queued(world)) == 2


async def test_the_logout_is_queued_in_the_transaction_that_ends_the_session(
    world: World, database_url: str
) -> None:
    """Rolled back with it, and the senders are woken (NOTIFY) only at commit."""
    session_id = await a_session_with_three_clients(world)
    listener = await asyncpg.connect(database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(
            "gateway_backchannel_logout", lambda *args: heard.put_nowait(str(args[2]))
        )
        async with world.conn.transaction():
            await sessions.session_revoke(world.conn, session_id, "logout")
            assert len(await queued(world)) == 2
            await asyncio.sleep(0.2)
            assert heard.empty()  # not before the commit
        assert (await asyncio.wait_for(heard.get(), 5)) == "gateway_backchannel_logout"
        # Rolled back: the session lives on, and no logout is queued.
        other = await login(world, "chat")
        tx = world.conn.transaction()
        await tx.start()
        await sessions.session_revoke(world.conn, other.session_id, "logout")
        await tx.rollback()
        rows = await queued(world)
        assert [r[0] for r in rows] == [session_id, session_id]
        assert await world.conn.fetchval(
            "SELECT revoked_at IS NULL FROM auth.session WHERE id = $1", other.session_id
        )
        await asyncio.sleep(0.2)
        assert heard.empty()
    finally:
        await listener.close()


async def test_no_logout_without_tokens_a_uri_or_a_user(world: World) -> None:
    # A session in which only plain (no URI) received tokens.
    only_plain = await login(world, "plain")
    await sessions.session_revoke(world.conn, only_plain.session_id, "logout")
    # A service session (client_credentials): no user to log out.
    service = await sessions.login(
        world.conn,
        user_id=None,
        client_id="svc",
        kind="service",
        scope=(),
        origin="client_credentials",
        refresh_hash=None,
        session_ttl=3600,
        refresh_ttl=3600,
        ip=None,
        user_agent=None,
    )
    await sessions.session_revoke(world.conn, service.session_id, "logout")
    # RFC 7009 revocation of one grant does not end the session: nothing to tell.
    chat = await login(world, "chat")
    assert await grants.token_revoke(world.conn, chat.family_id, "chat", "revoked") == "revoked"
    assert await queued(world) == []


async def clock(world: World, seconds: int) -> None:
    """Move the database's clock (daemon.now()) as the application's clock does."""
    await world.conn.execute(
        "SELECT set_config('gateway.clock_offset', $1, false)", f"{seconds} seconds"
    )


async def test_the_outbox_retries_with_a_backoff_then_gives_up(world: World) -> None:
    session_id = await a_session_with_three_clients(world)
    await sessions.session_revoke(world.conn, session_id, "logout")
    db = world.conn
    try:
        first = await backchannel.backchannel_claim(db, limit=10, lease=60)
        assert sorted(c.client_id for c in first) == ["chat", "crm"]
        assert {c.attempts for c in first} == {1}
        assert await backchannel.backchannel_claim(db, limit=10, lease=60) == []  # leased
        chat, crm = sorted(first, key=lambda c: c.client_id)

        assert await backchannel.backchannel_sent(db, chat.id, chat.claim)
        assert not await backchannel.backchannel_sent(db, chat.id, chat.claim)  # once
        state = await backchannel.backchannel_failed(db, crm.id, crm.claim, "HTTP 503", max_age=600)
        assert state is not None
        assert state[0] == "queued"
        assert await backchannel.backchannel_claim(db, limit=10, lease=60) == []  # not due

        await clock(world, 11)  # past the first backoff (10 s)
        (again,) = await backchannel.backchannel_claim(db, limit=10, lease=60)
        assert (again.id, again.attempts) == (crm.id, 2)
        # The old claim changes nothing any more.
        assert await backchannel.backchannel_failed(db, crm.id, crm.claim, "x", max_age=600) is None
        state = await backchannel.backchannel_failed(
            db, again.id, again.claim, "HTTP 400", max_age=600
        )
        assert state is not None
        assert state[0] == "queued"
        await clock(world, 11 + 15)
        assert await backchannel.backchannel_claim(db, limit=10, lease=60) == []  # 20 s now
        await clock(world, 11 + 21)
        (third,) = await backchannel.backchannel_claim(db, limit=10, lease=60)
        # A sender that died: its lease runs out and another takes the row over.
        await clock(world, 11 + 21 + 61)
        (taken,) = await backchannel.backchannel_claim(db, limit=10, lease=60)
        assert (taken.id, taken.attempts) == (third.id, 4)
        assert not await backchannel.backchannel_release(db, third.id, third.claim)
        assert await backchannel.backchannel_release(db, taken.id, taken.claim)

        await clock(world, 601)  # past max_age since the session ended
        (last,) = await backchannel.backchannel_claim(db, limit=10, lease=60)
        state = await backchannel.backchannel_failed(
            db, last.id, last.claim, "ClientConnectorError", max_age=600
        )
        assert state == ("failed", None)
        await clock(world, 100_000)
        assert await backchannel.backchannel_claim(db, limit=10, lease=60) == []  # not retried
        row = await db.fetchrow("SELECT * FROM auth.backchannel_logout WHERE id = $1", crm.id)
        assert row is not None
        assert (row["state"], row["attempts"], row["last_error"]) == (
            "failed",
            5,
            "ClientConnectorError",
        )
        outbox = await backchannel.backchannel_outbox(db, include_done=False, limit=10)
        assert [(e.client_id, e.state) for e in outbox] == [("crm", "failed")]
        everything = await backchannel.backchannel_outbox(db, include_done=True, limit=10)
        assert sorted((e.client_id, e.state) for e in everything) == [
            ("chat", "sent"),
            ("crm", "failed"),
        ]
    finally:
        await clock(world, 0)


async def test_a_row_is_skipped_when_the_client_has_no_uri_at_send_time(world: World) -> None:
    session_id = await a_session_with_three_clients(world)
    await sessions.session_revoke(world.conn, session_id, "logout")
    claimed = await backchannel.backchannel_claim(world.conn, limit=1, lease=60)
    (one,) = claimed
    assert await backchannel.backchannel_skipped(world.conn, one.id, one.claim, "no uri")
    state = await world.conn.fetchval(
        "SELECT state FROM auth.backchannel_logout WHERE id = $1", one.id
    )
    assert state == "skipped"


async def test_housekeeping_deletes_delivered_and_skipped_logouts_after_the_keep_only(
    world: World,
) -> None:
    """Failed ones stay for an operator; recent ones stay too."""
    ids = {}
    for name in ("old sent", "new sent", "old skipped", "old failed"):
        session = await login(world, "chat")
        await sessions.session_revoke(world.conn, session.session_id, "logout")
        (claimed,) = await backchannel.backchannel_claim(world.conn, limit=1, lease=60)
        ids[name] = claimed.id
        if "sent" in name:
            assert await backchannel.backchannel_sent(world.conn, claimed.id, claimed.claim)
        elif "skipped" in name:
            assert await backchannel.backchannel_skipped(
                world.conn, claimed.id, claimed.claim, "no uri"
            )
        else:
            await backchannel.backchannel_failed(
                world.conn, claimed.id, claimed.claim, "HTTP 500", max_age=0
            )
    await world.conn.execute(
        "UPDATE auth.backchannel_logout SET sent_at = sent_at - interval '3 days',"
        " failed_at = failed_at - interval '3 days' WHERE id = ANY($1)",
        [ids["old sent"], ids["old skipped"], ids["old failed"]],
    )
    deleted = await housekeeping.housekeep(world.conn, keep=86400, audit_days=0, batch=100)
    assert deleted["back-channel logouts"] == 2
    left = {r["id"] for r in await world.conn.fetch("SELECT id FROM auth.backchannel_logout")}
    assert left == {ids["new sent"], ids["old failed"]}
