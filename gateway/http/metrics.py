"""The application's metrics: a Prometheus registry per application (no process-global state),
with counters of proxied answers by status class, refreshes by outcome, rejected CORS origins
and configuration reloads, and gauges of the revocation feed. ``web/metrics.py`` serves them."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge


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
