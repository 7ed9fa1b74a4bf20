"""The daemon functions of the authorization server, called directly on a real database: the
state machines of codes and refresh tokens, revocation and its notices, throttling, signing keys.
(Issue 3 item 8: "tests of the SQL functions themselves".)"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.config import load_config
from gateway.oauth.errors import InvalidGrantError, InvalidScopeError
from gateway.passwords import Passwords
from gateway.store import (
    grants,
    housekeeping,
    identities,
    keys,
    revocations,
    sessions,
    throttle,
    users,
)
from gateway.store.clients import sync_configured_clients
from gateway.store.users import user_add
from tests.support import light_passwords, write_conf

C = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def h(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass
class World:
    conn: asyncpg.Connection
    user_id: uuid.UUID


@pytest.fixture
async def world(db: asyncpg.Connection, tmp_path: Path) -> World:
    config = load_config(write_conf(tmp_path / "conf"), environ={})
    await sync_configured_clients(db, config.clients)
    name = f"u{uuid.uuid4().hex[:10]}"
    user_id = await user_add(db, name, light_passwords().hash("pw"), None, None)
    return World(db, user_id)


async def login(world: World, client: str = "web", refresh: str | None = "rt-0") -> sessions.Login:
    return await sessions.login(
        world.conn,
        user_id=world.user_id,
        client_id=client,
        kind="browser",
        scope=("openid", "api"),
        origin="test",
        refresh_hash=h(refresh + str(world.user_id)) if refresh else None,
        session_ttl=3600,
        refresh_ttl=3600,
        ip="127.0.0.1",
        user_agent="pytest",
    )


async def issue_code(world: World, session_id: uuid.UUID, code: str, **overrides: Any) -> None:
    params: dict[str, Any] = {
        "code_hash": h(code),
        "client_id": "web",
        "user_id": world.user_id,
        "session_id": session_id,
        "redirect_uri": "http://localhost:8080/oauth2/callback",
        "scope": ("openid",),
        "nonce": "n",
        "code_challenge": C,
        "offline": True,
        "ttl": 60,
    }
    params.update(overrides)
    await grants.code_issue(world.conn, **params)


async def redeem(world: World, code: str, **overrides: Any) -> grants.Redeemed:
    params: dict[str, Any] = {
        "code_hash": h(code),
        "client_id": "web",
        "redirect_uri": "http://localhost:8080/oauth2/callback",
        "verifier_challenge": C,
        "refresh_hash": h("first-" + code),
        "refresh_ttl": 3600,
    }
    params.update(overrides)
    return await grants.code_redeem(world.conn, **params)


async def test_code_is_bound_and_single_use(world: World) -> None:
    session = await login(world, refresh=None)
    await issue_code(world, session.session_id, "code-1")
    for wrong in (
        {"client_id": "spa"},
        {"redirect_uri": "http://localhost:8080/oauth2/callback/"},
        {"verifier_challenge": None},
        {"verifier_challenge": "x" * 43},
    ):
        with pytest.raises(InvalidGrantError):
            await redeem(world, "code-1", **wrong)
    ok = await redeem(world, "code-1")
    assert ok.status == "ok"
    assert ok.offline
    assert ok.username is not None
    assert ok.family_id is not None
    family = await world.conn.fetchrow(
        "SELECT * FROM auth.token_family WHERE id = $1", ok.family_id
    )
    assert family is not None
    assert family["code_hash"] == h("code-1")
    assert (
        await world.conn.fetchval(
            "SELECT count(*) FROM auth.refresh_token WHERE family_id = $1", ok.family_id
        )
        == 1
    )

    replay = await redeem(world, "code-1")
    assert replay.status == "replay"
    status = await grants.token_status(world.conn, ok.family_id)
    assert status is not None
    assert not status.active


async def test_a_verifier_without_a_challenge_is_a_downgrade(world: World) -> None:
    session = await login(world, refresh=None)
    await issue_code(world, session.session_id, "code-2", code_challenge=None)
    with pytest.raises(InvalidGrantError):
        await redeem(world, "code-2")
    assert (await redeem(world, "code-2", verifier_challenge=None)).status == "ok"


async def test_expired_code_is_refused(world: World) -> None:
    session = await login(world, refresh=None)
    await issue_code(world, session.session_id, "code-3")
    await world.conn.execute(
        "UPDATE auth.code SET expires_at = now() - interval '1 second' WHERE code_hash = $1",
        h("code-3"),
    )
    with pytest.raises(InvalidGrantError):
        await redeem(world, "code-3")


async def rotate(
    world: World,
    old: str,
    new: str,
    *,
    grace: int = 30,
    client: str = "web",
    scope: tuple[str, ...] | None = None,
    recover: bool = True,
) -> grants.Rotation:
    return await grants.refresh_token(
        world.conn,
        old_hash=h(old + str(world.user_id)),
        client_id=client,
        new_hash=h(new + str(world.user_id)),
        new_sealed=f"sealed:{new}",
        scope=scope,
        grace=grace,
        refresh_ttl=3600,
        recover=recover,
    )


async def test_refresh_rotation_grace_and_replay(world: World) -> None:
    session = await login(world)
    first = await rotate(world, "rt-0", "rt-1")
    assert first.status == "rotated"
    assert first.generation == 1
    # Within the grace the superseded token gets the same successor, sealed.
    again = await rotate(world, "rt-0", "rt-other")
    assert again.status == "grace"
    assert again.successor_sealed == "sealed:rt-1"
    assert again.family_id == first.family_id
    # Another client: refused, and nothing changes (a misuse is not a replay).
    with pytest.raises(InvalidGrantError):
        await rotate(world, "rt-1", "rt-2", client="spa")
    # A wider scope: refused.
    with pytest.raises(InvalidScopeError):
        await rotate(world, "rt-1", "rt-2", scope=("openid", "api", "admin"))
    live = await world.conn.fetch(
        "SELECT generation FROM auth.refresh_token WHERE family_id = $1 AND superseded_at IS NULL",
        first.family_id,
    )
    assert [r["generation"] for r in live] == [1]
    # Its successor used, then the superseded token after the grace: a replay; the session ends.
    assert (await rotate(world, "rt-1", "rt-2")).status == "rotated"
    replay = await rotate(world, "rt-0", "rt-3", grace=0)
    assert replay.status == "replay"
    revoked = await world.conn.fetchval(
        "SELECT revoked_reason FROM auth.session WHERE id = $1", session.session_id
    )
    assert revoked == "refresh token replay"
    with pytest.raises(InvalidGrantError):
        await rotate(world, "rt-2", "rt-4")


async def session_end(world: World, session_id: uuid.UUID) -> str | None:
    reason: str | None = await world.conn.fetchval(
        "SELECT revoked_reason FROM auth.session WHERE id = $1", session_id
    )
    return reason


async def test_a_lost_response_is_recovered_not_a_replay(world: World) -> None:
    """Issue 9 item 5: rt-0 comes back after the grace, and its successor rt-1 was never used
    (the response carrying it was lost): a new successor, the session lives; rt-1 is abandoned,
    and presenting it later (the response was not lost after all: two holders) is a replay."""
    session = await login(world)
    assert (await rotate(world, "rt-0", "rt-1")).status == "rotated"
    recovered = await rotate(world, "rt-0", "rt-2", grace=0)
    assert recovered.status == "recovered"
    assert recovered.generation == 2
    assert await session_end(world, session.session_id) is None
    abandoned = await world.conn.fetchval(
        "SELECT abandoned_at IS NOT NULL FROM auth.refresh_token WHERE generation = 1 "
        "AND family_id = $1",
        recovered.family_id,
    )
    assert abandoned
    events = await world.conn.fetchval(
        "SELECT count(*) FROM audit.event WHERE kind = 'refresh.recovered' AND session_id = $1",
        session.session_id,
    )
    assert events == 1
    assert (await rotate(world, "rt-2", "rt-3")).status == "rotated"  # the new one works
    replay = await rotate(world, "rt-1", "rt-4", grace=0)
    assert replay.status == "replay"
    assert await session_end(world, session.session_id) == "refresh token replay"


async def test_two_holders_end_the_session_in_either_order(world: World) -> None:
    """Issue 9 item 5: a user and a thief both hold rt-0. Whoever refreshes first gets rt-1;
    the other, after the grace, is recovered (rt-1 unused) and gets rt-2. The first then uses
    rt-1, now abandoned: the session ends. Two holders never keep one family alive. (Who is
    first changes nothing the database sees: the rule is the same either way.)"""
    session = await login(world)
    assert (await rotate(world, "rt-0", "rt-1")).status == "rotated"  # `first` holds rt-1
    assert (await rotate(world, "rt-0", "rt-2", grace=0)).status == "recovered"  # the other
    assert (await rotate(world, "rt-1", "rt-3", grace=0)).status == "replay"
    assert await session_end(world, session.session_id) == "refresh token replay"
    with pytest.raises(InvalidGrantError):
        await rotate(world, "rt-2", "rt-5")


async def test_a_delivered_successor_makes_the_old_token_a_replay(world: World) -> None:
    """Once a browser has shown the successor's access token (``family_delivered``), the
    response reached it: rt-0 coming back after the grace is a thief's, not a lost response."""
    session = await login(world)
    rotated = await rotate(world, "rt-0", "rt-1")
    assert rotated.family_id is not None
    await grants.family_delivered(world.conn, rotated.family_id, 1)
    assert (await rotate(world, "rt-0", "rt-2", grace=0)).status == "replay"
    assert await session_end(world, session.session_id) == "refresh token replay"


