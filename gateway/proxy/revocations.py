"""Which sessions and token families have been revoked, known to every process without a database
call on the request path: loaded at start, then kept current through ``LISTEN``.

An entry is kept for as long as an access token issued before the revocation can live; when the
listener's connection drops, it reconnects and reloads what it may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import asyncpg

from gateway.errors import StoreError
from gateway.store import revocations as store
from gateway.store.errors import UNREACHABLE

log = logging.getLogger(__name__)
RECONNECT_SECONDS = 2.0


class Revocations:
    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        self._revoked: dict[str, float] = {}
        self.listening = False
        self._waiters: list[asyncio.Event] = []

    def add(self, kind: str, ident: str) -> None:
        self._revoked[f"{kind}:{ident}"] = time.monotonic() + self.horizon
        for event in self._waiters:
            event.set()
        if len(self._revoked) > 100_000:
            now = time.monotonic()
            self._revoked = {k: v for k, v in self._revoked.items() if v > now}

    def is_revoked(self, claims: Mapping[str, Any]) -> bool:
        for kind, claim in (("s", "sid"), ("f", "gid")):
            value = claims.get(claim)
            if value is not None:
                expiry = self._revoked.get(f"{kind}:{value}")
                if expiry is not None and expiry > time.monotonic():
                    return True
        return False

    def changed(self) -> asyncio.Event:
        """An event set at the next revocation (for WebSocket watchers)."""
        event = asyncio.Event()
        self._waiters.append(event)
        return event

    def forget(self, event: asyncio.Event) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(event)

    async def run(self, dsn: str) -> None:
        """Listen for revocations until cancelled, reconnecting after failures."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn, timeout=5, command_timeout=5)
                await store.listen(conn, self.add)
                for kind, ident in await store.revocations_since(conn, self.horizon):
                    self.add(kind, str(ident))
                self.listening = True
                while not conn.is_closed():
                    await asyncio.sleep(1.0)
                    async with asyncio.timeout(5):  # a silent partition must not hang us
                        await conn.execute("SELECT 1")
            except (StoreError, *UNREACHABLE, asyncpg.PostgresError, TimeoutError) as exc:
                if self.listening:
                    log.warning(
                        "revocation listener lost its connection: %s", exc.__class__.__name__
                    )
            finally:
                self.listening = False
                if conn is not None and not conn.is_closed():
                    await conn.close()
            await asyncio.sleep(RECONNECT_SECONDS)


@contextlib.asynccontextmanager
async def revocation_listener(dsn: str, horizon: int) -> AsyncIterator[Revocations]:
    revocations = Revocations(horizon)
    task = asyncio.create_task(revocations.run(dsn))
    try:
        yield revocations
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
