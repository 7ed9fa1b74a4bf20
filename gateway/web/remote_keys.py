"""Calls to external providers: their keys (``jwks_uri`` / ``cert_uri``) for JWT bearer assertions
and ID tokens, and their token endpoints (``post_form``) for signing in with a provider.

Cached per issuer; refreshed every 30 minutes by a background task and on demand when an issuer has
no keys yet; after a failure the next attempt waits 5 seconds (the reference's heartbeat). Bounded:
5 s timeout, no redirects, at most 1 MiB.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote_plus

import aiohttp

from gateway.clock import Now
from gateway.config.holder import ConfigHolder
from gateway.grants.context import ExternalCallError
from gateway.tokens.remote import REFRESH_SECONDS, RETRY_SECONDS, RemoteKey, parse_key_document

log = logging.getLogger(__name__)
MAX_DOCUMENT = 1048576


class RemoteKeyCache:
    def __init__(
        self, holder: ConfigHolder, session: aiohttp.ClientSession, now: Now = time.time
    ) -> None:
        self._now = now  # the application's clock: tests move it instead of waiting
        self._holder = holder
        self._session = session
        self._keys: dict[str, dict[str, RemoteKey]] = {}
        self._fetched: dict[str, float] = {}
        self._failed: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._metadata: dict[str, tuple[float, dict[str, Any]]] = {}

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

    async def at(
        self, url: str, kid: str | None = None, *, must_answer: bool = False
    ) -> dict[str, RemoteKey]:
        """The keys published at ``url``: cached, refetched after 30 min, retried after 5 s.
        With ``kid``: a key id the cache does not know is fetched again (the provider rotated
        its keys), at most every 5 seconds. ``must_answer``: when the last fetch failed and
        the keys asked for are not known, ``ExternalCallError`` (the provider is down) rather
        than the keys as they are (which refuse the token)."""
        if not self._stale(url, kid):
            return self._keys[url]
        if self._now() - self._failed.get(url, -RETRY_SECONDS) >= RETRY_SECONDS:
            async with self._locks.setdefault(url, asyncio.Lock()):
                if self._stale(url, kid):
                    await self._fetch(url)
        keys = self._keys.get(url, {})
        unknown = not keys or (kid is not None and kid not in keys)
        if must_answer and unknown and url in self._failed:
            raise ExternalCallError("the provider's keys cannot be fetched")
        return keys

    def _stale(self, url: str, kid: str | None) -> bool:
        keys = self._keys.get(url)
        age = self._now() - self._fetched.get(url, -REFRESH_SECONDS)
        if keys is None or age >= REFRESH_SECONDS:
            return True
        return kid is not None and kid not in keys and age >= RETRY_SECONDS

    async def discover(self, issuer: str) -> dict[str, Any]:
        """``{issuer}/.well-known/openid-configuration`` (OpenID Connect Discovery 1.0): cached
        for 30 minutes; its ``issuer`` must be exactly the one asked for (section 4.3). When it
        cannot be fetched again, the provider is down: ``ExternalCallError`` (for 5 s without
        asking again), so a sign-in says so at once instead of sending the browser there."""
        now = self._now()
        cached = self._metadata.get(issuer)
        if cached is not None and now - cached[0] < REFRESH_SECONDS:
            return cached[1]
        if now - self._failed.get(issuer, -RETRY_SECONDS) < RETRY_SECONDS:
            raise ExternalCallError("the provider's discovery failed a moment ago")
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise ValueError(f"status {response.status}")
                document = json.loads(await _bounded_body(response))
            if not isinstance(document, dict) or document.get("issuer") != issuer:
                raise ValueError("its issuer is not the one configured")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._failed[issuer] = self._now()
            log.warning("cannot read the discovery document of %s: %s", issuer, exc)
            raise ExternalCallError(f"discovery failed: {exc.__class__.__name__}") from None
        self._metadata[issuer] = (self._now(), document)
        self._failed.pop(issuer, None)
        return document

    async def _fetch(self, url: str) -> None:
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise ValueError(f"status {response.status}")
                body = await _bounded_body(response)
            keys = parse_key_document(json.loads(body))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._failed[url] = self._now()
            log.warning("cannot fetch the keys at %s: %s", url, exc.__class__.__name__)
            return
        self._keys[url] = keys
        self._fetched[url] = self._now()
        self._failed.pop(url, None)

    async def post_form(
        self,
        url: str,
        form: dict[str, str],
        *,
        auth: tuple[str, str] | None = None,
        body_ignored: bool = False,
    ) -> dict[str, Any]:
        """POST ``form`` to ``url`` and return the JSON object of a 200 answer; anything else
        (a status, a redirect, a non-JSON or oversized body, a timeout) is ``ExternalCallError``,
        with the OAuth ``error`` code of a 400/401 answer that has one. ``body_ignored``: a
        200 is enough, whatever its body (RFC 7009 section 2.2: the content is ignored)."""
        headers = {"Accept": "application/json"}
        if auth is not None:
            headers["Authorization"] = basic_authorization(*auth)
        try:
            async with self._session.post(
                url, data=form, headers=headers, allow_redirects=False
            ) as response:
                body = await _bounded_body(response)
                if response.status != 200:
                    raise ExternalCallError(
                        f"status {response.status}", _error_code(response.status, body)
                    )
            if body_ignored:
                return {}
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


def basic_authorization(client_id: str, secret: str) -> str:
    """RFC 6749 section 2.3.1: each part form-encoded, then Basic."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _error_code(status: int, body: bytes) -> str | None:
    if status not in (400, 401):
        return None
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, str) and error.isascii() and len(error) < 64 else None


async def _bounded_body(response: aiohttp.ClientResponse) -> bytes:
    body = b""
    async for chunk in response.content.iter_chunked(65536):
        body += chunk
        if len(body) > MAX_DOCUMENT:
            raise ValueError("document too large")
    return body


@contextlib.asynccontextmanager
async def remote_key_cache(
    holder: ConfigHolder, now: Now = time.time
) -> AsyncIterator[RemoteKeyCache]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        cache = RemoteKeyCache(holder, session, now)
        task = asyncio.create_task(cache.heartbeat())
        try:
            yield cache
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
