"""One connection pool per upstream origin, closed with the application.

Plain requests use the lean keep-alive client of ``gateway.proxy.client``; WebSocket upgrades use
one ``aiohttp.ClientSession`` per origin.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

from gateway.config.model import Route
from gateway.proxy.client import UpstreamPool


class Upstreams:
    def __init__(self) -> None:
        self._pools: dict[str, UpstreamPool] = {}
        self._by_upstream: dict[str, UpstreamPool] = {}
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def pool(self, route: Route) -> UpstreamPool:
        """The pool of the route's upstream origin (routes to one origin share it)."""
        pool = self._by_upstream.get(route.upstream)
        if pool is None:
            parts = urlsplit(route.upstream)
            origin = f"{parts.scheme}://{parts.netloc}"
            pool = self._pools.get(origin)
            if pool is None:
                port = parts.port or (443 if parts.scheme == "https" else 80)
                pool = UpstreamPool(parts.scheme, parts.hostname or "", port)
                self._pools[origin] = pool
            self._by_upstream[route.upstream] = pool
        return pool

    def session(self, route: Route) -> aiohttp.ClientSession:
        parts = urlsplit(route.upstream)
        key = f"{parts.scheme}://{parts.netloc}"
        session = self._sessions.get(key)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
            self._sessions[key] = session
        return session

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._by_upstream.clear()
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
