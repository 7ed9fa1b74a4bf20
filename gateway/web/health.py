"""``/healthz`` (the process answers) and ``/readyz`` (database reachable, config loaded)."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from gateway.errors import StoreError
from gateway.keys import CONFIG, POOL, REVOCATIONS
from gateway.store.errors import UNREACHABLE
from gateway.store.pool import BoundedPool

routes = web.RouteTableDef()
READY_TIMEOUT = 2.0
# Longer than a reconnect takes: a replica that cannot hear revocations for this long would keep
# serving sessions that have ended elsewhere, so it reports itself unready.
FEED_GRACE = 5.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


def _unready(reason: str) -> web.Response:
    return web.json_response(
        {"status": "unavailable", "reason": reason},
        status=503,
        headers={"Cache-Control": "no-store", "Retry-After": "5"},
    )


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    holder = request.config_dict[CONFIG]
    feed = request.config_dict[REVOCATIONS].feed
    if feed is not None and feed.down_for() > FEED_GRACE:
        return _unready(f"not listening for revocations for {feed.down_for():.0f} s")
    try:
        await BoundedPool(request.config_dict[POOL], READY_TIMEOUT).fetchval("SELECT 1")
    except (*UNREACHABLE, asyncpg.PostgresError, StoreError):
        return _unready("database unreachable")
    return web.json_response(
        {"status": "ready", "config_generation": holder.generation},
        headers={"Cache-Control": "no-store"},
    )
