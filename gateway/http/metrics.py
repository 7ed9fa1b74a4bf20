"""The application's metrics: a Prometheus registry per application (no process-global state),
with counters of proxied answers by status class, refreshes by outcome, rejected CORS origins,
configuration reloads and rate-limit refusals, and gauges of the revocation feed and of the
rate limits' Redis. ``web/metrics.py`` serves them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class FeedState(Protocol):
    """What the metrics read of the revocation feed (``store.revocations.RevocationFeed``)."""

    @property
    def up(self) -> bool: ...

    @property
    def reconnects(self) -> int: ...

    def down_for(self) -> float: ...


class SharedBucketsState(Protocol):
    """What the metrics read of the rate limits' Redis (``ratelimit.shared.SharedBuckets``)."""

    @property
    def up(self) -> bool: ...

    @property
    def outages(self) -> int: ...

    @property
    def unchecked(self) -> int: ...


class LimiterState(Protocol):
    """What the metrics read of the rate limiter (``ratelimit.limiter.RateLimiter``)."""

    @property
    def refused(self) -> Mapping[str, int]: ...

    @property
    def shared(self) -> SharedBucketsState | None: ...


class LimiterCollector(Collector):
    """The limiter's own counts, read at every scrape (the hot path only adds to integers)."""

    def __init__(self, limiter: LimiterState) -> None:
        self._limiter = limiter

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "gateway_rate_limited",
            "Requests refused with 429 by a rate limit, by what was limited (client, route)",
            labels=["scope"],
        )
        for scope, count in sorted(self._limiter.refused.items()):
            refused.add_metric([scope], float(count))
        yield refused
        shared = self._limiter.shared
        if shared is None:
            return
        yield GaugeMetricFamily(
            "gateway_rate_limit_redis_up",
            "1 while the rate limits' Redis answers in time, 0 during an outage (fail open)",
            value=1.0 if shared.up else 0.0,
        )
        yield CounterMetricFamily(
            "gateway_rate_limit_redis_outages",
            "Times the rate limits' Redis stopped answering in time",
            value=float(shared.outages),
        )
        yield CounterMetricFamily(
            "gateway_rate_limit_unchecked",
            "Requests admitted without a rate-limit check because Redis did not answer",
            value=float(shared.unchecked),
        )


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

    def watch_limiter(self, limiter: LimiterState) -> None:
        """Rate-limit refusals and the state of its Redis, read at every scrape."""
        self.registry.register(LimiterCollector(limiter))

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
