"""Checking a user's password, with throttling per account and per client address.

Wrong password, unknown user and locked account answer identically, and an unknown user still
costs one argon2 verification, so neither the answer nor its timing tells whether an account
exists (SECURITY-CHECKLIST items 137-140).
"""

from __future__ import annotations

from gateway.grants.context import Context
from gateway.oauth.errors import InvalidGrantError, SlowDownError
from gateway.store import sessions as store
from gateway.store import throttle
from gateway.store.sessions import Account

WRONG_CREDENTIALS = "the user name or password is wrong"


def login_throttle_keys(ctx: Context, username: str) -> tuple[str, ...]:
    keys = [f"acct:{username.lower()}"]
    if ctx.ip:
        keys.append(f"ip:{ctx.ip}")
    return tuple(keys)


async def check_password(
    ctx: Context,
    username: str,
    password: str,
    *,
    client_id: str | None = None,
    origin: str = "form",
) -> Account:
    """The account whose password this is (the attempt counted first, see 040_throttle.sql).
    A wrong one is audited (``login.failure``, with ``client_id`` and ``origin``: ``form``,
    ``password``, ``invitation``); the success is audited by the sign-in that follows."""
    limits = ctx.settings.limits
    keys = login_throttle_keys(ctx, username)
    thresholds = (limits.login_failures_per_account, limits.login_failures_per_ip)[: len(keys)]
    wait = await throttle.throttle_attempt(
        ctx.db, keys, thresholds, limits.login_lock_seconds, ctx.ip, ctx.user_agent
    )
    if wait:
        raise SlowDownError("too many failed sign-in attempts; try again later", retry_after=wait)
    account = await store.user_lookup(ctx.db, username) if len(username) <= 320 else None
    usable_hash = account.password_hash if account is not None and not account.locked else None
    ok = await ctx.authority.verify_password(usable_hash, password)
    if not ok or account is None or usable_hash is None:
        await store.login_failure(
            ctx.db,
            user_id=account.user_id if account is not None else None,
            login=username,
            client_id=client_id,
            origin=origin,
            ip=ctx.ip,
            user_agent=ctx.user_agent,
        )
        raise InvalidGrantError(WRONG_CREDENTIALS)
    await throttle.throttle_success(ctx.db, keys[:1], keys[1:], thresholds[1:])
    return account
