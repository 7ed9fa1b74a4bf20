"""Promises kept when things around the gateway misbehave (issue 9): a database that stalls or
refuses connections, revocations made while a process could not hear them.

Tests that stall PostgreSQL start a private server of their own (``tests/faults.py``) and freeze
it with SIGSTOP. Real time is the thing under test in the stall tests, so they wait on it, each
wait bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from gateway.store.revocations import APPLICATION_NAME
from gateway.web.health import FEED_GRACE
from tests.faults import PrivatePostgres, private_postgres
from tests.http.proxy_support import Gateway, poll, running_gateway, send


async def readiness(gw: Gateway) -> tuple[int, dict[str, Any]]:
    async with gw.bare().get(gw.url("/readyz")) as response:
        return response.status, await response.json()


async def metric(gw: Gateway, name: str) -> float:
    async with gw.bare().get(gw.url("/metrics")) as response:
        for line in (await response.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def revoke_session(conn: asyncpg.Connection, session_id: str) -> None:
    await conn.execute("SELECT daemon.session_revoke($1::uuid, 'test')", session_id)


async def refused(gw: Gateway, cookies: str) -> bool:
    return (await send(gw, "/api/orders/1", cookies=cookies)).status == 401


# --- item 1: revocations survive anything --------------------------------------------------------


async def test_the_feed_comes_back_and_reloads_what_it_missed(
    tmp_path: Path, database_url: str, pg_admin_dsn: str, users: dict[str, str]
) -> None:
    """The feed's connection is killed and the database refuses new connections (the pool's
    stay): after FEED_GRACE /readyz says 503 with the reason and the metric shows the feed down;
    a session revoked meanwhile is refused once the database takes connections again, because
    the feed reloads what it missed."""
    database = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(pg_admin_dsn)
    inside = await asyncpg.connect(database_url)  # opened while connections are still allowed
    async with running_gateway(tmp_path / "conf", database_url) as gw:
        try:
            signed = await gw.sign_in()
            cookies = signed.cookie_header()
            assert (await send(gw, "/api/orders/1", cookies=cookies)).status == 200
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = $2",
                database,
                APPLICATION_NAME,
            )
            assert killed == 1
            await revoke_session(inside, signed.body["session"])

            async def unready() -> dict[str, Any] | None:
                status, body = await readiness(gw)
                return body if status == 503 else None

            body = await poll(unready, timeout=FEED_GRACE + 10)
            assert body is not None, "readiness never reported the lost feed"
            assert body["reason"].startswith("not listening for revocations for ")
            assert await metric(gw, "gateway_revocation_feed_up") == 0.0
            assert await metric(gw, "gateway_revocation_feed_down_seconds") > FEED_GRACE

            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            assert await poll(lambda: refused(gw, cookies), timeout=40), (
                "a session revoked while the feed was down stayed usable after it came back"
            )
            status, body = await readiness(gw)
            assert (status, body["status"]) == (200, "ready")
            assert await metric(gw, "gateway_revocation_feed_up") == 1.0
        finally:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            await admin.close()
            await inside.close()


@pytest.fixture
def stalling_postgres(tmp_path: Path) -> Iterator[PrivatePostgres]:
    with private_postgres(tmp_path / "private") as private:
        yield private


@pytest.fixture
async def stalling_gw(tmp_path: Path, stalling_postgres: PrivatePostgres) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path / "conf", stalling_postgres.dsn) as gw:
        yield gw


STALL_SECONDS = 12.0  # longer than the feed's heartbeat timeout and its close


async def test_revocations_still_arrive_after_a_stall(
    stalling_gw: Gateway, stalling_postgres: PrivatePostgres
) -> None:
    """The database host hangs for STALL_SECONDS (SIGSTOP). The feed's heartbeat times out, it
    drops the connection without waiting on the frozen server, and keeps reconnecting; once the
    server runs again, a logout elsewhere reaches this process within seconds. (Before, the
    close in the listener's ``finally`` raised and the listener was dead for good.)"""
    gw = stalling_gw
    signed = await gw.sign_in()
    cookies = signed.cookie_header()
    assert (await send(gw, "/api/orders/1", cookies=cookies)).status == 200
    stalling_postgres.stall()
    await asyncio.sleep(STALL_SECONDS)
    stalling_postgres.resume()
    resumed = time.monotonic()
    conn = await asyncpg.connect(stalling_postgres.dsn, timeout=10)
    try:
        await revoke_session(conn, signed.body["session"])
    finally:
        await conn.close()
    assert await poll(lambda: refused(gw, cookies), timeout=40), (
        "the revocation never reached the process after the stall"
    )
    assert time.monotonic() - resumed < 40
    assert await poll(lambda: _ready(gw), timeout=20)


async def _ready(gw: Gateway) -> bool:
    return (await readiness(gw))[0] == 200
