"""Revoked sessions and token families: the recent ones, and the feed of new ones.

Every revocation is announced with ``NOTIFY gateway_revocation '<kind>:<id>'`` by the daemon
functions. ``RevocationFeed`` keeps one connection listening for them, in every process, for as
long as the process runs: any failure (a stalled or restarted server, a refused connection, an
error while closing) means reconnecting with backoff and reloading what may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from uuid import UUID

import asyncpg

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor
from gateway.store.wakeups import CONNECT_TIMEOUT, Listener

log = logging.getLogger(__name__)
CHANNEL = "gateway_revocation"
APPLICATION_NAME = "gateway revocation feed"  # as pg_stat_activity shows the connection
HEARTBEAT_SECONDS = 1.0  # a revocation feed notices a lost connection within a second or so
STARTUP_WAIT = CONNECT_TIMEOUT  # seconds a starting process waits for the first load

Revoked = Callable[[str, str], None]


async def revocations_since(db: Executor, seconds: int) -> list[tuple[str, UUID]]:
    with sql_errors():
        rows = await db.fetch("SELECT * FROM daemon.revocations_since($1)", seconds)
    return [(row["kind"], row["id"]) for row in rows]


async def listen(conn: asyncpg.Connection, callback: Revoked) -> None:
    """Call ``callback(kind, id)`` for every revocation announced on ``conn``."""

    def on_notify(_conn: object, _pid: int, _channel: str, payload: object) -> None:
        kind, _, ident = str(payload).partition(":")
        if kind in ("s", "f") and ident:
            callback(kind, ident)

    with sql_errors():
        await conn.add_listener(CHANNEL, on_notify)


class RevocationFeed(Listener):
    """One listening connection that never gives up (``Listener``).

    ``down_for()`` says how long the process has gone without it (from the start until the
    first connection, and after every loss): while it is down, revocations made by other
    processes are not seen, so readiness reports it and a balancer can take the replica out.
    """

    heartbeat_seconds = HEARTBEAT_SECONDS

    def __init__(self, dsn: str, horizon: Callable[[], int], on_revoked: Revoked) -> None:
        super().__init__(dsn, APPLICATION_NAME)
        self._horizon = horizon
        self._on_revoked = on_revoked
        self._down_since: float | None = time.monotonic()
        self.reconnects = 0
        self._loaded = asyncio.Event()  # the recent revocations have been read at least once

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    async def wait_loaded(self, seconds: float) -> bool:
        """Wait (at most ``seconds``) until the recent revocations are read."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._loaded.wait()
        return self.loaded

    @property
    def up(self) -> bool:
        return self._down_since is None

    def down_for(self) -> float:
        """Seconds since the feed was last listening (0 while it listens)."""
        return 0.0 if self._down_since is None else time.monotonic() - self._down_since

    async def connected(self, conn: asyncpg.Connection) -> None:
        await listen(conn, self._on_revoked)
        # Listening first, then the reload: nothing revoked in between is missed.
        for kind, ident in await revocations_since(conn, self._horizon()):
            self._on_revoked(kind, str(ident))
        self._loaded.set()

    def went_up(self) -> None:
        if self._down_since is not None:
            log.info("revocation feed listening (down %.1f s)", self.down_for())
        self._down_since = None

    def lost(self, exc: BaseException) -> None:
        if self._down_since is None:
            log.warning("revocation feed lost its connection: %s", _describe(exc))

    def went_down(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
        self.reconnects += 1


def _describe(exc: BaseException) -> str:
    return exc.__class__.__name__ if not str(exc) else f"{exc.__class__.__name__}: {exc}"[:200]


@contextlib.asynccontextmanager
async def following(feed: RevocationFeed) -> AsyncIterator[RevocationFeed]:
    """Run ``feed`` for the duration of the block (an application's cleanup context)."""
    task = asyncio.create_task(feed.run())
    try:
        # Serve nothing before the recent revocations are known, unless the database does not
        # answer (then /readyz says why until it does).
        await feed.wait_loaded(STARTUP_WAIT)
        yield feed
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
