"""Housekeeping as operators meet it: ``gateway serve`` deletes what is over on its own, and
``gateway housekeep`` does it on demand (``daemon.housekeep`` itself: tests/db)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from gateway import keys
from tests.http.checklist import serving
from tests.support import gateway_env, run_gateway, write_conf

OLD_ASSERTION = (
    "INSERT INTO auth.assertion (issuer, jti, expires_at) "
    "VALUES ('https://idp.test', $1, now() - interval '2 days')"
)


async def jti_count(db: asyncpg.Connection, jti: str) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM auth.assertion WHERE jti = $1", jti)
    return count


async def test_serve_housekeeps_on_its_own(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    """With ``database.housekeeping_interval`` 1 s, a row over for two days is gone within a few
    seconds of the gateway running, with no command."""
    conf = write_conf(tmp_path / "conf", gateway={"database": {"housekeeping_interval": 1}})
    await db.execute(OLD_ASSERTION, "serve-old")
    async with serving(conf, database_url) as client:
        assert (await client.get("/healthz")).status == 200
        await until(lambda: jti_count(db, "serve-old"), 0)


async def test_housekeeping_can_be_turned_off(
    tmp_path: Path, database_url: str, db: asyncpg.Connection
) -> None:
    """Housekeeping runs (1 s interval), then the configuration sets ``housekeeping_interval`` 0:
    from then on nothing is deleted behind the operator's back."""
    conf = write_conf(tmp_path / "conf", gateway={"database": {"housekeeping_interval": 1}})
    await db.execute(OLD_ASSERTION, "before-off")
    async with serving(conf, database_url) as client:
        holder = client.app[keys.CONFIG]
        await until(lambda: jti_count(db, "before-off"), 0)
        write_conf(tmp_path / "conf", gateway={"database": {"housekeeping_interval": 0}})
        holder.reload()
        assert holder.current.gateway.database.housekeeping_interval == 0
        await asyncio.sleep(1.5)  # a run already asleep wakes at most once more
        await db.execute(OLD_ASSERTION, "after-off")
        await asyncio.sleep(2.5)
        assert await jti_count(db, "after-off") == 1


async def until(value: Callable[[], Awaitable[int]], wanted: int, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await value() != wanted:
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_housekeep_command(tmp_path: Path, database_url: str, db: asyncpg.Connection) -> None:
    """``gateway housekeep`` deletes at once and says what it deleted; run again, nothing."""
    conf = write_conf(tmp_path / "conf")
    env = gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(conf))
    await db.execute("DELETE FROM auth.assertion")
    await db.execute(OLD_ASSERTION, "cli-old")
    first = await asyncio.to_thread(run_gateway, "housekeep", env=env)
    assert (first.returncode, first.stderr) == (0, "")
    assert "1 assertions" in first.stdout
    assert first.stdout.startswith("deleted ")
    assert await jti_count(db, "cli-old") == 0
    second = await asyncio.to_thread(run_gateway, "housekeep", env=env)
    assert second.returncode == 0
    assert "assertions" not in second.stdout


def test_housekeeping_settings_are_validated(tmp_path: Path) -> None:
    """A keep shorter than an hour would reset live throttle counters: refused, with the key."""
    conf = write_conf(tmp_path / "conf", gateway={"database": {"housekeeping_keep": 60}})
    result = run_gateway("config", "check", "--config", str(conf), env=gateway_env())
    assert result.returncode == 2
    assert "housekeeping_keep" in result.stderr
