"""Deleting what is over: the store function named after ``daemon.housekeep``."""

from __future__ import annotations

from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


async def housekeep(db: Executor, *, keep: int, audit_days: int, batch: int) -> dict[str, int]:
    """``daemon.housekeep``: rows deleted by kind; empty when another process holds the lock."""
    with sql_errors():
        rows = await db.fetch(
            "SELECT kind, deleted FROM daemon.housekeep($1, $2, $3)", keep, audit_days, batch
        )
    return {row["kind"]: int(row["deleted"]) for row in rows}


def describe_deleted(deleted: dict[str, int]) -> str:
    """``3 sessions, 12 codes``: the kinds with something deleted, or ``nothing``."""
    return ", ".join(f"{count} {kind}" for kind, count in deleted.items() if count) or "nothing"
