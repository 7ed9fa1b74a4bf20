"""Deleting what is over: the store function named after ``daemon.housekeep``."""

from __future__ import annotations

from gateway.config.loader import Config
from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


async def housekeep(db: Executor, *, keep: int, audit_days: int, batch: int) -> dict[str, int]:
    """``daemon.housekeep``: rows deleted by kind; empty when another process holds the lock."""
    with sql_errors():
        rows = await db.fetch(
            "SELECT kind, deleted FROM daemon.housekeep($1, $2, $3)", keep, audit_days, batch
        )
    return {row["kind"]: int(row["deleted"]) for row in rows}


async def housekeep_config(db: Executor, config: Config, batch: int) -> dict[str, int]:
    """``housekeep`` with the configured retention, never shorter than the revocation horizon: a
    revoked session or family must outlive every access token it covers, since token handlers
    reload revocations from these rows when they start (``daemon.revocations_since``)."""
    settings = config.gateway.database
    return await housekeep(
        db,
        keep=max(settings.housekeeping_keep, config.revocation_horizon),
        audit_days=settings.audit_retention_days,
        batch=batch,
    )


def describe_deleted(deleted: dict[str, int]) -> str:
    """``3 sessions, 12 codes``: the kinds with something deleted, or ``nothing``."""
    return ", ".join(f"{count} {kind}" for kind, count in deleted.items() if count) or "nothing"