async def test_without_recovery_a_superseded_token_is_always_a_replay(world: World) -> None:
    """At the token endpoint (no ``recover``: the client holds its refresh token itself) the old
    token after the grace is a replay even with its successor unused (checklist items 48, 49)."""
    session = await login(world)
    await rotate(world, "rt-0", "rt-1")
    assert (await rotate(world, "rt-0", "rt-2", grace=0, recover=False)).status == "replay"
    assert await session_end(world, session.session_id) == "refresh token replay"


async def test_an_older_token_is_a_replay_even_with_the_newest_unused(world: World) -> None:
    """Only the direct predecessor of the current token can be a lost response: a token two
    generations back proves its successor was used."""
    session = await login(world)
    await rotate(world, "rt-0", "rt-1")
    await rotate(world, "rt-1", "rt-2")
    assert (await rotate(world, "rt-0", "rt-9", grace=0)).status == "replay"
    assert await session_end(world, session.session_id) == "refresh token replay"


async def test_concurrent_rotations_converge(
    db: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    user_id = await user_add(db, f"c{uuid.uuid4().hex[:8]}", Passwords().hash("p"), None, None)
    world = World(db, user_id)
    config = load_config(write_conf(tmp_path / "conf"), environ={})
    await sync_configured_clients(db, config.clients)
    await login(world)
    conns = [await asyncpg.connect(database_url) for _ in range(10)]
    try:
        results = await asyncio.gather(
            *(rotate(World(c, world.user_id), "rt-0", f"rt-new-{i}") for i, c in enumerate(conns))
        )
    finally:
        for c in conns:
            await c.close()
    statuses = sorted(r.status for r in results)
    assert statuses == ["grace"] * 9 + ["rotated"]
    winner = next(r for r in results if r.status == "rotated")
    sealed = {r.successor_sealed for r in results if r.status == "grace"}
    assert len(sealed) == 1
    assert (
        await db.fetchval(
            "SELECT count(*) FROM auth.refresh_token WHERE family_id = $1", winner.family_id
        )
        == 2
    )


async def test_revocations_are_announced(world: World, database_url: str) -> None:
    listener = await asyncpg.connect(database_url)
    heard: list[tuple[str, str]] = []
    await revocations.listen(listener, lambda kind, ident: heard.append((kind, ident)))
    try:
        one = await login(world)
        two = await login(world, refresh="rt-two")
        assert await grants.token_revoke(world.conn, two.family_id, "spa", "x") == "wrong_client"
        assert await grants.token_revoke(world.conn, uuid.uuid4(), "web", "x") == "unknown"
        assert await grants.token_revoke(world.conn, two.family_id, "web", "x") == "revoked"
        assert await sessions.session_revoke(world.conn, one.session_id, "logout")
        assert not await sessions.session_revoke(world.conn, one.session_id, "logout")
        for _ in range(50):
            if len(heard) >= 2:
                break
            await asyncio.sleep(0.05)
        assert ("f", str(two.family_id)) in heard
        assert ("s", str(one.session_id)) in heard
        recent = await revocations.revocations_since(world.conn, 60)
        assert ("s", one.session_id) in recent
        assert ("f", two.family_id) in recent
    finally:
        await listener.close()


async def test_throttle_counts_attempts_first_and_doubles(db: asyncpg.Connection) -> None:
    key = (f"acct:{uuid.uuid4().hex}",)
    assert [await throttle.throttle_attempt(db, key, (3,), 2) for _ in range(3)] == [0, 0, 0]
    # The third attempt reached the threshold: the fourth is refused, and not counted.
    refused = await throttle.throttle_attempt(db, key, (3,), 2)
    assert 1 <= refused <= 2
    assert await db.fetchval("SELECT failures FROM auth.throttle WHERE key = $1", key[0]) == 3
    await db.execute("UPDATE auth.throttle SET locked_until = now() WHERE key = $1", key[0])
    assert await throttle.throttle_attempt(db, key, (3,), 2) == 0  # counted: 4, locked 4 s
    assert 3 <= await throttle.throttle_attempt(db, key, (3,), 2) <= 4
    await throttle.throttle_success(db, key, (), ())
    assert await throttle.throttle_attempt(db, key, (3,), 2) == 0


async def test_parallel_attempts_cannot_outrun_the_count(database_url: str) -> None:
    """Forty parallel guesses: only the threshold's worth are let through to the check."""
    key = (f"acct:{uuid.uuid4().hex}",)
    pool = await asyncpg.create_pool(database_url, min_size=8, max_size=8)
    try:
        waits = await asyncio.gather(
            *(throttle.throttle_attempt(pool, key, (5,), 60) for _ in range(40))
        )
    finally:
        await pool.close()
    assert sum(1 for w in waits if w == 0) == 5


async def test_a_success_refunds_the_address(db: asyncpg.Connection) -> None:
    account, address = f"acct:{uuid.uuid4().hex}", f"ip:{uuid.uuid4().hex}"
    for _ in range(2):
        await throttle.throttle_attempt(db, (account, address), (5, 2), 60)
    assert await throttle.throttle_attempt(db, (address,), (2,), 60) > 0
    await throttle.throttle_success(db, (account,), (address,), (2,))
    assert await db.fetchval("SELECT count(*) FROM auth.throttle WHERE key = $1", account) == 0
    assert await throttle.throttle_attempt(db, (address,), (2,), 60) == 0


async def test_signing_keys_are_added_once_and_rotated_ahead(db: asyncpg.Connection) -> None:
    await db.execute("DELETE FROM oauth2.signing_key")

    async def ensure(kid: str, force: bool = False) -> list[keys.StoredKey]:
        return await keys.signing_key_ensure(
            db,
            kid=kid,
            alg="RS256",
            public_jwk={"kty": "RSA", "kid": kid},
            private_sealed="sealed",
            rotate_after=86400,
            publish_ahead=3600,
            keep=86400,
            force=force,
        )

    first = await ensure("k1")
    assert [k.kid for k in first] == ["k1"]
    assert [k.kid for k in await ensure("k2")] == ["k1"]
    rotated = await ensure("k3", force=True)
    assert [k.kid for k in rotated] == ["k1", "k3"]
    new, old = rotated[1], rotated[0]
    assert new.activated_at > old.activated_at
    assert old.retired_at == new.activated_at


# --- housekeeping -----------------------------------------------------------------------------


async def test_housekeep_deletes_only_what_is_long_over(world: World) -> None:
    """``daemon.housekeep``: sessions, families, refresh tokens, codes, assertion ids and throttle
    counters over for longer than ``p_keep``, and audit events past retention, go; live ones and
    ones over only recently stay."""
    db = world.conn
    old = await login(world, refresh="old")
    live = await login(world, refresh="live")
    recent = await login(world, refresh="recent")
    await issue_code(world, live.session_id, "old-code")
    await issue_code(world, live.session_id, "fresh-code")
    await db.execute(
        "UPDATE auth.session SET expires_at = now() - interval '2 days' WHERE id = $1",
        old.session_id,
    )
    await db.execute(
        "UPDATE auth.session SET revoked_at = now() - interval '1 hour' WHERE id = $1",
        recent.session_id,
    )
    await db.execute(
        "UPDATE auth.code SET expires_at = now() - interval '2 days' WHERE code_hash = $1",
        h("old-code"),
    )
    await db.execute(
        "INSERT INTO auth.assertion (issuer, jti, expires_at) VALUES "
        "('https://idp.test', 'old-jti', now() - interval '2 days'), "
        "('https://idp.test', 'live-jti', now() + interval '5 minutes')"
    )
    await db.execute(
        "INSERT INTO auth.throttle (key, failures, last_failure_at, locked_until) VALUES "
        "('acct:hk-old', 3, now() - interval '2 days', NULL), "
        "('acct:hk-locked', 9, now() - interval '2 days', now() + interval '1 hour'), "
        "('acct:hk-live', 3, now(), NULL)"
    )
    await db.execute(
        "INSERT INTO audit.event (kind, at, user_id, detail) VALUES "
        "('hk.old', now() - interval '40 days', $1, '{}'), ('hk.new', now(), $1, '{}')",
        world.user_id,
    )
    # Sessions at an external provider: expired long ago, ended long ago, ended just now, live.
    await db.execute(
        "INSERT INTO auth.external_session (id, provider, subject, expires_at, ended_at) VALUES "
        "('00000000-0000-0000-0000-00000000e001', 'op', 'a', now() - interval '2 days', NULL), "
        "('00000000-0000-0000-0000-00000000e002', 'op', 'b', now() + interval '9 days', "
        " now() - interval '2 days'), "
        "('00000000-0000-0000-0000-00000000e003', 'op', 'c', now() + interval '9 days', now()), "
        "('00000000-0000-0000-0000-00000000e004', 'op', 'd', now() + interval '9 days', NULL)"
    )

    deleted = await housekeeping.housekeep(db, keep=86400, audit_days=30, batch=10_000)

    assert set(deleted) == {
        "sessions", "token families", "refresh tokens", "codes", "assertions",
        "external refreshes", "external sessions", "throttle counters", "sent mails",
        "back-channel logouts", "account links", "pending accounts", "audit events",
    }  # fmt: skip
    external_left = {
        r["subject"] for r in await db.fetch("SELECT subject FROM auth.external_session")
    }
    assert external_left == {"c", "d"}
    assert deleted["sessions"] >= 1
    assert deleted["codes"] >= 1
    sessions_left = {
        r["id"]
        for r in await db.fetch("SELECT id FROM auth.session WHERE user_id = $1", world.user_id)
    }
    assert sessions_left == {live.session_id, recent.session_id}
    assert (
        await db.fetchval(
            "SELECT count(*) FROM auth.token_family WHERE session_id = $1", old.session_id
        )
        == 0
    )
    codes = {r["code_hash"] for r in await db.fetch("SELECT code_hash FROM auth.code")}
    assert h("fresh-code") in codes
    assert h("old-code") not in codes
    jtis = {r["jti"] for r in await db.fetch("SELECT jti FROM auth.assertion")}
    assert "live-jti" in jtis
    assert "old-jti" not in jtis
    keys_left = {
        r["key"] for r in await db.fetch("SELECT key FROM auth.throttle WHERE key LIKE 'acct:hk-%'")
    }
    assert keys_left == {"acct:hk-locked", "acct:hk-live"}
    kinds = {
        r["kind"] for r in await db.fetch("SELECT kind FROM audit.event WHERE kind LIKE 'hk.%'")
    }
    assert kinds == {"hk.new"}
    # The live session still refreshes.
    rotated = await grants.refresh_token(
        db, old_hash=h("live" + str(world.user_id)), client_id="web", new_hash=h("live-2"),
        new_sealed="sealed", scope=None, grace=30, refresh_ttl=3600,
    )  # fmt: skip
    assert rotated.status == "rotated"


async def test_housekeep_is_bounded_and_single(world: World, database_url: str) -> None:
    """At most ``p_batch`` rows of each kind per call, and nothing at all while another
    housekeeper holds the lock; retention 0 keeps audit events."""
    db = world.conn
    for i in range(3):
        await db.execute(
            "INSERT INTO auth.assertion (issuer, jti, expires_at) "
            "VALUES ('https://idp.test', $1, now() - interval '2 days')",
            f"batch-{i}",
        )
    other = await asyncpg.connect(database_url)
    try:
        async with other.transaction():
            await other.execute("SELECT pg_advisory_xact_lock(hashtext('gateway.housekeep'))")
            assert await housekeeping.housekeep(db, keep=86400, audit_days=0, batch=1) == {}
    finally:
        await other.close()
    first = await housekeeping.housekeep(db, keep=86400, audit_days=0, batch=1)
    assert first["assertions"] == 1
    assert "audit events" not in first
    left = await db.fetchval("SELECT count(*) FROM auth.assertion WHERE jti LIKE 'batch-%'")
    assert left == 2


async def test_housekeep_keeps_superseded_tokens_for_replay_detection(world: World) -> None:
    """A superseded refresh token past its own expiry stays while its family lives: presented
    again it is still a replay that ends the session, not an unknown token."""
    db = world.conn
    first = await login(world, refresh="r0")
    old_hash = h("r0" + str(world.user_id))
    rotated = await grants.refresh_token(
        db, old_hash=old_hash, client_id="web", new_hash=h("r1-" + str(world.user_id)),
        new_sealed="sealed", scope=None, grace=0, refresh_ttl=3600,
    )  # fmt: skip
    assert rotated.status == "rotated"
    await db.execute(
        "UPDATE auth.refresh_token SET expires_at = now() - interval '2 days' "
        "WHERE token_hash = $1",
        old_hash,
    )
    await housekeeping.housekeep(db, keep=86400, audit_days=0, batch=10_000)
    assert await db.fetchval(
        "SELECT count(*) FROM auth.refresh_token WHERE token_hash = $1", old_hash
    )
    replay = await grants.refresh_token(
        db, old_hash=old_hash, client_id="web", new_hash=h("r2-" + str(world.user_id)),
        new_sealed="sealed", scope=None, grace=0, refresh_ttl=3600,
    )  # fmt: skip
    assert replay.status == "replay"
    revoked = await db.fetchval(
        "SELECT revoked_at FROM auth.session WHERE id = $1", first.session_id
    )
    assert revoked is not None


async def test_housekeeping_never_forgets_a_revocation_a_live_token_needs(
    world: World, tmp_path: Path
) -> None:
    """``housekeeping_keep`` 3600 with service tokens living a day: a session revoked two hours
    ago stays (a restarting token handler must still learn of it); one revoked two days ago goes."""
    db = world.conn
    config = load_config(
        write_conf(
            tmp_path,
            gateway={
                "database": {"housekeeping_keep": 3600},
                "tokens": {"service_access_ttl": 86400},
            },
        ),
        environ={},
    )
    assert config.revocation_horizon == 86460
    recent, old = await login(world, refresh=None), await login(world, refresh=None)
    for session, age in ((recent, "2 hours"), (old, "2 days")):
        await db.execute(
            f"UPDATE auth.session SET revoked_at = now() - interval '{age}' WHERE id = $1",
            session.session_id,
        )
    await housekeeping.housekeep_config(db, config)
    left = {
        r["id"]
        for r in await db.fetch("SELECT id FROM auth.session WHERE user_id = $1", world.user_id)
    }
    assert recent.session_id in left
    assert old.session_id not in left


# --- sign-in against a concurrent password change or lock ------------------------------------


async def waits_on_a_lock(observer: asyncpg.Connection, pid: int) -> None:
    """Until the backend ``pid`` waits for a row lock (PostgreSQL says so), at most 5 s."""
    for _ in range(100):
        waiting = await observer.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"backend {pid} never waited for a lock")


