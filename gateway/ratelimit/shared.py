"""Buckets shared by every replica through Redis, with aiocache's Redis backend.

One bucket is one Redis string (its TAT, see ``bucket.py``) that expires when the bucket is full
again. aiocache has no atomic read-modify-write, so the update is a Lua script run with
``EVALSHA`` through aiocache's ``raw`` (its underlying redis-py client): Redis runs a script
alone, so replicas updating one bucket at once each see the other's result.

Redis must answer within ``rate_limits.redis_timeout`` (a few milliseconds). When it does not
(down, stalled, refusing), limits fail open: the request is admitted unchecked. The first
failure starts an outage: one WARNING, and no request touches Redis until a background probe
(every ``PROBE_INTERVAL`` seconds) gets an answer again, which ends the outage with an INFO line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from typing import Any

from aiocache import RedisCache
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from gateway.config.model import RateLimit, RedisServer

log = logging.getLogger(__name__)

# KEYS[1]: the bucket; ARGV: now (s), 1/rate (s), burst. Returns "0" (admitted, counted) or the
# seconds to wait, as a string (Redis would truncate a Lua number to an integer). Mirrors
# bucket.admit.
SCRIPT = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then
  tat = math.max(tonumber(stored), now)
end
local wait = tat + interval - burst * interval - now
if wait > 0 then
  return tostring(wait)
end
local ttl = math.max(1, math.ceil((tat + interval - now) * 1000))
redis.call('SET', KEYS[1], string.format('%.6f', tat + interval), 'PX', ttl)
return '0'
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()
PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 1.0  # connecting and each reply, for the probe (requests get redis_timeout)
FAILURES = (RedisError, OSError, TimeoutError)


def redis_cache(server: RedisServer) -> Any:
    """aiocache's Redis backend for ``server``: no retries (an outage is handled here), bounded
    connects and reads, named connections (``CLIENT LIST`` shows "gateway-rate-limits")."""
    pool_options: dict[str, Any] = {
        "socket_timeout": PROBE_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
        "client_name": "gateway-rate-limits",
    }
    if server.username is not None:
        pool_options["username"] = server.username
    return RedisCache(
        endpoint=server.host,
        port=server.port,
        db=server.db,
        password=server.password,
        ssl=server.tls,
        create_connection_timeout=PROBE_TIMEOUT,
        timeout=None,  # each call is bounded by the caller (asyncio.timeout)
        connection_pool_kwargs=pool_options,
    )


MISSES = 3  # late answers in a row that make an outage


class SharedBuckets:
    """Buckets in Redis; ``take`` returns None (not checked: admit) during an outage."""

    def __init__(self, server: RedisServer, *, prefix: str, timeout: float) -> None:
        self.prefix = prefix
        self.timeout = timeout
        self.cache = redis_cache(server)
        self.where = f"{server.host}:{server.port}"
        self.up = True
        self.outages = 0  # outages since the process started
        self.unchecked = 0  # requests admitted without a check (during outages)
        self._down_since = 0.0
        self._misses = 0  # consecutive updates without an answer in time
        self._down = asyncio.Event()
        self._prober: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and load the script (within ``PROBE_TIMEOUT``); an unreachable Redis starts
        an outage, not an error: the gateway serves, unlimited, until Redis answers."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self._load()
        except FAILURES as exc:
            self._fail(exc)
        self._prober = asyncio.create_task(self._probe_loop())

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        with contextlib.suppress(*FAILURES):
            # aiocache's close() calls redis-py's deprecated close(): the same, without the
            # warning.
            await self.cache.client.aclose()

    async def take(self, key: str, limit: RateLimit, now: float) -> float | None:
        """0.0 (admitted), seconds to wait (refused), or None (Redis did not answer: admit)."""
        if not self.up:
            self.unchecked += 1
            return None
        args = (1, self.prefix + key, f"{now:.6f}", repr(1.0 / limit.rate), limit.capacity)
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    answer = await self.cache.raw("evalsha", SCRIPT_SHA, *args)
                except NoScriptError:  # a restarted or flushed Redis: load it again
                    await self._load()
                    answer = await self.cache.raw("evalsha", SCRIPT_SHA, *args)
        except FAILURES as exc:
            # One late answer (a busy event loop, a GC pause) lets this request through; only
            # MISSES in a row are an outage that turns the limits off until Redis answers.
            self._misses += 1
            if self._misses >= MISSES or not isinstance(exc, TimeoutError):
                self._fail(exc)
            self.unchecked += 1
            return None
        self._misses = 0
        return float(answer)

    async def _load(self) -> None:
        loaded = await self.cache.raw("script_load", SCRIPT)
        if isinstance(loaded, bytes):
            loaded = loaded.decode()
        if loaded != SCRIPT_SHA:  # pragma: no cover - Redis computes the same SHA-1
            raise RedisError("the rate-limit script was stored under another digest")

    def _fail(self, exc: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        self.outages += 1
        self._down_since = time.monotonic()
        self._down.set()
        reason = str(exc)[:200] or "no answer in time"
        log.warning(
            "Redis at %s is unavailable (%s: %s): rate limits are not applied until it answers",
            self.where,
            type(exc).__name__,
            reason,
        )

    async def _probe_loop(self) -> None:
        while True:
            await self._down.wait()
            await asyncio.sleep(PROBE_INTERVAL)
            # Connections of the outage may be half-open: start from fresh ones.
            with contextlib.suppress(*FAILURES):
                await self.cache.client.connection_pool.disconnect()
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await self._load()
            except FAILURES:
                continue
            self._down.clear()
            self._misses = 0
            self.up = True
            log.info(
                "Redis at %s answers again after %.0f s: rate limits apply again",
                self.where,
                time.monotonic() - self._down_since,
            )
