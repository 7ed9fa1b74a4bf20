"""``GET /metrics`` (Prometheus text format), for loopback and trusted proxies only."""

from __future__ import annotations

import ipaddress

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.http.forwarded import client_address, is_trusted
from gateway.http.metrics import METRICS
from gateway.keys import CONFIG

routes = web.RouteTableDef()


def _local(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    settings = request.app[CONFIG].current.gateway
    client = client_address(request, settings)
    if not (_local(client) or is_trusted(client, settings)):
        raise web.HTTPNotFound(reason="no route for this path")
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
