"""The daemon functions of the foundation, called through the store layer on a real database."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from gateway.config import load_config
from gateway.passwords import Passwords
from gateway.store.clients import sync_configured_clients
from gateway.store.errors import InvalidInputError, UnknownUserError, UserExistsError
from gateway.store.users import user_add, user_update
from tests.support import committed_sample, write_conf


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords()


async def test_user_add_stores_an_argon2id_hash(
    db: asyncpg.Connection, passwords: Passwords
) -> None:
    user_id = await user_add(
        db, "alice", passwords.hash("Correct-Horse-9"), "a@example.test", "Alice"
    )
    row = await db.fetchrow("SELECT * FROM auth.users WHERE id = $1", user_id)
    assert row is not None
    assert row["username"] == "alice"
    assert row["email"] == "a@example.test"
    assert row["password_hash"].startswith("$argon2id$")
    assert "Correct-Horse-9" not in row["password_hash"]
    assert passwords.verify(row["password_hash"], "Correct-Horse-9")
    event = await db.fetchrow("SELECT kind FROM audit.event WHERE user_id = $1", user_id)
    assert event is not None
    assert event["kind"] == "user.add"


async def test_user_add_refuses_an_existing_name_in_any_case(
    db: asyncpg.Connection, passwords: Passwords
) -> None:
    await user_add(db, "Bob", passwords.hash("B0b-Passw0rd!"), "bob@example.test", None)
    with pytest.raises(UserExistsError):
        await user_add(db, "bob", passwords.hash("x"), None, None)
    with pytest.raises(UserExistsError):
        await user_add(db, "robert", passwords.hash("x"), "BOB@example.test", None)
    assert await db.fetchval("SELECT count(*) FROM auth.users WHERE lower(username) = 'bob'") == 1


async def test_user_add_refuses_a_plaintext_password(db: asyncpg.Connection) -> None:
    with pytest.raises(InvalidInputError):
        await user_add(db, "carol", "plaintext", None, None)
    assert await db.fetchval("SELECT count(*) FROM auth.users WHERE username = 'carol'") == 0


async def test_user_update_sets_password_and_lock_and_audits(
    db: asyncpg.Connection, passwords: Passwords
) -> None:
    """``daemon.user_update``: NULL keeps a value; a new password moves ``password_changed_at``
    (which every refresh and token check compares with); each change is audited."""
    user_id = await user_add(db, "dora", passwords.hash("D0ra-old-pass"), None, None)
    before = await db.fetchrow("SELECT * FROM auth.users WHERE id = $1", user_id)
    assert before is not None
    assert await user_update(db, "DORA", passwords.hash("D0ra-new-pass"), None) == 0
    after = await db.fetchrow("SELECT * FROM auth.users WHERE id = $1", user_id)
    assert after is not None
    assert passwords.verify(after["password_hash"], "D0ra-new-pass")
    assert after["password_changed_at"] > before["password_changed_at"]
    assert after["locked"] is False
    assert await user_update(db, "dora", None, True) == 0
    locked = await db.fetchrow("SELECT * FROM auth.users WHERE id = $1", user_id)
    assert locked is not None
    assert locked["locked"] is True
    assert locked["password_hash"] == after["password_hash"]
    assert locked["password_changed_at"] == after["password_changed_at"]
    kinds = await db.fetch("SELECT kind FROM audit.event WHERE user_id = $1 ORDER BY id", user_id)
    assert [k["kind"] for k in kinds] == ["user.add", "user.password", "user.lock"]


async def test_user_update_refuses_unknown_users_and_plaintext(
    db: asyncpg.Connection, passwords: Passwords
) -> None:
    with pytest.raises(UnknownUserError):
        await user_update(db, "nobody", passwords.hash("x"), None)
    user_id = await user_add(db, "eve", passwords.hash("Ev3-pass-word"), None, None)
    with pytest.raises(InvalidInputError):
        await user_update(db, "eve", "plaintext", None)
    row = await db.fetchrow("SELECT password_hash FROM auth.users WHERE id = $1", user_id)
    assert row is not None
    assert passwords.verify(row["password_hash"], "Ev3-pass-word")


async def test_client_sync_adds_updates_and_disables(
    db: asyncpg.Connection, passwords: Passwords, tmp_path: Path
) -> None:
    config = load_config(committed_sample(tmp_path / "sample"), environ={})
    first = await sync_configured_clients(db, config.clients, passwords)
    assert (first.added, first.updated, first.disabled) == (4, 0, 0)
    rows = {r["client_id"]: r for r in await db.fetch("SELECT * FROM oauth2.client")}
    assert rows["spa"]["public"]
    assert rows["spa"]["secret_hash"] is None
    web_hash = rows["web"]["secret_hash"]
    assert web_hash.startswith("$argon2id$")
    assert "web-secret-change-me" not in str(dict(rows["web"]))
    assert rows["web"]["javascript_origins"] == ["http://localhost:8080", "http://localhost:3000"]

    again = await sync_configured_clients(db, config.clients, passwords)
    assert (again.added, again.updated, again.disabled) == (0, 0, 0)
    assert (
        await db.fetchval("SELECT secret_hash FROM oauth2.client WHERE client_id = 'web'")
        == web_hash
    )

    from pathlib import Path

    conf = write_conf(
        Path(str(tmp_path)) / "conf",
        clients={"web": {"client_id": "web", "client_secret": "rotated-secret"}},
    )
    changed = load_config(conf, environ={})
    third = await sync_configured_clients(db, changed.clients, passwords)
    assert (third.added, third.updated, third.disabled) == (0, 1, 3)
    new_hash = await db.fetchval("SELECT secret_hash FROM oauth2.client WHERE client_id = 'web'")
    assert new_hash != web_hash
    assert passwords.verify(new_hash, "rotated-secret")
    disabled = await db.fetch("SELECT client_id FROM oauth2.client WHERE NOT enabled ORDER BY 1")
    assert [r["client_id"] for r in disabled] == ["bff", "service", "spa"]
