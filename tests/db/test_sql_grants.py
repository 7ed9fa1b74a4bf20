"""The daemon functions of the authorization server, called directly on a real database: the
state machines of codes and refresh tokens, revocation and its notices, throttling, signing keys.
(Issue 3 item 8: "tests of the SQL functions themselves".)"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass

import asyncpg
import pytest

from gateway.config import load_config
from gateway.oauth.errors import InvalidGrantError, InvalidScopeError
from gateway.passwords import Passwords
from gateway.store import grants, keys, revocations, sessions
from gateway.store.clients import sync_configured_clients
from gateway.store.users import user_add
from tests.support import SAMPLE_CONF

C = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def h(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass
class World:
    conn: asyncpg.Connection
    user_id: uuid.UUID


@pytest.fixture
async def world(db: asyncpg.Connection) -> World:
    config = load_config(SAMPLE_CONF / "gateway.json", environ={})
    await sync_configured_clients(db, config.clients)
    name = f"u{uuid.uuid4().hex[:10]}"
    user_id = await user_add(db, name, Passwords().hash("pw"), None, None)
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


async def issue_code(world: World, session_id: uuid.UUID, code: str, **overrides: object) -> None:
    params: dict[str, object] = {
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
    await grants.code_issue(world.conn, **params)  # type: ignore[arg-type]


async def redeem(world: World, code: str, **overrides: object) -> grants.Redeemed:
    params: dict[str, object] = {
        "code_hash": h(code),
        "client_id": "web",
        "redirect_uri": "http://localhost:8080/oauth2/callback",
        "verifier_challenge": C,
        "refresh_hash": h("first-" + code),
        "refresh_ttl": 3600,
    }
    params.update(overrides)
    return await grants.code_redeem(world.conn, **params)  # type: ignore[arg-type]


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
    family = await world.conn.fetchrow(
        "SELECT * FROM auth.token_family WHERE id = $1", ok.family_id
    )
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
    world: World, old: str, new: str, *, grace: int = 30, client: str = "web", scope: object = None
) -> grants.Rotation:
    return await grants.refresh_token(
        world.conn,
        old_hash=h(old + str(world.user_id)),
        client_id=client,
        new_hash=h(new + str(world.user_id)),
        new_sealed=f"sealed:{new}",
        scope=scope,  # type: ignore[arg-type]
        grace=grace,
        refresh_ttl=3600,
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
        await rotate(world, "rt-1", "rt-2", scope=["openid", "api", "admin"])
    live = await world.conn.fetch(
        "SELECT generation FROM auth.refresh_token WHERE family_id = $1 AND superseded_at IS NULL",
        first.family_id,
    )
    assert [r["generation"] for r in live] == [1]
    # After the grace: the superseded token is a replay; the session ends.
    replay = await rotate(world, "rt-0", "rt-3", grace=0)
    assert replay.status == "replay"
    revoked = await world.conn.fetchval(
        "SELECT revoked_reason FROM auth.session WHERE id = $1", session.session_id
    )
    assert revoked == "refresh token replay"
    with pytest.raises(InvalidGrantError):
        await rotate(world, "rt-1", "rt-4")


async def test_concurrent_rotations_converge(db: asyncpg.Connection, database_url: str) -> None:
    user_id = await user_add(db, f"c{uuid.uuid4().hex[:8]}", Passwords().hash("p"), None, None)
    world = World(db, user_id)
    config = load_config(SAMPLE_CONF / "gateway.json", environ={})
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
    assert [await sessions.throttle_attempt(db, key, (3,), 2) for _ in range(3)] == [0, 0, 0]
    # The third attempt reached the threshold: the fourth is refused, and not counted.
    refused = await sessions.throttle_attempt(db, key, (3,), 2)
    assert 1 <= refused <= 2
    assert await db.fetchval("SELECT failures FROM auth.throttle WHERE key = $1", key[0]) == 3
    await db.execute("UPDATE auth.throttle SET locked_until = now() WHERE key = $1", key[0])
    assert await sessions.throttle_attempt(db, key, (3,), 2) == 0  # counted: 4, locked 4 s
    assert 3 <= await sessions.throttle_attempt(db, key, (3,), 2) <= 4
    await sessions.throttle_success(db, key, (), ())
    assert await sessions.throttle_attempt(db, key, (3,), 2) == 0


async def test_parallel_attempts_cannot_outrun_the_count(database_url: str) -> None:
    """Forty parallel guesses: only the threshold's worth are let through to the check."""
    key = (f"acct:{uuid.uuid4().hex}",)
    pool = await asyncpg.create_pool(database_url, min_size=8, max_size=8)
    try:
        waits = await asyncio.gather(
            *(sessions.throttle_attempt(pool, key, (5,), 60) for _ in range(40))
        )
    finally:
        await pool.close()
    assert sum(1 for w in waits if w == 0) == 5


async def test_a_success_refunds_the_address(db: asyncpg.Connection) -> None:
    account, address = f"acct:{uuid.uuid4().hex}", f"ip:{uuid.uuid4().hex}"
    for _ in range(2):
        await sessions.throttle_attempt(db, (account, address), (5, 2), 60)
    assert await sessions.throttle_attempt(db, (address,), (2,), 60) > 0
    await sessions.throttle_success(db, (account,), (address,), (2,))
    assert await db.fetchval("SELECT count(*) FROM auth.throttle WHERE key = $1", account) == 0
    assert await sessions.throttle_attempt(db, (address,), (2,), 60) == 0


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
