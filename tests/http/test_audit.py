"""The audit log as events happen over HTTP (issue 14 item 4): each event type the brief lists
is asserted from ``audit.event`` with its actor, client, address and User-Agent, and never with
a secret in it. SECURITY-CHECKLIST items 86 (logout), 117 (revocation), 137 (throttling);
RFC 9700 4.14.2 (refresh token replay).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.http.conftest import as_config, authz_params, basic, sign_in
from tests.support import Client, gateway_env, run_gateway

TOKEN = "/oauth2/token"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
ALICE = "Correct-Horse-9"
LIMITS = {
    "login_failures_per_account": 3,
    "login_failures_per_ip": 1000,
    "login_lock_seconds": 2,
    "client_failures": 1000,
    "client_failures_per_ip": 1000,
}


@pytest.fixture
def as_conf_path(tmp_path: Path) -> Path:
    return as_config(tmp_path / "conf", limits=LIMITS)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM auth.throttle; DELETE FROM audit.event")
        yield conn
    finally:
        await conn.close()


async def events(db: asyncpg.Connection, kind: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT e.*, host(e.ip) AS address, u.username FROM audit.event e "
        "LEFT JOIN auth.users u ON u.id = e.user_id WHERE kind = $1 ORDER BY id",
        kind,
    )
    return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]


def assert_no_secret(rows: list[dict[str, Any]], *secrets: str) -> None:
    text = json.dumps(rows, default=str)
    for secret in secrets:
        assert secret not in text


async def password_grant(client: Client, password: str, **extra: str) -> dict[str, Any]:
    response = await client.post(
        TOKEN,
        data={"grant_type": "password", "username": "alice", "password": password,
              "scope": "openid offline_access", **extra},
        headers={**basic("conf", "s3cr3t"), "User-Agent": UA},
    )  # fmt: skip
    body: dict[str, Any] = await response.json()
    return body


async def test_password_grant_success_failure_and_lockout_are_audited(
    as_client: Client, db: asyncpg.Connection, users: dict[str, str]
) -> None:
    """Item 137: a sign-in, each wrong password (login.failure, the account it names, never
    the password) and the lock the third one sets (throttle.lock, once)."""
    ok = await password_grant(as_client, ALICE)
    assert "access_token" in ok
    (login,) = await events(db, "login")
    assert (login["username"], login["client_id"], login["actor"]) == (
        "alice",
        "conf",
        f"user:{users['alice']}",
    )
    assert (login["address"], login["user_agent"]) == ("127.0.0.1", UA)

    for _ in range(3):
        assert (await password_grant(as_client, "wrong-password-1"))["error"] == "invalid_grant"
    failures = await events(db, "login.failure")
    assert len(failures) == 3
    assert {(f["username"], f["client_id"], f["address"], f["user_agent"]) for f in failures} == {
        ("alice", "conf", "127.0.0.1", UA)
    }
    assert failures[0]["detail"] == {"login": "alice", "origin": "password"}
    refused = await password_grant(as_client, ALICE)
    assert refused["error"] == "slow_down"
    (lock,) = await events(db, "throttle.lock")
    assert lock["detail"]["key"] == "acct:alice"
    assert (lock["address"], lock["user_agent"]) == ("127.0.0.1", UA)
    assert_no_secret([*failures, lock, login], ALICE, "wrong-password-1", ok["access_token"])


async def test_a_name_that_is_no_account_is_never_audited_as_typed(
    as_client: Client, db: asyncpg.Connection, users: dict[str, str]
) -> None:
    """A password typed into the name field (an unknown "name") reaches neither login.failure
    nor the throttle.lock of its account key: only its length (review of issue 14)."""
    typed = "Tr0ub4dor&3-typed-as-name"
    for _ in range(3):
        response = await as_client.post(
            TOKEN,
            data={"grant_type": "password", "username": typed, "password": "x"},
            headers={**basic("conf", "s3cr3t"), "User-Agent": UA},
        )
        assert response.status in (400, 429), await response.text()
    failures = await events(db, "login.failure")
    assert failures, "failed sign-ins are audited"
    assert {f["detail"]["login_length"] for f in failures} == {len(typed)}
    locks = await events(db, "throttle.lock")
    assert [lock["detail"]["key"] for lock in locks] == [
        f"acct:(an unknown name of {len(typed)} characters)"
    ]
    assert_no_secret([*failures, *locks], typed, typed.lower())


async def test_login_page_failure_is_audited_with_its_client(
    as_client: Client, db: asyncpg.Connection, users: dict[str, str]
) -> None:
    """The built-in login form: a wrong password is login.failure with origin form."""
    response = await sign_in(as_client, authz_params("conf"), "alice", "not-her-password")
    assert response.status == 401
    (failure,) = await events(db, "login.failure")
    assert (failure["username"], failure["client_id"], failure["detail"]["origin"]) == (
        "alice",
        "conf",
        "form",
    )
    response = await sign_in(as_client, authz_params("conf"), "alice")
    assert response.status == 303
    (login,) = await events(db, "login")
    assert login["detail"]["origin"] == "form"
    assert login["address"] == "127.0.0.1"


async def test_refresh_replay_and_revocation_are_audited(
    as_client: Client, db: asyncpg.Connection, users: dict[str, str]
) -> None:
    """A refresh (one event, with the client as actor and the caller's address and
    User-Agent), the replay of the superseded token after the grace (RFC 9700 4.14.2) and an
    RFC 7009 revocation (item 117)."""
    first = await password_grant(as_client, ALICE)

    async def refresh(token: str) -> dict[str, Any]:
        response = await as_client.post(
            TOKEN, data={"grant_type": "refresh_token", "refresh_token": token},
            headers={**basic("conf", "s3cr3t"), "User-Agent": UA},
        )  # fmt: skip
        body: dict[str, Any] = await response.json()
        return body

    second = await refresh(first["refresh_token"])
    assert "access_token" in second
    (refreshed,) = await events(db, "refresh")
    assert (refreshed["username"], refreshed["client_id"], refreshed["actor"]) == (
        "alice",
        "conf",
        "client:conf",
    )
    assert (refreshed["address"], refreshed["user_agent"]) == ("127.0.0.1", UA)
    assert refreshed["detail"] == {"status": "rotated", "generation": 1}

    # After the grace (moved by the database clock), the old token again is a replay.
    await db.execute("UPDATE auth.token_family SET successor_until = successor_until - "
                     "interval '1 day'")  # fmt: skip
    await db.execute("UPDATE auth.refresh_token SET superseded_at = superseded_at - "
                     "interval '1 day' WHERE superseded_at IS NOT NULL")  # fmt: skip
    assert (await refresh(first["refresh_token"]))["error"] == "invalid_grant"
    (replay,) = await events(db, "refresh.replay")
    assert (replay["username"], replay["address"], replay["user_agent"]) == (
        "alice",
        "127.0.0.1",
        UA,
    )
    (ended,) = await events(db, "session.revoke")
    assert ended["detail"]["reason"] == "refresh token replay"
    assert ended["address"] == "127.0.0.1"

    third = await password_grant(as_client, ALICE)
    revoked = await as_client.post(
        "/oauth2/revoke", data={"token": third["refresh_token"]},
        headers={**basic("conf", "s3cr3t"), "User-Agent": UA},
    )  # fmt: skip
    assert revoked.status == 200
    (revocation,) = await events(db, "token.revoke")
    assert (revocation["client_id"], revocation["actor"], revocation["address"]) == (
        "conf",
        "client:conf",
        "127.0.0.1",
    )
    rows = await events(db, "refresh") + [replay, ended, revocation]
    assert_no_secret(rows, first["refresh_token"], second["refresh_token"], third["refresh_token"])


async def test_logout_is_audited_as_the_user(
    as_client: Client, db: asyncpg.Connection, users: dict[str, str]
) -> None:
    """Item 86: sign-out ends the session through daemon.session_revoke, audited with the user
    as actor, the address and the User-Agent."""
    assert (await sign_in(as_client, authz_params("conf"), "alice")).status == 303
    out = await as_client.post(
        "/oauth2/logout", json={}, headers={"Origin": "https://as.example.test", "User-Agent": UA}
    )
    assert out.status == 200, await out.text()
    (ended,) = await events(db, "session.revoke")
    assert ended["detail"]["reason"] == "logout"
    assert (ended["username"], ended["actor"], ended["address"], ended["user_agent"]) == (
        "alice",
        f"user:{users['alice']}",
        "127.0.0.1",
        UA,
    )


async def test_gateway_audit_shows_every_event_type(
    as_client: Client,
    db: asyncpg.Connection,
    users: dict[str, str],
    as_conf_path: Path,
    database_url: str,
) -> None:
    """The same events read back through ``gateway audit`` (a real process), a table and JSON
    lines, filtered by user and type, with no secret in the output."""
    first = await password_grant(as_client, ALICE)
    for _ in range(3):
        await password_grant(as_client, "wrong-password-2")
    await db.execute("DELETE FROM auth.throttle")
    refreshed = await as_client.post(
        TOKEN, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        headers=basic("conf", "s3cr3t"),
    )  # fmt: skip
    assert refreshed.status == 200
    await db.execute("UPDATE auth.token_family SET successor_until = successor_until - "
                     "interval '1 day'")  # fmt: skip
    await db.execute("UPDATE auth.refresh_token SET superseded_at = superseded_at - "
                     "interval '1 day' WHERE superseded_at IS NOT NULL")  # fmt: skip
    await as_client.post(
        TOKEN, data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        headers=basic("conf", "s3cr3t"),
    )  # fmt: skip
    second = await password_grant(as_client, ALICE)
    await as_client.post("/oauth2/revoke", data={"token": second["refresh_token"]},
                         headers=basic("conf", "s3cr3t"))  # fmt: skip
    as_client.session.cookie_jar.clear()  # a sign-in on the page, not a silent SSO answer
    assert (await sign_in(as_client, authz_params("conf"), "alice")).status == 303
    await as_client.post("/oauth2/logout", json={}, headers={"Origin": "https://as.example.test"})

    env = gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(as_conf_path))
    changed = run_gateway("user", "passwd", "alice", "--password-stdin", env=env, stdin=ALICE)
    assert changed.returncode == 0, changed.stderr
    result = run_gateway("audit", "--user", "alice", "--json", env=env)
    assert result.returncode == 0, result.stderr
    types = {json.loads(line)["type"] for line in result.stdout.splitlines()}
    assert types >= {"login", "login.failure", "refresh", "refresh.replay", "session.revoke",
                     "token.revoke", "user.password"}  # fmt: skip
    lock = run_gateway("audit", "--type", "throttle.lock", env=env)
    assert lock.returncode == 0, lock.stderr
    assert "key=acct:alice" in lock.stdout
    table = run_gateway("audit", "--user", "alice", "--type", "session.revoke", env=env)
    reasons = table.stdout
    assert "reason=logout" in reasons
    assert "reason=refresh token replay" in reasons
    assert "reason=password changed" in reasons
    assert "Firefox 133 on Linux" in run_gateway("audit", "--user", "alice", env=env).stdout
    everything = run_gateway("audit", "--json", "--limit", "1000", env=env).stdout
    for secret in (ALICE, "wrong-password-2", first["refresh_token"], second["refresh_token"]):
        assert secret not in everything
