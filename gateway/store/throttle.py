"""Brute-force throttling (``sql/functions/040_throttle.sql``): passwords count each attempt
before the slow check; client and session secrets count failures only."""

from __future__ import annotations

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


async def throttle_attempt(
    db: Executor,
    keys: tuple[str, ...],
    thresholds: tuple[int, ...],
    base_seconds: int,
    ip: str | None = None,
    user_agent: str | None = None,
) -> int:
    """``daemon.throttle_attempt``: seconds to wait (the attempt is refused), or 0 (counted).
    ``ip`` and ``user_agent`` go to the audit event of a key it locks."""
    with sql_errors():
        wait = await db.fetchval(
            "SELECT daemon.throttle_attempt($1, $2, $3, $4, $5)",
            list(keys),
            list(thresholds),
            base_seconds,
            ip,
            user_agent,
        )
    return int(wait)


async def throttle_check(db: Executor, keys: tuple[str, ...]) -> int:
    """``daemon.throttle_check``: seconds until the keys are unlocked, 0 when none is locked."""
    with sql_errors():
        wait = await db.fetchval("SELECT daemon.throttle_check($1)", list(keys))
    return int(wait)


async def throttle_failure(
    db: Executor,
    keys: tuple[str, ...],
    thresholds: tuple[int, ...],
    base_seconds: int,
    ip: str | None = None,
    user_agent: str | None = None,
) -> None:
    """``daemon.throttle_failure``: count a failure, locking keys that reach their threshold
    (audited with ``ip`` and ``user_agent``)."""
    with sql_errors():
        await db.execute(
            "SELECT daemon.throttle_failure($1, $2, $3, $4, $5)",
            list(keys),
            list(thresholds),
            base_seconds,
            ip,
            user_agent,
        )


async def throttle_success(
    db: Executor, clear: tuple[str, ...], refund: tuple[str, ...], thresholds: tuple[int, ...]
) -> None:
    with sql_errors():
        await db.execute(
            "SELECT daemon.throttle_success($1, $2, $3)",
            list(clear),
            list(refund),
            list(thresholds),
        )
