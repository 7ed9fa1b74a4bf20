"""Composition root: ``create_app`` wires configuration, resources and routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import keys
from gateway.config.holder import ConfigHolder
from gateway.passwords import Passwords
from gateway.store.pool import create_pool
from gateway.web import health
from gateway.web.errors import error_middleware, set_common_headers

log = logging.getLogger(__name__)


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.CONFIG].current.gateway.database
    pool = await create_pool(app[keys.DATABASE_URL], settings)
    app[keys.POOL] = pool
    yield
    await pool.close()


def create_app(holder: ConfigHolder, *, database_url: str) -> web.Application:
    """The gateway application for the configuration in ``holder`` and the database at
    ``database_url`` (migrated beforehand by ``gateway serve`` or ``gateway migrate``)."""
    config = holder.current.gateway
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=config.limits.body_max,
    )
    app[keys.CONFIG] = holder
    app[keys.DATABASE_URL] = database_url
    app[keys.PASSWORDS] = Passwords()
    app.cleanup_ctx.append(_database)
    app.on_response_prepare.append(set_common_headers)
    app.router.add_routes(health.routes)
    return app
