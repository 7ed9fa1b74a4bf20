"""Connection pool and database location (URL from the environment or config, else embedded)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from gateway.config.model import Database
from gateway.errors import StoreError
from gateway.store.embedded import EmbeddedPostgres, start_embedded
from gateway.store.errors import UNREACHABLE, describe, redact_dsn

Pool = asyncpg.Pool
Connection = asyncpg.Connection
Executor = asyncpg.Pool | asyncpg.Connection


@dataclass
class DatabaseLocation:
    """Where the database is: a URL, and the embedded server when this process started one."""

    dsn: str
    embedded: EmbeddedPostgres | None = None

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


def locate_database(settings: Database, workdir: Path | None = None) -> DatabaseLocation:
    """``GATEWAY_DATABASE_URL``, else ``database.url``, else the embedded PostgreSQL."""
    url = os.environ.get("GATEWAY_DATABASE_URL") or (
        settings.url.get_secret_value() if settings.url else None
    )
    if url:
        return DatabaseLocation(url)
    pgdata = Path(settings.embedded_dir)
    if not pgdata.is_absolute():
        pgdata = (workdir or Path.cwd()) / pgdata
    embedded = start_embedded(pgdata)
    return DatabaseLocation(embedded.dsn, embedded)


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, settings: Database) -> Pool:
    """An asyncpg pool; ``StoreError`` with a readable reason when the database is unreachable."""
    try:
        pool: Pool = await asyncpg.create_pool(
            dsn,
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            timeout=settings.connect_timeout,
            command_timeout=settings.command_timeout,
            init=_init_connection,
        )
    except (*UNREACHABLE, asyncpg.PostgresError) as exc:
        raise StoreError(
            f"cannot connect to the database at {redact_dsn(dsn)}: {describe(exc)}"
        ) from exc
    return pool


async def connect(dsn: str, settings: Database) -> Connection:
    """One connection, for commands (migrate, user add)."""
    try:
        conn: Connection = await asyncpg.connect(
            dsn, timeout=settings.connect_timeout, command_timeout=settings.command_timeout
        )
    except (*UNREACHABLE, asyncpg.PostgresError) as exc:
        raise StoreError(
            f"cannot connect to the database at {redact_dsn(dsn)}: {describe(exc)}"
        ) from exc
    await _init_connection(conn)
    return conn