async def _account(db: asyncpg.Connection, user_id: uuid.UUID) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT username, password_changed_at FROM auth.users WHERE id = $1", user_id
    )
    assert row is not None
    return row


async def test_sign_in_with_a_password_changed_meanwhile_is_refused(
    world: World, database_url: str
) -> None:
    """The password was verified, then ``user passwd`` commits before the session is opened:
    the sign-in fails (OA001) instead of opening a session the change never saw. While the
    change is uncommitted, the sign-in waits for it (FOR SHARE) rather than slipping past."""
    db = world.conn
    account = await _account(db, world.user_id)
    other = await asyncpg.connect(database_url)
    try:
        change = other.transaction()
        await change.start()
        await users.user_update(other, account["username"], Passwords().hash("new"), None)
        opening = asyncio.create_task(
            sessions.session_open(
                db,
                user_id=world.user_id,
                client_id="web",
                ttl=3600,
                ip=None,
                user_agent=None,
                password_changed_at=account["password_changed_at"],
            )
        )
        await waits_on_a_lock(other, db.get_server_pid())
        assert not opening.done(), "the sign-in did not wait for the password change"
        await change.commit()
        with pytest.raises(InvalidGrantError):
            await opening
    finally:
        await other.close()
    with pytest.raises(InvalidGrantError):
        await login_with(world, account["password_changed_at"])
    fresh = await _account(db, world.user_id)
    assert (await login_with(world, fresh["password_changed_at"])).session_id


