"""Fixtures: a real PostgreSQL (never a mock), a cloned database per test module, configuration
directories and the application under test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import asyncpg
import pytest
import uvloop
from aiohttp import web
from pytest_aiohttp.plugin import AiohttpClient

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from gateway.store.users import user_add
from tests.support import (
    ROOT,
    USERS,
    Client,
    GatewayTestServer,
    create_database,
    drop_database,
    dsn_with_database,
    ensure_template,
    light_passwords,
    run_sync,
    write_conf,
)


def pytest_asyncio_loop_factories(config: object, item: object) -> dict[str, object]:
    """Tests run on uvloop, like `gateway serve`: its transports differ from asyncio's."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """A DSN with the right to create databases: ``GATEWAY_TEST_DATABASE_URL`` or embedded."""
    url = os.environ.get("GATEWAY_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from gateway.store.embedded import start_embedded

    embedded = start_embedded(ROOT / "var" / "test-pgdata")
    try:
        yield embedded.dsn
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def template_db(pg_admin_dsn: str) -> str:
    from gateway.store.migrate import schema_checksum

    name = f"gw_tmpl_{schema_checksum()[:16]}"
    run_sync(ensure_template(pg_admin_dsn, name))
    return name


@pytest.fixture(scope="module")
def database_url(pg_admin_dsn: str, template_db: str) -> Iterator[str]:
    """A migrated database of its own for each test module."""
    name = run_sync(create_database(pg_admin_dsn, template_db))
    try:
        yield dsn_with_database(pg_admin_dsn, name)
    finally:
        run_sync(drop_database(pg_admin_dsn, name))


@pytest.fixture(scope="module")
def users(database_url: str) -> dict[str, str]:
    """alice, bob and carol (locked) in this module's database: name -> user id."""

    async def create() -> dict[str, str]:
        conn = await asyncpg.connect(database_url)
        passwords = light_passwords()
        ids = {}
        try:
            for name, (password, email, display) in USERS.items():
                existing = await conn.fetchval(
                    "SELECT id FROM auth.users WHERE username = $1", name
                )
                ids[name] = str(
                    existing or await user_add(conn, name, passwords.hash(password), email, display)
                )
            await conn.execute("UPDATE auth.users SET locked = true WHERE username = 'carol'")
        finally:
            await conn.close()
        return ids

    result: dict[str, str] = run_sync(create())
    return result


@pytest.fixture
def empty_database_url(pg_admin_dsn: str) -> Iterator[str]:
    """A database with nothing in it, for migration tests."""
    name = run_sync(create_database(pg_admin_dsn, None))
    try:
        yield dsn_with_database(pg_admin_dsn, name)
    finally:
        run_sync(drop_database(pg_admin_dsn, name))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def conf_path(tmp_path: Path) -> Path:
    """A copy of the sample configuration in a temporary directory."""
    return write_conf(tmp_path / "conf")


@pytest.fixture
def holder(conf_path: Path) -> ConfigHolder:
    return ConfigHolder(load_config(conf_path, environ={}))


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, holder: ConfigHolder, database_url: str) -> Client:
    return await start_client(aiohttp_client, create_app(holder, database_url=database_url))


async def start_client(aiohttp_client: AiohttpClient, app: web.Application) -> Client:
    """A test client whose server runs as ``gateway serve`` runs it (``GatewayTestServer``)."""
    server = GatewayTestServer(app)
    await server.start_server()
    # pytest-aiohttp types the client of any BaseTestServer as TestClient[_Request, None] (no
    # application); this server is a TestServer, whose client has the application.
    return cast(Client, await aiohttp_client(server))
