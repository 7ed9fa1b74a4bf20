"""Wake-ups by ``NOTIFY``: one connection per process listening on a channel, so work queued by
any replica (a mail, a back-channel logout) is picked up at once rather than at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable

import asyncpg

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 5.0
HEARTBEAT_SECONDS = 5.0
HEARTBEAT_TIMEOUT = 5.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


class Wakeups:
    """One connection listening on ``channel``: ``wake()`` is called at every
    notification, and each time the connection is (re)established, since a notification may
    have been missed while it was down. The senders poll as well, so a lost connection delays
    work by at most a poll interval; this connection only makes the usual case immediate."""

    def __init__(
        self, dsn: str, wake: Callable[[], None], *, channel: str, application_name: str
    ) -> None:
        self._dsn = dsn
        self._wake = wake
        self._channel = channel
        self._application_name = application_name
        self.up = False

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
                    await conn.add_listener(self._channel, self._notified)
                self.up = True
                self._wake()
                backoff = BACKOFF_FIRST
                while not conn.is_closed():
                    await asyncio.sleep(HEARTBEAT_SECONDS)
                    async with asyncio.timeout(HEARTBEAT_TIMEOUT):  # a stalled server, too
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.up:
                    log.warning(
                        "%s wake-ups lost their connection: %s",
                        self._channel,
                        exc.__class__.__name__,
                    )
            finally:
                self.up = False
                if conn is not None:
                    conn.terminate()  # never waits on the server, never raises
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _notified(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake()


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
