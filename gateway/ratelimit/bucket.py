"""Token buckets as the generic cell rate algorithm (GCRA, ITU-T I.371): a bucket is one number,
its "theoretical arrival time" (TAT), the instant at which it would be full again.

A bucket of ``burst`` requests refilled at ``rate`` per second admits a request at ``now`` when
``max(TAT, now) + 1/rate - burst/rate <= now``; the request then moves TAT to
``max(TAT, now) + 1/rate``. A refused request changes nothing and learns how long to wait. An
absent bucket (TAT in the past) is a full one, so buckets are forgotten once full.

    burst 3, rate 1/s, all at t=0:  admit (TAT 1), admit (TAT 2), admit (TAT 3),
                                    refuse (wait 1 s); at t=1 one more is admitted.

``shared.py`` runs the same arithmetic in Redis (its Lua script mirrors ``admit``).
"""

from __future__ import annotations

import itertools

from gateway.config.model import RateLimit

MAX_BUCKETS = 100_000


def admit(tat: float, now: float, interval: float, burst: int) -> tuple[float, float]:
    """``(new TAT, 0.0)`` when a request is admitted; ``(tat, seconds to wait)`` when not."""
    start = max(tat, now)
    wait = start + interval - burst * interval - now
    if wait > 0:
        return tat, wait
    return start + interval, 0.0


class LocalBuckets:
    """This process's buckets: a dictionary of TATs, no I/O. Bounded: past ``MAX_BUCKETS`` keys
    the full buckets are forgotten (losing nothing), then the least recently used tenth, so a
    flood of new keys (many addresses) neither grows memory nor resets the buckets in use."""

    def __init__(self, limit: int = MAX_BUCKETS) -> None:
        self._tat: dict[str, float] = {}
        self._limit = limit

    def take(self, key: str, limit: RateLimit, now: float) -> float:
        """0.0 when the request is admitted (and counted), else the seconds until it would be."""
        tat, wait = admit(self._tat.get(key, 0.0), now, 1.0 / limit.rate, limit.capacity)
        if wait:
            return wait
        if self._tat.pop(key, None) is None and len(self._tat) >= self._limit:
            self._prune(now)
        self._tat[key] = tat  # at the end: the dictionary's order is the order of last use
        return 0.0

    def _prune(self, now: float) -> None:
        self._tat = {k: v for k, v in self._tat.items() if v > now}
        excess = len(self._tat) - self._limit + max(1, self._limit // 10)
        if excess > 0:
            for key in list(itertools.islice(self._tat, excess)):
                del self._tat[key]

    def __len__(self) -> int:
        return len(self._tat)
