"""Throttling of the password grant and of client authentication (SECURITY-CHECKLIST items
137-141), with small limits of this module's own configuration: 5 failures per account, 30 per
address, 2 s locks; 5 client-authentication failures per client, 2 s locks.

Every test starts with an empty ``auth.throttle`` so that the tests do not depend on their order.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientResponse
from argon2 import PasswordHasher

from tests.http.conftest import as_config, basic
from tests.support import Client, clock_of

TOKEN = "/oauth2/token"
ALICE = "Correct-Horse-9"
BOB = "B0b-Passw0rd!"
LIMITS = {
    "login_failures_per_account": 5,
    "login_failures_per_ip": 30,
    "login_lock_seconds": 2,
    "client_failures": 5,
    "client_lock_seconds": 2,
}


@pytest.fixture
def as_conf_path(tmp_path: Path) -> Path:
    return as_config(tmp_path / "conf", limits=LIMITS)


@pytest.fixture(autouse=True)
async def empty_throttle(database_url: str) -> AsyncIterator[None]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("DELETE FROM auth.throttle")
        yield
    finally:
        await conn.close()


async def password(
    client: Client,
    username: str,
    secret: str,
    headers: dict[str, str] | None = None,
) -> ClientResponse:
    return await client.post(
        TOKEN,
        data={"grant_type": "password", "username": username, "password": secret},
        headers={**basic("conf", "s3cr3t"), **(headers or {})},
    )


async def assert_invalid_grant(resp: ClientResponse) -> bytes:
    raw = await resp.read()
    assert resp.status == 400, raw
    assert json.loads(raw)["error"] == "invalid_grant"
    return raw


async def assert_429(resp: ClientResponse) -> int:
    """RFC 6585 429 with ``Retry-After`` (seconds) and a JSON ``slow_down`` body; no token."""
    text = await resp.text()
    assert resp.status == 429, text
    assert resp.content_type == "application/json"
    body = json.loads(text)
    assert body["error"] == "slow_down", body
    assert "access_token" not in body
    retry_after = resp.headers.get("Retry-After", "")
    assert retry_after.isdigit(), resp.headers
    assert 1 <= int(retry_after) <= 10
    return int(retry_after)


async def assert_ok(resp: ClientResponse) -> dict[str, Any]:
    text = await resp.text()
    assert resp.status == 200, text
    body: dict[str, Any] = json.loads(text)
    assert body["access_token"]
    return body


def spoofed() -> dict[str, str]:
    address = f"203.0.113.{random.randint(1, 254)}"
    return {
        "X-Forwarded-For": address,
        "Forwarded": f"for={address}",
        "X-Real-IP": address,
    }


# --- items 137-138 ----------------------------------------------------------------------------


async def test_account_locks_after_five_failures(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 137(a): after 5 wrong passwords for alice, the next attempts, even
    with the right password, are 429 with Retry-After and a JSON body."""
    for i in range(5):
        await assert_invalid_grant(await password(as_client, "alice", f"wrong{i}"))
    await assert_429(await password(as_client, "alice", ALICE))
    for i in range(3):
        await assert_429(await password(as_client, "alice", f"wrong-again{i}"))
    await assert_429(await password(as_client, "alice", ALICE))


