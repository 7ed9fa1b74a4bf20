"""What the use cases and the token handler call: ``take`` a request from a bucket.

Buckets live in this process (``LocalBuckets``, no I/O) unless ``redis.url`` is set; then in
Redis (``SharedBuckets``), where every replica and worker shares them.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter

from gateway.config.model import RateLimit
from gateway.ratelimit.bucket import LocalBuckets
from gateway.ratelimit.shared import SharedBuckets

# What a bucket limits, as the metrics label refusals.
SCOPES = ("client", "route")


def address_key(address: str | None) -> str:
    """A client address as a bucket key: IPv4 whole, IPv6 by its /64 (which one host usually
    holds whole, so a host cannot rotate addresses to get fresh buckets)."""
    address = address or ""
    if ":" in address:
        try:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        except ValueError:
            return address
    return address


class RateLimiter:
    def __init__(self, shared: SharedBuckets | None = None) -> None:
        self.local = LocalBuckets()
        self.shared = shared
        self.refused: Counter[str] = Counter(dict.fromkeys(SCOPES, 0))

    async def take(self, scope: str, key: str, limit: RateLimit, now: float) -> int:
        """0 when the request may go on; else the whole seconds to wait (``Retry-After``)."""
        if self.shared is None:
            wait: float | None = self.local.take(key, limit, now)
        else:
            wait = await self.shared.take(key, limit, now)
        if not wait:  # admitted, or not checked (Redis unavailable: fail open)
            return 0
        self.refused[scope] += 1
        return max(1, math.ceil(wait))
