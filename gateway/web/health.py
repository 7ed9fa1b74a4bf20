"""``/healthz`` (the process answers) and ``/readyz`` (``grants.readiness``: the database
answers and the process hears revocations; the configuration is loaded by then)."""

from __future__ import annotations

from aiohttp import web

from gateway.grants.readiness import unready_reason
from gateway.keys import CONFIG, POOL, REVOCATIONS

routes = web.RouteTableDef()
NO_STORE = {"Cache-Control": "no-store"}


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, headers=NO_STORE)


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    app = request.config_dict
    reason = await unready_reason(app[POOL], app[REVOCATIONS])
    if reason is not None:
        return web.json_response(
            {"status": "unavailable", "reason": reason},
            status=503,
            headers={**NO_STORE, "Retry-After": "5"},
        )
    return web.json_response(
        {"status": "ready", "config_generation": app[CONFIG].generation}, headers=NO_STORE
    )
