"""Calls to external providers: their keys (``jwks_uri`` / ``cert_uri``) for JWT bearer assertions
and ID tokens, and their token endpoints (``post_form``) for signing in with a provider.

Cached per issuer; refreshed every 30 minutes by a background task and on demand when an issuer has
no keys yet; after a failure the next attempt waits 5 seconds (the reference's heartbeat). Bounded:
5 s timeout, no redirects, at most 1 MiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from gateway.config.holder import ConfigHolder
from gateway.grants.context import ExternalCallError
from gateway.tokens.remote import REFRESH_SECONDS, RETRY_SECONDS, RemoteKey, parse_key_document

log = logging.getLogger(__name__)
MAX_DOCUMENT = 1048576


class RemoteKeyCache:
    def __init__(self, holder: ConfigHolder, session: aiohttp.ClientSession) -> None:
        self._holder = holder
        self._session = session
        self._keys: dict[str, dict[str, RemoteKey]] = {}
        self._fetched: dict[str, float] = {}
        self._failed: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _sources(self) -> dict[str, str]:
        sources: dict[str, str] = {}
        for apps in self._holder.current.providers.values():
            for app in apps.values():
                url = app.jwks_uri or app.cert_uri or app.auth_provider_x509_cert_url
                if url:
                    for issuer in app.issuers:
                        sources.setdefault(issuer, url)
        return sources

    async def get(self, issuer: str) -> dict[str, RemoteKey]:
        now = time.monotonic()
        fresh = now - self._fetched.get(issuer, -REFRESH_SECONDS) < REFRESH_SECONDS
        if issuer in self._keys and fresh:
            return self._keys[issuer]
        if now - self._failed.get(issuer, -RETRY_SECONDS) < RETRY_SECONDS:
            return self._keys.get(issuer, {})
        lock = self._locks.setdefault(issuer, asyncio.Lock())
        async with lock:
            if time.monotonic() - self._fetched.get(issuer, -REFRESH_SECONDS) >= REFRESH_SECONDS:
                await self._fetch(issuer)
        return self._keys.get(issuer, {})

    async def _fetch(self, issuer: str) -> None:
        url = self._sources().get(issuer)
        if url is None:
            return
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise ValueError(f"status {response.status}")
                body = await _bounded_body(response)
            keys = parse_key_document(json.loads(body))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._failed[issuer] = time.monotonic()
            log.warning("cannot fetch the keys of %s: %s", issuer, exc.__class__.__name__)
            return
        self._keys[issuer] = keys
        self._fetched[issuer] = time.monotonic()
        self._failed.pop(issuer, None)

    async def post_form(self, url: str, form: dict[str, str]) -> dict[str, Any]:
        """POST ``form`` to ``url`` and return the JSON object of a 200 answer; anything else
        (a status, a redirect, a non-JSON or oversized body, a timeout) is ``ExternalCallError``."""
        try:
            async with self._session.post(
                url, data=form, headers={"Accept": "application/json"}, allow_redirects=False
            ) as response:
                body = await _bounded_body(response)
                if response.status != 200:
                    raise ExternalCallError(f"status {response.status}")
            answer = json.loads(body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ExternalCallError(exc.__class__.__name__) from None
        if not isinstance(answer, dict):
            raise ExternalCallError("the answer is not a JSON object")
        return answer

    async def heartbeat(self) -> None:
        """Refresh every configured issuer; retry failed ones after 5 seconds."""
        while True:
            for issuer in list(self._sources()):
                self._fetched.pop(issuer, None)
                self._failed.pop(issuer, None)
                await self.get(issuer)
            failed = any(i in self._failed for i in self._sources())
            await asyncio.sleep(RETRY_SECONDS if failed else REFRESH_SECONDS)


async def _bounded_body(response: aiohttp.ClientResponse) -> bytes:
    body = b""
    async for chunk in response.content.iter_chunked(65536):
        body += chunk
        if len(body) > MAX_DOCUMENT:
            raise ValueError("document too large")
    return body


@contextlib.asynccontextmanager
async def remote_key_cache(holder: ConfigHolder) -> AsyncIterator[RemoteKeyCache]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        cache = RemoteKeyCache(holder, session)
        task = asyncio.create_task(cache.heartbeat())
        try:
            yield cache
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
