"""``GET /metrics`` (Prometheus text format), for loopback and trusted proxies only.

A registry per application (no process-global state): counters of proxied answers by status
class, refreshes by outcome, rejected CORS origins and configuration reloads.
"""

from __future__ import annotations

import ipaddress
from typing import Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from gateway.keys import CONFIG
from gateway.web.forwarded import client_address, is_trusted

routes = web.RouteTableDef()


class FeedState(Protocol):
    """What the metrics read of the revocation feed (``store.revocations.RevocationFeed``)."""

    @property
    def up(self) -> bool: ...

    @property
    def reconnects(self) -> int: ...

    def down_for(self) -> float: ...


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.proxied = Counter(
            "gateway_proxied_responses",
            "Answers to proxied requests, by status class",
            ["status"],
            registry=self.registry,
        )
        # One child per status class, resolved once: ``labels()`` on every request costs a lock.
        self.proxied_by_class = {
            name: self.proxied.labels(name) for name in ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
        }
        self.refreshes = Counter(
            "gateway_refreshes",
            "Transparent refreshes by the token handler, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.cors_rejected = Counter(
            "gateway_cors_rejected_origins",
            "Cross-origin requests from origins that are not allowed",
            registry=self.registry,
        )
        self.reloads = Counter(
            "gateway_config_reloads",
            "Configuration reloads, by result",
            ["result"],
            registry=self.registry,
        )

    def watch_feed(self, feed: FeedState) -> None:
        """Gauges of the revocation feed, read at every scrape."""
        Gauge(
            "gateway_revocation_feed_up",
            "1 while this process listens for revocations, 0 while it reconnects",
            registry=self.registry,
        ).set_function(lambda: 1.0 if feed.up else 0.0)
        Gauge(
            "gateway_revocation_feed_down_seconds",
            "Seconds this process has gone without the revocation feed (0 while listening)",
            registry=self.registry,
        ).set_function(feed.down_for)
        Gauge(
            "gateway_revocation_feed_reconnects",
            "Times the revocation feed has reconnected since the process started",
            registry=self.registry,
        ).set_function(lambda: float(feed.reconnects))


METRICS = web.AppKey("metrics", Metrics)


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
