"""Client authentication (RFC 6749 section 2.3) against the configured clients.

Unknown clients and wrong secrets fail identically (``invalid_client``, 401), the comparison is
constant-time, and failures are throttled per client id and per client address (section 2.3.1:
"MUST protect ... against brute force attacks"). Only failures are counted: secrets are high
entropy and checked in microseconds, and a client's own parallel requests must never be refused.
A locked client is refused even with the right secret (SECURITY-CHECKLIST item 141): checked
here, or, with ``check_lock=False``, by the grant's own statement (``Context.client_lock``), so
a successful grant costs one database round trip, not two.
A client registered with a ``token_endpoint_auth_method`` must use that method and no other
(OIDC Core section 9).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from gateway.config.loader import Client
from gateway.config.model import effective_rate_limit
from gateway.grants.context import Context
from gateway.oauth.errors import InvalidClientError, SlowDownError, UnauthorizedClientError
from gateway.oauth.rfc6749 import ClientCredentials
from gateway.ratelimit.limiter import address_key
from gateway.store import throttle

_DUMMY = hashlib.sha256(b"no such client").digest()


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def throttle_keys(ctx: Context, client_id: str) -> tuple[str, ...]:
    keys = [f"client:{client_id}"]
    if ctx.ip:
        keys.append(f"client-ip:{ctx.ip}")
    return tuple(keys)


async def authenticate_client(
    ctx: Context, creds: ClientCredentials, *, check_lock: bool = True
) -> Client:
    """The client the request authenticates as, or ``invalid_client``. ``check_lock=False``:
    the caller's grant checks the lock in its own statement (``Context.client_lock``)."""
    if creds.client_id is None:
        raise InvalidClientError("client authentication is required")
    keys = throttle_keys(ctx, creds.client_id)
    limits = ctx.settings.limits
    thresholds = (limits.client_failures, limits.client_failures_per_ip)[: len(keys)]
    if check_lock:
        await _refuse_when_locked(ctx, keys)
    client = ctx.config.client(creds.client_id)
    if not _credentials_match(client, creds):
        if not check_lock:
            await _refuse_when_locked(ctx, keys)  # a locked client's failures are not counted
        await throttle.throttle_failure(
            ctx.db, keys, thresholds, limits.client_lock_seconds, ctx.ip, ctx.user_agent
        )
        raise InvalidClientError(
            "client authentication failed", challenge=creds.method == "client_secret_basic"
        )
    assert client is not None
    if client.config.allowed_ips and not _ip_allowed(ctx.ip, client):
        raise UnauthorizedClientError("this client may not be used from this address")
    return client


async def _refuse_when_locked(ctx: Context, keys: tuple[str, ...]) -> None:
    wait = await throttle.throttle_check(ctx.db, keys)
    if wait:
        raise SlowDownError("too many failed client authentications", retry_after=wait)


async def admit_client(ctx: Context, client: Client) -> None:
    """Take one request from the client's bucket (README, "Rate limits"): its ``rate_limit``,
    else ``rate_limits.client_default``; one bucket for its token, revocation and introspection
    requests (a public client's: per client address). Over the limit: ``slow_down``, 429 with
    ``Retry-After`` (RFC 6585 section 4)."""
    limit = effective_rate_limit(client.config.rate_limit, ctx.settings.rate_limits.client_default)
    if limit is None:
        return
    key = f"client:{client.client_id}"
    if client.config.is_public:
        # Anyone can name a public client: one bucket for all would let anyone use up every
        # user's budget. A bucket per client and address instead.
        key = f"{key}:ip:{address_key(ctx.ip)}"
    authority = ctx.authority
    wait = await authority.limiter.take("client", key, limit, authority.clock.time())
    if wait:
        raise SlowDownError("too many requests from this client; retry later", retry_after=wait)


def _credentials_match(client: Client | None, creds: ClientCredentials) -> bool:
    if client is None:
        hmac.compare_digest(_DUMMY, _digest(creds.secret or ""))
        return False
    registered = client.config.token_endpoint_auth_method
    if registered is not None and creds.method != registered:
        # Right secret, wrong way of sending it: fails as a wrong secret would (OIDC Core 9).
        hmac.compare_digest(_DUMMY, _digest(creds.secret or ""))
        return False
    configured = client.config.client_secret
    if configured is None:  # public client: identifies itself, presents no secret
        return creds.secret is None
    if creds.secret is None:
        return False
    return hmac.compare_digest(_digest(configured.get_secret_value()), _digest(creds.secret))


def _ip_allowed(ip: str | None, client: Client) -> bool:
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in client.config.allowed_ips)
