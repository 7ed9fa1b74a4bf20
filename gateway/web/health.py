"""``/healthz`` (the process answers) and ``/readyz`` (database reachable, config loaded)."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp import web

from gateway.keys import CONFIG, POOL
from gateway.store.errors import UNREACHABLE

routes = web.RouteTableDef()
READY_TIMEOUT = 2.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    holder = request.config_dict[CONFIG]
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await request.config_dict[POOL].fetchval("SELECT 1")
    except (*UNREACHABLE, asyncpg.PostgresError):
        return web.json_response(
            {"status": "unavailable", "reason": "database unreachable"},
            status=503,
            headers={"Cache-Control": "no-store", "Retry-After": "5"},
        )
    return web.json_response(
        {"status": "ready", "config_generation": holder.generation},
        headers={"Cache-Control": "no-store"},
    )
