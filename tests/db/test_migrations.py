"""Migrations against a real PostgreSQL: from empty, applied twice, concurrently, forward-only."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from gateway.errors import StoreError
from gateway.store.migrate import migrate, read_migrations, sql_dir
from tests.support import gateway_env, run_gateway, write_conf

EXPECTED_TABLES = {
    "oauth2.client",
    "oauth2.signing_key",
    "auth.users",
    "auth.session",
    "auth.code",
    "auth.token_family",
    "auth.refresh_token",
    "audit.event",
    "mail.outbox",
}


async def tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT schemaname || '.' || tablename AS name FROM pg_tables "
        "WHERE schemaname IN ('oauth2', 'auth', 'audit', 'mail', 'gateway_meta')"
    )
    return {row["name"] for row in rows}


async def snapshot(conn: asyncpg.Connection) -> list[object]:
    """Everything a migration run could touch: bookkeeping rows and function definitions."""
    migrations = await conn.fetch("SELECT * FROM gateway_meta.migration ORDER BY version")
    state = await conn.fetch("SELECT * FROM gateway_meta.state ORDER BY key")
    functions = await conn.fetch(
        "SELECT p.oid, p.xmin::text, pg_get_functiondef(p.oid) FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'daemon' ORDER BY 1"
    )
    return [list(map(tuple, migrations)), list(map(tuple, state)), list(map(tuple, functions))]


async def test_migrate_from_empty_creates_every_table_and_function(
    empty_database_url: str,
) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        result = await migrate(conn)
        assert result.applied == [m.name for m in read_migrations(sql_dir())]
        assert result.functions_updated
        assert await tables(conn) >= EXPECTED_TABLES
        functions = {
            row["proname"]
            for row in await conn.fetch(
                "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'daemon'"
            )
        }
        assert {"user_add", "client_sync", "audit"} <= functions
    finally:
        await conn.close()


async def test_second_migrate_changes_nothing(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn)
        before = await snapshot(conn)
        again = await migrate(conn)
        assert not again.changed
        assert again.summary() == "database is up to date"
        assert await snapshot(conn) == before
    finally:
        await conn.close()


async def test_functions_apply_again_over_themselves(empty_database_url: str) -> None:
    """Every deploy that changes a function file applies all of them again over the ones in
    place: each file must work on top of itself (a function whose signature changed must drop
    its current signature too, not only the old one)."""
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn)
        await conn.execute(
            "UPDATE gateway_meta.state SET value = 'an older release' "
            "WHERE key = 'functions_checksum'"
        )
        again = await migrate(conn)
        assert again.changed
        assert "functions updated" in again.summary()
        assert await conn.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'login'") == 1
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_version_once(empty_database_url: str) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = [name for r in results for name in r.applied]
        assert sorted(applied) == sorted(m.name for m in read_migrations(sql_dir()))
        assert sum(r.functions_updated for r in results) == 1
        count = await conns[0].fetchval("SELECT count(*) FROM gateway_meta.migration")
        assert count == len(read_migrations(sql_dir()))
    finally:
        for c in conns:
            await c.close()


def test_two_migrate_processes_at_once(empty_database_url: str, tmp_path: Path) -> None:
    """Two `gateway migrate` processes started together both succeed; each migration runs once."""
    import subprocess
    import sys

    conf = write_conf(tmp_path / "conf")
    env = gateway_env(GATEWAY_DATABASE_URL=empty_database_url, GATEWAY_CONFIG=str(conf))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gateway", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    summaries = sorted(out.strip() for out, _ in outputs)
    assert summaries[0].startswith("applied 0001_schema")
    assert summaries[0].endswith("functions updated")
    assert summaries[1] == "database is up to date"
    second = run_gateway("migrate", env=env)
    assert second.returncode == 0
    assert second.stdout.strip() == "database is up to date"


async def test_edited_migration_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    copy = tmp_path / "sql"
    shutil.copytree(sql_dir(), copy)
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, copy)
        first = sorted((copy / "migrations").glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited\n")
        with pytest.raises(StoreError, match="changed after it was applied"):
            await migrate(conn, copy)
    finally:
        await conn.close()


async def test_database_newer_than_gateway_is_refused(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO gateway_meta.migration (version, name, checksum) VALUES (9999, 'x', 'y')"
        )
        with pytest.raises(StoreError, match="does not know"):
            await migrate(conn)
    finally:
        await conn.close()


async def test_failed_migration_leaves_nothing_behind(
    empty_database_url: str, tmp_path: Path
) -> None:
    copy = tmp_path / "sql"
    shutil.copytree(sql_dir(), copy)
    (copy / "migrations" / "9000_broken.sql").write_text(
        "CREATE TABLE auth.half_done (id int);\nSELECT no_such_function();\n"
    )
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(StoreError):
            await migrate(conn, copy)
        assert "auth.half_done" not in await tables(conn)
        versions = await conn.fetch("SELECT version FROM gateway_meta.migration")
        assert 9000 not in {row["version"] for row in versions}
    finally:
        await conn.close()