async def test_lock_waits_for_a_sign_in_in_progress_and_ends_its_session(
    world: World, database_url: str
) -> None:
    """A sign-in holds the user row (FOR SHARE) until it commits; ``user lock`` waits for it and
    then ends the session it opened, so no session outlives the lock."""
    db = world.conn
    account = await _account(db, world.user_id)
    signing_in = db.transaction()
    await signing_in.start()
    opened = await login_with(world, account["password_changed_at"])
    other = await asyncpg.connect(database_url)
    try:
        locking = asyncio.create_task(users.user_update(other, account["username"], None, True))
        await waits_on_a_lock(db, other.get_server_pid())
        assert not locking.done(), "the lock did not wait for the sign-in"
        await signing_in.commit()
        assert await locking >= 1
    finally:
        await other.close()
    revoked = await db.fetchval(
        "SELECT revoked_at FROM auth.session WHERE id = $1", opened.session_id
    )
    assert revoked is not None


async def login_with(world: World, password_changed_at: datetime | None) -> sessions.Login:
    return await sessions.login(
        world.conn,
        user_id=world.user_id,
        client_id="web",
        kind="browser",
        scope=("openid",),
        origin="password",
        refresh_hash=None,
        session_ttl=3600,
        refresh_ttl=3600,
        ip=None,
        user_agent=None,
        password_changed_at=password_changed_at,
    )