async def test_lock_is_scoped_to_the_account_and_recovers(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 138: while alice is locked bob signs in; after Retry-After
    seconds alice's correct password works again."""
    for i in range(5):
        await assert_invalid_grant(await password(as_client, "alice", f"wrong{i}"))
    retry_after = await assert_429(await password(as_client, "alice", ALICE))
    await assert_ok(await password(as_client, "bob", BOB))
    clock_of(as_client).advance(retry_after)  # exactly what Retry-After said
    await assert_ok(await password(as_client, "alice", ALICE))


async def test_per_source_throttle(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 137(b): different user names with one wrong password each, from
    one address: the 31st attempt (threshold 30) is 429, even for bob's right password."""
    deadline = time.monotonic() + 120
    for i in range(30):
        assert time.monotonic() < deadline
        await assert_invalid_grant(await password(as_client, f"nobody{i}", "wrong"))
    await assert_429(await password(as_client, "nobody-else", "wrong"))
    await assert_429(await password(as_client, "bob", BOB))


# --- item 139 ---------------------------------------------------------------------------------


async def test_spoofed_forwarding_headers_do_not_reset_the_throttle(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 139: a fresh X-Forwarded-For / Forwarded / X-Real-IP on every
    attempt does not move the throttling point of item 137(a)."""
    for i in range(5):
        resp = await password(as_client, "alice", f"wrong{i}", spoofed())
        await assert_invalid_grant(resp)
    await assert_429(await password(as_client, "alice", ALICE, spoofed()))
    await assert_429(await password(as_client, "alice", ALICE, {"X-Forwarded-For": "127.0.0.2"}))


# --- item 140 ---------------------------------------------------------------------------------


async def test_no_account_enumeration(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 140: a wrong password for alice, the unknown user mallory and the
    locked user carol (even with her right password) give the same status and byte-identical
    bodies, alternating, 4 rounds (below the lock threshold)."""
    bodies: dict[str, set[bytes]] = {"alice": set(), "mallory": set(), "carol": set()}
    for _ in range(4):
        bodies["alice"].add(await assert_invalid_grant(await password(as_client, "alice", "wr0ng")))
        bodies["mallory"].add(
            await assert_invalid_grant(await password(as_client, "mallory", "wr0ng"))
        )
        bodies["carol"].add(
            await assert_invalid_grant(await password(as_client, "carol", "Carol-Passw0rd"))
        )
    assert len(bodies["alice"] | bodies["mallory"] | bodies["carol"]) == 1, bodies


async def test_unknown_user_costs_as_much_as_a_wrong_password(
    as_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SECURITY-CHECKLIST item 140 (timing), checked by its mechanism rather than a stopwatch:
    a wrong password for alice, an unknown user and a locked account each cost exactly one
    argon2 verification with the same cost parameters, so none answers faster."""
    calls: list[str] = []
    real_verify = PasswordHasher.verify

    def recording(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        text = hash.decode() if isinstance(hash, bytes) else hash
        calls.append(text.rsplit("$", 2)[0])  # $argon2id$v=19$m=...,t=...,p=... (no salt)
        return real_verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", recording)
    costs = {}
    for user in ("alice", "mallory", "carol"):
        calls.clear()
        await assert_invalid_grant(await password(as_client, user, "wr0ng"))
        assert len(calls) == 1, (user, calls)
        costs[user] = calls[0]
    assert costs["alice"] == costs["mallory"] == costs["carol"], costs
    assert costs["alice"].startswith("$argon2id$")


# --- item 141 ---------------------------------------------------------------------------------


async def test_client_secret_bruteforce_over_basic(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 141(a): 5 wrong secrets for ``cc`` over Basic, then the right
    secret is 429 (Retry-After, JSON) inside the window; other clients are unaffected; after
    Retry-After the right secret works."""
    for i in range(5):
        resp = await as_client.post(
            TOKEN, data={"grant_type": "client_credentials"}, headers=basic("cc", f"wrong{i}")
        )
        assert resp.status == 401, await resp.text()
    retry_after = await assert_429(
        await as_client.post(
            TOKEN, data={"grant_type": "client_credentials"}, headers=basic("cc", "ccs3cr3t")
        )
    )
    await assert_ok(
        await as_client.post(
            TOKEN, data={"grant_type": "client_credentials"}, headers=basic("conf", "s3cr3t")
        )
    )
    clock_of(as_client).advance(retry_after)  # exactly what Retry-After said
    await assert_ok(
        await as_client.post(
            TOKEN, data={"grant_type": "client_credentials"}, headers=basic("cc", "ccs3cr3t")
        )
    )


async def test_client_secret_bruteforce_in_body(as_client: Client) -> None:
    """SECURITY-CHECKLIST item 141(b): the same with body credentials."""
    for i in range(5):
        resp = await as_client.post(
            TOKEN,
            data={"grant_type": "client_credentials", "client_id": "cc", "client_secret": f"w{i}"},
        )
        assert resp.status == 401, await resp.text()
    await assert_429(
        await as_client.post(
            TOKEN,
            data={
                "grant_type": "client_credentials",
                "client_id": "cc",
                "client_secret": "ccs3cr3t",
            },
        )
    )


@pytest.mark.parametrize("path", ["/oauth2/introspect", "/oauth2/revoke"])
async def test_client_secret_bruteforce_at_introspect_and_revoke(
    as_client: Client,
    path: str,
) -> None:
    """SECURITY-CHECKLIST item 141(b): at /oauth2/introspect and /oauth2/revoke, 5 wrong secrets
    for ``rs`` lock it: the right secret is then 429."""
    for i in range(5):
        resp = await as_client.post(path, data={"token": "x"}, headers=basic("rs", f"wrong{i}"))
        assert resp.status == 401, await resp.text()
    await assert_429(
        await as_client.post(path, data={"token": "x"}, headers=basic("rs", "rss3cr3t"))
    )


async def test_a_clients_parallel_requests_are_never_throttled(as_client: Client) -> None:
    """Only failed client authentications count: twelve parallel introspections by ``rs`` with
    its right secret (more than ``client_failures`` = 5) all succeed, and after them a guesser's
    failures still lock the client (successes reset nothing)."""
    answers = await asyncio.gather(
        *(
            as_client.post(
                "/oauth2/introspect", data={"token": "x"}, headers=basic("rs", "rss3cr3t")
            )
            for _ in range(12)
        )
    )
    assert [a.status for a in answers] == [200] * 12
    for i in range(4):
        resp = await as_client.post(
            "/oauth2/introspect", data={"token": "x"}, headers=basic("rs", f"wrong{i}")
        )
        assert resp.status == 401
    await as_client.post("/oauth2/introspect", data={"token": "x"}, headers=basic("rs", "rss3cr3t"))
    last = await as_client.post(
        "/oauth2/introspect", data={"token": "x"}, headers=basic("rs", "wrong-last")
    )
    assert last.status == 401
    await assert_429(
        await as_client.post(
            "/oauth2/introspect", data={"token": "x"}, headers=basic("rs", "rss3cr3t")
        )
    )


async def count(database_url: str, query: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


async def lock_client(as_client: Client, client_id: str) -> None:
    for i in range(5):
        resp = await as_client.post(
            TOKEN, data={"grant_type": "client_credentials"}, headers=basic(client_id, f"bad{i}")
        )
        assert resp.status == 401, await resp.text()


async def test_a_locked_clients_client_credentials_leave_nothing(
    as_client: Client, database_url: str
) -> None:
    """SECURITY-CHECKLIST item 141(a) where the lock is checked by the grant's own statement
    (daemon.throttle_guard inside daemon.login, issue 13): the right secret of a locked client
    is 429 and opens no session; wrong secrets during the lock are 429 too and not counted."""
    sessions = "SELECT count(*) FROM auth.session WHERE client_id = 'cc'"
    before = await count(database_url, sessions)
    await lock_client(as_client, "cc")
    failures = await count(
        database_url, "SELECT failures FROM auth.throttle WHERE key = 'client:cc'"
    )
    ok = {"grant_type": "client_credentials"}
    await assert_429(await as_client.post(TOKEN, data=ok, headers=basic("cc", "ccs3cr3t")))
    await assert_429(await as_client.post(TOKEN, data=ok, headers=basic("cc", "still-wrong")))
    assert await count(database_url, sessions) == before
    assert failures == await count(
        database_url, "SELECT failures FROM auth.throttle WHERE key = 'client:cc'"
    )
    clock_of(as_client).advance(10)
    await assert_ok(await as_client.post(TOKEN, data=ok, headers=basic("cc", "ccs3cr3t")))
    assert await count(database_url, sessions) == before + 1


async def test_a_locked_clients_refresh_rotates_nothing(
    as_client: Client, database_url: str
) -> None:
    """SECURITY-CHECKLIST item 141 at the refresh grant, whose one statement checks the lock
    (issue 13): the right secret and a valid refresh token of a locked client are 429, the
    refresh token is not rotated (no new token stored), and it refreshes once the lock is over."""
    issued = await assert_ok(
        await as_client.post(
            TOKEN,
            data={
                "grant_type": "password",
                "username": "alice",
                "password": ALICE,
                "scope": "openid offline_access",
            },
            headers=basic("conf", "s3cr3t"),
        )
    )
    refresh = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    tokens = "SELECT count(*) FROM auth.refresh_token"
    before = await count(database_url, tokens)
    await lock_client(as_client, "conf")
    await assert_429(await as_client.post(TOKEN, data=refresh, headers=basic("conf", "s3cr3t")))
    assert await count(database_url, tokens) == before
    clock_of(as_client).advance(10)
    renewed = await assert_ok(
        await as_client.post(TOKEN, data=refresh, headers=basic("conf", "s3cr3t"))
    )
    assert renewed["refresh_token"] != issued["refresh_token"]
    assert await count(database_url, tokens) == before + 1
