"""Composition root: ``create_app`` wires configuration, resources and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import keys
from gateway.authority import build_master, ensure_signing_keys
from gateway.config.holder import ConfigHolder
from gateway.errors import GatewayError
from gateway.grants.context import Authority
from gateway.passwords import Passwords
from gateway.store.clients import sync_configured_clients
from gateway.store.pool import create_pool
from gateway.web import authorize, discovery, health, logout, token, tokens
from gateway.web.cors import cors_middleware, setup_cors
from gateway.web.errors import error_middleware, set_common_headers
from gateway.web.remote_keys import remote_key_cache

log = logging.getLogger(__name__)
KEY_REFRESH_SECONDS = 300.0


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.CONFIG].current.gateway.database
    pool = await create_pool(app[keys.DATABASE_URL], settings)
    app[keys.POOL] = pool
    yield
    await pool.close()


async def _authority(app: web.Application) -> AsyncIterator[None]:
    holder = app[keys.CONFIG]
    pool = app[keys.POOL]
    secret, master = build_master(holder.current)
    await sync_configured_clients(pool, holder.current.clients, app[keys.PASSWORDS])
    ring = await ensure_signing_keys(pool, holder.current, master)
    async with remote_key_cache(holder) as remote:
        authority = Authority(
            pool=pool,
            passwords=app[keys.PASSWORDS],
            master=master,
            keyring=ring,
            remote_keys=remote.get,
            master_secret=secret,
        )
        app[keys.AUTHORITY] = authority

        async def refresh_keys() -> None:
            while True:
                await asyncio.sleep(KEY_REFRESH_SECONDS)
                try:
                    authority.keyring = await ensure_signing_keys(pool, holder.current, master)
                except (GatewayError, OSError, ValueError) as exc:
                    log.warning("cannot reload signing keys: %s", exc)

        task = asyncio.create_task(refresh_keys())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(holder: ConfigHolder, *, database_url: str) -> web.Application:
    """The gateway application for the configuration in ``holder`` and the database at
    ``database_url`` (migrated beforehand by ``gateway serve`` or ``gateway migrate``)."""
    config = holder.current.gateway
    app = web.Application(
        middlewares=[cors_middleware, error_middleware],
        client_max_size=config.limits.body_max,
    )
    app[keys.CONFIG] = holder
    app[keys.DATABASE_URL] = database_url
    app[keys.PASSWORDS] = Passwords()
    setup_cors(app)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_authority)
    app.on_response_prepare.append(set_common_headers)
    for module in (health, discovery, token, tokens, authorize, logout):
        app.router.add_routes(module.routes)
    return app
