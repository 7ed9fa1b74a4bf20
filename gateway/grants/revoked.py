"""Which sessions and token families have been revoked, known to every process without a database
call on the request path: loaded at start, then kept current by the store's ``RevocationFeed``
(wired in ``app.py``). Both faces read it: the token handler refuses revoked tokens, sign-out
adds to it at once.

An entry is kept for as long as an access token issued before the revocation can live.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from gateway.store.revocations import RevocationFeed, following


class Revocations:
    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        self._revoked: dict[str, float] = {}
        self._waiters: list[asyncio.Event] = []
        self.feed: RevocationFeed | None = None

    @property
    def listening(self) -> bool:
        return self.feed is not None and self.feed.up

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


@contextlib.asynccontextmanager
async def revocation_listener(dsn: str, horizon: int) -> AsyncIterator[Revocations]:
    """The revocations of this process, fed from the database while the block runs."""
    revocations = Revocations(horizon)
    feed = RevocationFeed(dsn, lambda: revocations.horizon, revocations.add)
    revocations.feed = feed
    async with following(feed):
        yield revocations
