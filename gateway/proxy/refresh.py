"""Transparent refresh, single-flight per refresh token within a process.

Every request that needs a refresh with the same ``__Secure-RT`` waits for one refresh and gets
its result; the result is also remembered for the refresh grace, so a request still carrying the
old cookie a moment later gets the same tokens without another database call. Across replicas the
database's grace handling (``daemon.refresh_token``) makes concurrent refreshes converge on one
successor. The refresh runs in its own task, so a client that disconnects does not cancel it for
the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

from gateway.errors import StoreError
from gateway.grants import bff, sessions
from gateway.grants.bff import ExternalRefresh
from gateway.grants.context import Context
from gateway.grants.issue import GENERATION_CLAIM, TokenResult
from gateway.grants.refresh_token import refresh
from gateway.http.cookies import RefreshCookie
from gateway.oauth.errors import InvalidClientError
from gateway.proxy.expiring import Expiring
from gateway.tokens.external import ExternalTokens

MAX_REMEMBERED = 10_000
log = logging.getLogger(__name__)
# A transparent refresh: the gateway's own tokens, or an external provider's.
Renewed = TokenResult | ExternalTokens


class Refresher:
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Task[Renewed]] = {}
        self._recent: Expiring[str, Renewed] = Expiring(MAX_REMEMBERED)

    async def refresh(self, ctx: Context, cookie: RefreshCookie) -> Renewed:
        key = cookie.token
        remembered = self._recent.get(key, ctx.authority.clock.time())
        if remembered is not None:
            return remembered
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._refresh(ctx, cookie))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _refresh(self, ctx: Context, cookie: RefreshCookie) -> Renewed:
        if cookie.source is not None:
            # Not remembered here: the database keeps the grace of a provider's refresh token
            # from its first refresh, which a recovered successor must not extend.
            external = ExternalRefresh(
                cookie.token, cookie.session_id, cookie.source, cookie.claims
            )
            return await bff.refresh_external(ctx, external)
        client = ctx.config.client(cookie.client_id)
        if client is None:
            raise InvalidClientError("the client of this session is no longer configured")
        result = await refresh(ctx, client, cookie.token, for_token_handler=True)
        now = ctx.authority.clock.time()  # the grace is the database's, on the same clock
        # Never hand out a remembered access token after it expires.
        keep = min(ctx.settings.tokens.refresh_grace, max(result.expires_in - 1, 1))
        self._recent.put(cookie.token, result, now + keep, now)
        return result


class Deliveries:
    """Tells the database, once per process, when a browser presents the access token a
    transparent refresh minted (claim ``rgen``): that response arrived, so the refresh token
    before it can no longer be recovered as lost (sql/functions/060_grants.sql). The write runs
    beside the request, which never waits for it; a failed one only keeps recovery possible."""

    LIMIT = 50_000

    def __init__(self) -> None:
        self._seen: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def note(self, context: Callable[[], Context], claims: Mapping[str, Any]) -> None:
        """``claims`` of a cookie's access token; ``context`` makes the request's context, only
        when there is something to record (the hot path costs two dictionary lookups)."""
        generation, family = claims.get(GENERATION_CLAIM), claims.get("gid")
        key: tuple[str, int]
        if not isinstance(generation, int) or not isinstance(family, str):
            predecessor = claims.get("rph")  # an external provider's refreshed token
            expires = claims.get("exp")
            if not isinstance(predecessor, str) or not isinstance(expires, int):
                return
            # A provider that keeps its refresh token makes the same predecessor again at
            # every refresh: each new access token (its exp) is a delivery of its own.
            family, generation = predecessor, -1
            key = (predecessor, -expires)
        else:
            key = (family, generation)
        if key in self._seen:
            return
        ctx = context()
        if len(self._seen) >= self.LIMIT:
            self._seen.clear()
        self._seen.add(key)
        task = asyncio.get_running_loop().create_task(self._mark(ctx, family, generation, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _mark(self, ctx: Context, family: str, generation: int, key: tuple[str, int]) -> None:
        try:
            if generation == -1:
                await bff.mark_external_delivered(ctx, family)
            else:
                await sessions.mark_delivered(ctx, UUID(family), generation)
        except (StoreError, ValueError) as exc:
            self._seen.discard(key)  # try again on the next request that carries it
            log.debug("could not record a delivered refresh: %s", exc)
