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


BATCH = 10_000  # rows of each kind per transaction
MAX_ROUNDS = 1_000


async def housekeep_config(db: Executor, config: Config) -> tuple[dict[str, int], bool]:
    """Everything that is over, batch after batch, with the configured retention: rows deleted
    by kind, and whether it finished (False: another process held or took the lock).

    Retention is never shorter than the revocation horizon: a revoked session or family must
    outlive every access token it covers, since token handlers reload revocations from these
    rows when they start (``daemon.revocations_since``)."""
    settings = config.gateway.database
    keep = max(settings.housekeeping_keep, config.revocation_horizon)
    total: dict[str, int] = {}
    for _ in range(MAX_ROUNDS):
        deleted = await housekeep(
            db, keep=keep, audit_days=settings.audit_retention_days, batch=BATCH
        )
        if not deleted:
            return total, False
        for kind, count in deleted.items():
            total[kind] = total.get(kind, 0) + count
        if max(deleted.values()) < BATCH:
            return total, True
    return total, False


def describe_deleted(deleted: dict[str, int]) -> str:
    """``3 sessions, 12 codes``: the kinds with something deleted, or ``nothing``."""
    return ", ".join(f"{count} {kind}" for kind, count in deleted.items() if count) or "nothing"
