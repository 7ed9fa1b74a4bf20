"""Client connections: what aiohttp's server does not bound by itself.

* A request head must arrive within ``limits.head_timeout`` of its first byte; a client that
  trickles one (slowloris) gets ``408`` and a closed connection.
* A connection with nothing to say closes after ``limits.idle_timeout`` (aiohttp's keep-alive
  timer, which it also starts when a connection opens).
* Each process holds at most ``limits.max_connections`` client connections; one beyond that gets
  ``503`` with ``Retry-After`` at once and is closed, so the process never runs out of file
  descriptors (``raise_file_limit`` lifts the soft limit to the hard one at start).

``GatewayRunner`` serves an application with these rules: ``gateway serve`` uses it, and so do
the tests, so they see what production does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)
FD_RESERVE = 256  # descriptors kept for the database pool, upstreams, files and the listener
REFUSAL_LOG_INTERVAL = 10.0


def _raw_answer(status: str, error: str, description: str, extra: str = "") -> bytes:
    body = json.dumps({"error": error, "error_description": description}).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
        f"{extra}Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


HEAD_TIMEOUT_ANSWER = _raw_answer(
    "408 Request Timeout", "request_timeout", "the request head did not arrive in time"
)
OVER_CAPACITY_ANSWER = _raw_answer(
    "503 Service Unavailable",
    "temporarily_unavailable",
    "too many connections; retry later",
    "Retry-After: 1\r\n",
)


class GatewayRequestHandler(RequestHandler):
    """aiohttp's connection protocol, plus the head timeout and the connection cap."""

    def __init__(self, manager: GatewayServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = manager
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._last_body: Any = None  # the body stream of the last request head parsed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limits = self._limits
        if limits.open_connections() >= limits.max_connections:
            self._refused = True
            limits.refuse()
            write = getattr(transport, "write", None)
            if write is not None:
                write(OVER_CAPACITY_ANSWER)
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        count = self._request_count
        between = self._between_requests()  # judged before these bytes complete any body
        super().data_received(data)
        if self._request_count != count:
            self._stop_head_timer()  # a head is complete
            if self._messages:
                self._last_body = self._messages[-1][1]
        elif data and self._head_timer is None and between:
            # The first bytes of a head that is not complete yet.
            self._head_timer = self._loop.call_later(self._limits.head_timeout, self._head_late)

    def _between_requests(self) -> bool:
        """No request is being handled or waiting, and the last one's body has all arrived:
        new bytes can only be the next head (body bytes never start the head timer)."""
        body = self._last_body
        return (
            not self._request_in_progress and not self._messages and (body is None or body.is_eof())
        )

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or self._request_in_progress:
            return
        transport.write(HEAD_TIMEOUT_ANSWER)
        self.force_close()


class GatewayServer(web.Server):
    """aiohttp's ``Server`` making ``GatewayRequestHandler`` connections."""

    head_timeout: float = 15.0
    max_connections: int = 10_000
    refused: int = 0
    _refusal_logged: float = 0.0

    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)

    def open_connections(self) -> int:
        return len(self._connections)  # ``connections`` copies the list: not on every accept

    def refuse(self) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL:
            self._refusal_logged = now
            log.warning(
                "connection refused: %d connections open, the limit (%d refused so far)",
                self.max_connections,
                self.refused,
            )


class GatewayRunner(web.AppRunner):
    """An ``AppRunner`` whose server applies the head timeout and the connection cap."""

    def __init__(
        self,
        app: web.Application,
        *,
        head_timeout: float,
        max_connections: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._head_timeout = head_timeout
        self._max_connections = max_connections

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GatewayServer  # the same object, making our connections
        assert isinstance(server, GatewayServer)
        server.head_timeout = self._head_timeout
        server.max_connections = self._max_connections
        return server


def raise_file_limit() -> int:
    """Lift the soft limit on open files to the hard one; the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("cannot raise the open-file limit above %d", soft)
    return soft


def connection_cap(configured: int, file_limit: int) -> int:
    """At most ``configured`` client connections, and never so many that a proxied request
    (a client and an upstream connection each) could run out of descriptors."""
    return max(16, min(configured, (file_limit - FD_RESERVE) // 2))
