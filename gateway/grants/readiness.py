"""Whether this process should get traffic (``/readyz``): the database answers, and the process
hears revocations (a replica deaf to them for long would serve sessions that ended elsewhere)."""

from __future__ import annotations

from gateway.grants.revoked import Revocations
from gateway.store.pool import Pool, database_answers

DATABASE_TIMEOUT = 2.0
# Longer than a reconnect takes: deaf for this long, the process reports itself unready.
FEED_GRACE = 5.0


async def unready_reason(pool: Pool, revocations: Revocations) -> str | None:
    """Why the process is not ready, or None when it is."""
    feed = revocations.feed
    if feed is not None and not feed.loaded:
        # Until then a session ended a moment ago elsewhere would be honoured here.
        return "the recent revocations are not loaded yet"
    if feed is not None and feed.down_for() > FEED_GRACE:
        return f"not listening for revocations for {feed.down_for():.0f} s"
    if not await database_answers(pool, DATABASE_TIMEOUT):
        return "database unreachable"
    return None