async def test_identity_link_needs_the_password_still_current(world: World) -> None:
    """``daemon.identity_link`` refuses (OA001) when the password verified for the link is no
    longer the user's, and a new password removes links made before it."""
    db = world.conn
    account = await _account(db, world.user_id)
    args: dict[str, Any] = {
        "provider": "idp",
        "issuer": "https://idp.test",
        "user_id": world.user_id,
    }
    await identities.identity_link(
        db, **args, subject="s-1", email=None, password_changed_at=account["password_changed_at"]
    )
    await users.user_update(db, account["username"], Passwords().hash("new"), None)
    assert await identities.identity_login(db, "https://idp.test", "s-1") is None
    with pytest.raises(InvalidGrantError):
        await identities.identity_link(
            db,
            **args,
            subject="s-2",
            email=None,
            password_changed_at=account["password_changed_at"],
        )
    links = "SELECT count(*) FROM auth.identity WHERE user_id = $1"
    assert await db.fetchval(links, world.user_id) == 0


async def test_housekeeping_goes_on_batch_after_batch(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``housekeep_config`` (serve's loop and ``gateway housekeep``) runs batches until nothing
    is left, so a busy deployment does not fall behind one batch per interval."""
    db = world.conn
    monkeypatch.setattr(housekeeping, "BATCH", 2)
    for i in range(5):
        await db.execute(
            "INSERT INTO auth.assertion (issuer, jti, expires_at) "
            "VALUES ('https://idp.test', $1, now() - interval '60 days')",
            f"many-{i}",
        )
    config = load_config(write_conf(tmp_path), environ={})
    total, finished = await housekeeping.housekeep_config(db, config)
    assert finished
    assert total["assertions"] >= 5
    left = await db.fetchval("SELECT count(*) FROM auth.assertion WHERE jti LIKE 'many-%'")
    assert left == 0
