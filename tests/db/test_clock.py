"""One clock for the gateway and its database (issue 10 item 5): the functions read
``daemon.now()``, which the application's clock moves through ``gateway.clock_offset`` on the
connections it lends; production never makes the setting, and a lent connection comes back
without it."""

from __future__ import annotations

import asyncpg

from gateway.clock import Clock
from gateway.store.pool import BoundedPool

DRIFT = "SELECT extract(epoch FROM daemon.now() - now())::float8"
SETTING = "SELECT current_setting('gateway.clock_offset', true)"


async def test_the_database_reads_the_applications_clock(database_url: str) -> None:
    raw = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        clock = Clock()
        pool = BoundedPool(raw, 5.0, clock=clock)
        assert await pool.fetchval(DRIFT) == 0.0
        assert await pool.fetchval(SETTING) in (None, "")  # not made at offset 0

        clock.advance(3600.5)
        assert await pool.fetchval(DRIFT) == 3600.5

        # The same (only) connection, lent again by the raw pool: the setting was reset.
        async with raw.acquire() as con:
            assert await con.fetchval(SETTING) in (None, "")
            assert await con.fetchval(DRIFT) == 0.0

        clock.advance(-3600.5)
        assert await pool.fetchval(DRIFT) == 0.0
    finally:
        await raw.close()


async def test_column_defaults_read_the_same_clock(db: asyncpg.Connection) -> None:
    """Rows inserted without a time (a session's auth_time, say) get daemon.now() too."""
    await db.execute("SELECT set_config('gateway.clock_offset', '86400 seconds', false)")
    try:
        ahead = await db.fetchval(
            "SELECT extract(epoch FROM daemon.now() - now()) = 86400"
            " AND pg_get_expr(d.adbin, d.adrelid) = 'daemon.now()'"
            " FROM pg_attrdef d JOIN pg_attribute a"
            " ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
            " WHERE d.adrelid = 'auth.session'::regclass AND a.attname = 'auth_time'"
        )
        assert ahead is True
        plain = await db.fetch(
            "SELECT c.relname, a.attname FROM pg_attrdef d"
            " JOIN pg_class c ON c.oid = d.adrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
            " WHERE n.nspname IN ('auth', 'oauth2', 'audit', 'mail')"
            " AND pg_get_expr(d.adbin, d.adrelid) = 'now()'"
        )
        assert plain == [], "columns still defaulting to the database's own now()"
    finally:
        await db.execute("RESET gateway.clock_offset")


async def test_no_function_reads_now_directly(db: asyncpg.Connection) -> None:
    """Every daemon function but daemon.now() itself reads the application's clock."""
    direct = await db.fetch(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'daemon' AND p.proname <> 'now'"
        " AND p.prosrc ~ '(^|[^.a-z_])now\\(\\)'"
    )
    assert [r["proname"] for r in direct] == []
