"""Wake-ups by ``NOTIFY``: one connection per process listening on a channel, so work queued by
any replica (a mail, a back-channel logout) is picked up at once rather than at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping

import asyncpg

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 5.0
HEARTBEAT_SECONDS = 5.0
HEARTBEAT_TIMEOUT = 5.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
APPLICATION_NAME = "gateway outbox wake-ups"  # as pg_stat_activity shows the connection


class Listener:
    """A connection of its own, listening: connect, ``connected(conn)`` (LISTEN, and whatever
    must follow it), then a heartbeat every ``heartbeat_seconds`` (a stalled server counts as a
    lost connection); after any failure a new connection with doubling, jittered backoff, for
    as long as the process runs. Subclasses say what connecting means (``connected``) and what
    to report (``went_up``, ``lost``, ``went_down``). The revocation feed and the wake-ups of the
    mail and back-channel logout senders are listeners."""

    heartbeat_seconds = HEARTBEAT_SECONDS

    def __init__(self, dsn: str, application_name: str) -> None:
        self._dsn = dsn
        self._application_name = application_name  # as pg_stat_activity shows the connection

    async def connected(self, conn: asyncpg.Connection) -> None:
        """Listen on ``conn`` (within the connect timeout)."""
        raise NotImplementedError

    def went_up(self) -> None:
        """Listening now."""

    def lost(self, exc: BaseException) -> None:
        """The connection failed (called while still counted as up)."""

    def went_down(self) -> None:
        """No longer listening (after ``lost``, or a connection that never came up)."""

    async def run(self) -> None:
        """Listen until cancelled; reconnect with backoff after any failure."""
        backoff = BACKOFF_FIRST
        while True:
            conn: asyncpg.Connection | None = None
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT + HEARTBEAT_TIMEOUT):
                    conn = await asyncpg.connect(
                        self._dsn,
                        timeout=CONNECT_TIMEOUT,
                        command_timeout=HEARTBEAT_TIMEOUT,
                        server_settings={"application_name": self._application_name},
                    )
                    await self.connected(conn)
                self.went_up()
                backoff = BACKOFF_FIRST
                while not conn.is_closed():
                    await asyncio.sleep(self.heartbeat_seconds)
                    async with asyncio.timeout(HEARTBEAT_TIMEOUT):  # a stalled server, too
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.lost(exc)
            finally:
                self.went_down()
                if conn is not None:
                    conn.terminate()  # never waits on the server, never raises
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
            backoff = min(backoff * 2, BACKOFF_MAX)


class Wakeups(Listener):
    """One connection listening on every channel of ``channels``: each notification calls its
    channel's wake function, and every one is called each time the connection is
    (re)established, since a notification may have been missed while it was down. The senders
    poll as well, so a lost connection delays work by at most a poll interval; this connection
    only makes the usual case immediate. One per process, for all the outboxes."""

    def __init__(
        self,
        dsn: str,
        channels: Mapping[str, Callable[[], None]],
        *,
        application_name: str = APPLICATION_NAME,
    ) -> None:
        super().__init__(dsn, application_name)
        self._channels = dict(channels)
        self.up = False

    async def connected(self, conn: asyncpg.Connection) -> None:
        for channel in self._channels:
            await conn.add_listener(channel, self._notified)

    def went_up(self) -> None:
        self.up = True
        for wake in self._channels.values():
            wake()

    def lost(self, exc: BaseException) -> None:
        if self.up:
            log.warning("outbox wake-ups lost their connection: %s", type(exc).__name__)

    def went_down(self) -> None:
        self.up = False

    def _notified(self, _conn: object, _pid: int, channel: str, _payload: object) -> None:
        wake = self._channels.get(channel)
        if wake is not None:
            wake()


@contextlib.asynccontextmanager
async def listening(wakeups: Wakeups) -> AsyncIterator[Wakeups]:
    """Run ``wakeups`` for the duration of the block."""
    task = asyncio.create_task(wakeups.run())
    try:
        yield wakeups
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
