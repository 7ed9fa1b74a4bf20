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
        """issuer -> key URL, for the apps trusted for JWT bearer assertions."""
        sources: dict[str, str] = {}
        for apps in self._holder.current.external_providers.values():
            for app in apps.values():
                url = app.keys_url
                if url and app.trusted_for_assertions:
                    for issuer in app.issuers:
                        sources.setdefault(issuer, url)
        return sources

    def _urls(self) -> set[str]:
        """Every key URL of every provider file (assertion issuers and sign-in providers)."""
        return {
            url
            for apps in self._holder.current.external_providers.values()
            for app in apps.values()
            if (url := app.keys_url)
        }

    async def get(self, issuer: str) -> dict[str, RemoteKey]:
        """The keys of an issuer listed in a provider file (the first file's key URL wins)."""
        url = self._sources().get(issuer)
        return await self.at(url) if url else {}

    async def at(self, url: str) -> dict[str, RemoteKey]:
        """The keys published at ``url``: cached, refetched after 30 min, retried after 5 s."""
        now = time.monotonic()
        fresh = now - self._fetched.get(url, -REFRESH_SECONDS) < REFRESH_SECONDS
        if url in self._keys and fresh:
            return self._keys[url]
        if now - self._failed.get(url, -RETRY_SECONDS) < RETRY_SECONDS:
            return self._keys.get(url, {})
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            if time.monotonic() - self._fetched.get(url, -REFRESH_SECONDS) >= REFRESH_SECONDS:
                await self._fetch(url)
        return self._keys.get(url, {})

    async def _fetch(self, url: str) -> None:
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise ValueError(f"status {response.status}")
                body = await _bounded_body(response)
            keys = parse_key_document(json.loads(body))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._failed[url] = time.monotonic()
            log.warning("cannot fetch the keys at %s: %s", url, exc.__class__.__name__)
            return
        self._keys[url] = keys
        self._fetched[url] = time.monotonic()
        self._failed.pop(url, None)

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
            urls = self._urls()
            for url in urls:
                self._fetched.pop(url, None)
                self._failed.pop(url, None)
                await self.at(url)
            failed = any(url in self._failed for url in urls)
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
