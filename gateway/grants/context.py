"""What a grant needs: long-lived services (``Authority``) and one request's view (``Context``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.clock import Budget, Clock
from gateway.config.loader import Config
from gateway.config.model import GatewaySettings
from gateway.passwords import Passwords
from gateway.ratelimit.limiter import RateLimiter
from gateway.store.pool import BoundedPool
from gateway.tokens.jwt import Verifier
from gateway.tokens.keys import KeyRing
from gateway.tokens.remote import RemoteKey
from gateway.tokens.seal import Sealer, derive_key

COOKIE_KEY_INFO = "gateway cookie key v1"

# The published keys of an issuer (remote_keys).
RemoteKeys = Callable[[str], Awaitable[dict[str, RemoteKey]]]


class KeysAt(Protocol):
    """The keys published at a key URL; with ``kid``, fetched again when that key is unknown."""

    async def __call__(
        self, url: str, kid: str | None = None, *, must_answer: bool = False
    ) -> dict[str, RemoteKey]: ...


# An OpenID provider's discovery document (validated: its issuer is the one asked for).
Discover = Callable[[str], Awaitable[dict[str, Any]]]


class ExternalCall(Protocol):
    """POST a form to an external provider's endpoint (with HTTP Basic client authentication
    when ``auth`` is given); the JSON object of its 200 answer, or ``ExternalCallError``.
    ``body_ignored``: any 200 will do, its body is not read as JSON (RFC 7009 revocation)."""

    async def __call__(
        self,
        url: str,
        form: dict[str, str],
        *,
        auth: tuple[str, str] | None = None,
        body_ignored: bool = False,
    ) -> dict[str, Any]: ...


class ExternalCallError(Exception):
    """An external provider's endpoint could not be reached or gave no usable answer.
    ``error``: the OAuth error code it answered with (a 400 or 401 with a JSON body), else None
    (unreachable, slow, a 5xx): a refusal versus an outage."""

    def __init__(self, reason: str, error: str | None = None) -> None:
        super().__init__(reason)
        self.error = error


async def _no_external_calls(
    url: str,
    form: dict[str, str],
    *,
    auth: tuple[str, str] | None = None,
    body_ignored: bool = False,
) -> dict[str, Any]:
    raise ExternalCallError("external calls are not configured")


async def _no_discovery(issuer: str) -> dict[str, Any]:
    raise ExternalCallError("external calls are not configured")


@dataclass
class Authority:
    """Services shared by every request of one process."""

    pool: BoundedPool  # every statement of a request answers within database.request_timeout
    passwords: Passwords
    master: Sealer
    keyring: KeyRing
    remote_keys: RemoteKeys
    master_secret: bytes = b""
    external_call: ExternalCall = _no_external_calls
    remote_keys_at: KeysAt | None = None
    discover: Discover = _no_discovery
    clock: Clock = field(default_factory=Clock)
    # Rate-limit buckets (in this process, or shared through Redis: app.py makes it).
    limiter: RateLimiter = field(default_factory=RateLimiter)
    _verifier: tuple[Config, KeyRing, Verifier] | None = None
    _cookie_sealer: tuple[Config, Sealer] | None = None

    def cookie_sealer(self, config: Config) -> Sealer:
        """Seals cookies: ``cookies.keys`` (first seals, all unseal), else a key derived from the
        master key."""
        cached = self._cookie_sealer
        if cached is not None and cached[0] is config:
            return cached[1]
        keys = [
            (key.kid, derive_key(key.secret.get_secret_value().encode(), COOKIE_KEY_INFO))
            for key in config.gateway.cookies.keys
        ] or [("m", derive_key(self.master_secret, COOKIE_KEY_INFO))]
        sealer = Sealer(keys)
        self._cookie_sealer = (config, sealer)
        return sealer

    def verifier(self, config: Config) -> Verifier:
        """A verifier for this configuration's issuer and the current key ring, cached."""
        cached = self._verifier
        if cached is not None and cached[0] is config and cached[1] is self.keyring:
            return cached[2]
        verifier = Verifier(self.keyring, config.gateway.public_issuer(), self.clock.time)
        self._verifier = (config, self.keyring, verifier)
        return verifier

    async def verify_password(self, password_hash: str | None, password: str) -> bool:
        """argon2 is slow on purpose: run it off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.passwords.verify, password_hash, password)

    async def hash_password(self, password: str) -> str:
        """A new password's argon2id hash, off the event loop (slow on purpose)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.passwords.hash, password)


@dataclass(frozen=True)
class Context:
    """One request: the configuration snapshot it started with and who is asking."""

    authority: Authority
    config: Config
    now: int  # the application's clock when the request came (authority.clock)
    ip: str | None = None
    user_agent: str | None = None
    # What this request may still spend waiting for the database (None: each statement gets
    # database.request_timeout of its own).
    budget: Budget | None = None
    # The authenticated client's throttle keys, when the grant's own statement is to check its
    # lock (the token endpoint's one-statement grants: grants/token.py LOCK_IN_STATEMENT).
    client_lock: tuple[str, ...] = ()

    @property
    def settings(self) -> GatewaySettings:
        return self.config.gateway

    @property
    def issuer(self) -> str:
        return self.config.gateway.public_issuer()

    @property
    def own_origin(self) -> str:
        scheme, _, rest = self.issuer.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"

    @property
    def audience(self) -> str:
        return self.config.gateway.tokens.audience or self.issuer

    @property
    def db(self) -> BoundedPool:
        pool = self.authority.pool
        return pool.within(self.budget) if self.budget is not None else pool

    def verifier(self) -> Verifier:
        return self.authority.verifier(self.config)

    def endpoint(self, path: str) -> str:
        return f"{self.issuer}{path}"

    def log_fields(self) -> dict[str, Any]:
        return {"ip": self.ip}
