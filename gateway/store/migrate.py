"""Forward-only schema migrations and re-applied functions.

``sql/migrations/NNNN_name.sql`` run once each, in order, each in its own transaction, recorded in
``gateway_meta.migration`` with a checksum: an applied file that changed afterwards is an error
(forward-only: add a new migration instead). ``sql/functions/*.sql`` are ``CREATE OR REPLACE`` and
re-applied whenever their combined checksum differs from the one recorded, so a second run with
the same files changes nothing.

Everything runs under a session advisory lock, so two processes starting at once apply each
migration exactly once: the second waits, then finds nothing to do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from gateway.errors import StoreError
from gateway.store.errors import sql_errors

MIGRATION_LOCK_ID = 0x6761_7465_7761_7901  # "gateway" + 1
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS gateway_meta;
CREATE TABLE IF NOT EXISTS gateway_meta.migration (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS gateway_meta.state (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass
class MigrationResult:
    applied: list[str] = field(default_factory=list)
    functions_updated: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.applied) or self.functions_updated

    def summary(self) -> str:
        if not self.changed:
            return "database is up to date"
        parts = []
        if self.applied:
            parts.append("applied " + ", ".join(self.applied))
        if self.functions_updated:
            parts.append("functions updated")
        return "; ".join(parts)


def sql_dir() -> Path:
    """The ``sql/`` directory: inside the installed package, or beside it in a checkout."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "_sql"
    if packaged.is_dir():
        return packaged
    return here.parent / "sql"


def read_migrations(directory: Path) -> list[Migration]:
    migrations = []
    for path in sorted((directory / "migrations").glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise StoreError(f"{path}: migration files are named NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), path.stem, path.read_text("utf-8")))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise StoreError("two migration files share a version number")
    return migrations


def read_functions(directory: Path) -> tuple[list[tuple[str, str]], str]:
    files = [
        (p.name, p.read_text("utf-8")) for p in sorted((directory / "functions").glob("*.sql"))
    ]
    digest = hashlib.sha256()
    for name, text in files:
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return files, digest.hexdigest()


def schema_checksum(directory: Path | None = None) -> str:
    """One checksum over every SQL file; tests name their template database after it."""
    directory = directory or sql_dir()
    digest = hashlib.sha256()
    for m in read_migrations(directory):
        digest.update(m.checksum.encode())
    digest.update(read_functions(directory)[1].encode())
    return digest.hexdigest()


async def migrate(conn: asyncpg.Connection, directory: Path | None = None) -> MigrationResult:
    """Bring the database up to date with ``sql/``. Safe to run concurrently and repeatedly."""
    directory = directory or sql_dir()
    migrations = read_migrations(directory)
    functions, functions_checksum = read_functions(directory)
    result = MigrationResult()
    with sql_errors():
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        try:
            await conn.execute(_BOOTSTRAP)
            applied = {
                row["version"]: (row["name"], row["checksum"])
                for row in await conn.fetch(
                    "SELECT version, name, checksum FROM gateway_meta.migration"
                )
            }
            known = {m.version for m in migrations}
            newer = sorted(v for v in applied if v not in known)
            if newer:
                raise StoreError(
                    f"the database has migrations this gateway does not know ({newer}); "
                    "run a newer gateway"
                )
            for migration in migrations:
                if migration.version in applied:
                    if applied[migration.version][1] != migration.checksum:
                        raise StoreError(
                            f"migration {migration.name} changed after it was applied; "
                            "migrations are forward-only: add a new one instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO gateway_meta.migration (version, name, checksum) "
                        "VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                result.applied.append(migration.name)

            recorded = await conn.fetchval(
                "SELECT value FROM gateway_meta.state WHERE key = 'functions_checksum'"
            )
            if recorded != functions_checksum:
                async with conn.transaction():
                    for _name, text in functions:
                        await conn.execute(text)
                    await conn.execute(
                        "INSERT INTO gateway_meta.state (key, value) "
                        "VALUES ('functions_checksum', $1) ON CONFLICT (key) "
                        "DO UPDATE SET value = excluded.value, updated_at = now()",
                        functions_checksum,
                    )
                result.functions_updated = True
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return result
