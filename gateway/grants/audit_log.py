"""The audit log as JSON: ``gateway audit --json`` lines and the optional SIEM output (``audit.log:
true``), where each event also becomes one line of the ``gateway.audit`` logger.

Events are made inside SQL, in the transaction of their change, by any process of any replica.
Every process runs ``AuditLogWriter``, which looks for new events every ``audit.log_interval``
seconds; ``daemon.audit_emit`` lets one of them at a time take the next batch (an advisory lock)
and moves a shared cursor (``audit.log_cursor``) in the same transaction as the lines are written,
so each event is written once by one replica (at least once if a writer dies mid-batch). Events
are taken in the order of the transactions that wrote them, once every older transaction has
ended, so a slow transaction's event is never skipped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.config.holder import ConfigHolder
from gateway.errors import GatewayError
from gateway.store import audit as store
from gateway.store.audit import AuditEvent
from gateway.store.pool import Pool

audit_log = logging.getLogger("gateway.audit")
log = logging.getLogger(__name__)
BATCH = 500


def audit_json(event: AuditEvent) -> dict[str, Any]:
    """One event as a JSON object (docs/audit.md): never a secret, since no audit event holds
    one."""
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "type": event.kind,
        "actor": event.actor,
        "user_id": str(event.user_id) if event.user_id else None,
        "user": event.username,
        "client_id": event.client_id,
        "session_id": str(event.session_id) if event.session_id else None,
        "address": event.ip,
        "user_agent": event.user_agent,
        "detail": event.detail,
    }


def write_events(events: list[AuditEvent]) -> None:
    """Each event as one line of the ``gateway.audit`` logger: ``msg`` is the type, ``event``
    the whole event."""
    for event in events:
        audit_log.info(
            "audit %s", event.kind, extra={"fields": {"event": audit_json(event)}, "redacted": True}
        )


class AuditLogWriter:
    """Writes new audit events to the log while ``audit.log`` is true (read at every look, so
    a configuration reload switches it)."""

    def __init__(self, holder: ConfigHolder, pool: Pool) -> None:
        self._holder = holder
        self._pool = pool

    async def run(self) -> None:
        failing = False
        while True:
            settings = self._holder.current.gateway.audit
            written = 0
            if settings.log:
                try:
                    written = await store.emit_audit_events(self._pool, BATCH, write_events)
                except (GatewayError, OSError) as exc:
                    if not failing:
                        log.warning("cannot write the audit log (%s); retrying", exc)
                    failing = True
                except Exception:  # never let the writer die silently: log it, go on
                    if not failing:
                        log.exception("the audit log writer failed; retrying")
                    failing = True
                else:
                    failing = False
            if written < BATCH:  # a full batch: more are waiting, go on at once
                await asyncio.sleep(settings.log_interval)
