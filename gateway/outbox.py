"""The sender of an outbox table, in one process: what the mail sender and the back-channel
logout sender share.

Each round claims a batch of due rows (a lease, ``FOR UPDATE SKIP LOCKED`` in the outbox's SQL, so
replicas never hold one row at once), sends them side by side and records each outcome; a
backlog is worked through batch after batch (bounded per wake-up). The sender wakes at its
``NOTIFY`` channel (``wake``) and every ``poll_interval`` seconds (retries that came due); while the
database is unavailable it backs off (doubling, jittered, at most ``BACKOFF_MAX``). ``stop`` lets
the sends under way finish within a grace, then gives back the rows still held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from gateway.errors import GatewayError
from gateway.store.wakeups import Wakeups, listening

log = logging.getLogger(__name__)
MAX_BATCHES = 50  # per wake-up; the next wake-up goes on where this one stopped
BACKOFF_MAX = 30.0  # seconds between tries while the database is unavailable
RELEASE_TIMEOUT = 2.0  # for giving back every row still held, when stopping


class Claimed(Protocol):
    @property
    def id(self) -> UUID: ...


class Settings(Protocol):
    @property
    def poll_interval(self) -> float: ...


C = TypeVar("C", bound=Claimed)
S = TypeVar("S", bound=Settings)


class OutboxSender(Generic[C, S]):
    """``run`` until ``stop``; ``wake`` to look now. A subclass says what its rows are:
    ``settings`` (read at every round: a reload applies), ``claim``, ``send`` (attempt and record
    one row, then ``done``), ``release`` (give one back) and ``grace`` (how long a stop waits)."""

    name = "outbox sender"  # in log lines
    batch = 10  # rows claimed, and sent side by side, at a time

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._stopping = False
        # Claimed, outcome not recorded yet: given back when the sender stops.
        self._holding: dict[UUID, C] = {}

    def wake(self) -> None:
        self._wake.set()

    def settings(self) -> S:
        raise NotImplementedError

    async def claim(self, settings: S) -> Sequence[C]:
        raise NotImplementedError

    async def send(self, claimed: C, settings: S) -> None:
        """Attempt one row and record the outcome; call ``done(claimed)`` once it is no
        longer to be given back."""
        raise NotImplementedError

    async def release(self, claimed: C) -> None:
        """Give one row back unsent (its lease ends now)."""
        raise NotImplementedError

    def grace(self, sending: bool) -> float:
        """Seconds a stop lets the round under way finish: sends (``sending``), or a claim."""
        return RELEASE_TIMEOUT

    async def catch_up(self, settings: S) -> None:
        """Work owed from an earlier round (before each round; raises while it cannot)."""

    async def stopped(self) -> None:
        """After the rows held are given back (within ``RELEASE_TIMEOUT``)."""

    def done(self, claimed: C) -> None:
        self._holding.pop(claimed.id, None)

    async def run(self) -> None:
        """Send due rows until ``stop``; never ends otherwise."""
        failures = 0
        database_down = False
        while not self._stopping:
            settings = self.settings()
            self._wake.clear()
            try:
                await self.catch_up(settings)
                await self._drain(settings)
            except GatewayError as exc:  # the database: unreachable, too slow, refusing
                if not database_down:
                    log.warning("%s cannot use the database (%s); retrying", self.name, exc)
                database_down = True
                failures += 1
            except Exception:
                # Not one of ours: asyncpg, say, confused by a connection cut mid-statement.
                log.exception("%s failed; retrying", self.name)
                failures += 1
            else:
                if database_down:
                    log.info("%s uses the database again", self.name)
                database_down = False
                failures = 0
            delay = settings.poll_interval
            if failures:
                delay = min(BACKOFF_MAX, settings.poll_interval * 2**failures)
                delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _drain(self, settings: S) -> None:
        """Claim and send batch after batch while rows are due (bounded per wake-up)."""
        for _ in range(MAX_BATCHES):
            if self._stopping:
                return
            claimed = await self.claim(settings)
            self._holding.update((c.id, c) for c in claimed)
            if not claimed or self._stopping:  # stopping: ``stop`` gives them back
                return
            await asyncio.gather(*(self.send(c, settings) for c in claimed))
            if len(claimed) < self.batch:
                return
        self._wake.set()  # a backlog (after an outage): go on at once, after a look around

    async def stop(self, task: asyncio.Task[Any]) -> None:
        """Let the sends under way finish (``grace``), then give back the rows still held."""
        self._stopping = True
        self._wake.set()  # a sleeping sender ends at once
        await asyncio.wait({task}, timeout=self.grace(bool(self._holding)))
        if not task.done():  # a send past the grace, or a database that does not answer
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        held = list(self._holding.values())
        self._holding.clear()
        with contextlib.suppress(GatewayError, TimeoutError):
            async with asyncio.timeout(RELEASE_TIMEOUT):
                for claimed in held:
                    await self.release(claimed)
                await self.stopped()


@contextlib.asynccontextmanager
async def running(senders: Mapping[str, OutboxSender[Any, Any]], dsn: str) -> AsyncIterator[None]:
    """Run each sender, woken by ``NOTIFY`` on its channel (the mapping's key) through one
    listening connection for all of them, for the duration of the block; stop them all after."""
    async with listening(Wakeups(dsn, {channel: s.wake for channel, s in senders.items()})):
        tasks = {channel: asyncio.create_task(s.run()) for channel, s in senders.items()}
        try:
            yield
        finally:
            await asyncio.gather(*(s.stop(tasks[channel]) for channel, s in senders.items()))
