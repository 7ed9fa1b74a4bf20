"""Clients: synchronised from ``conf/oauth2/default.json`` into ``oauth2.client`` at start-up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config.loader import Client
from gateway.passwords import Passwords, client_secret_hasher
from gateway.store.errors import sql_errors
from gateway.store.pool import Executor


@dataclass(frozen=True)
class SyncResult:
    added: int
    updated: int
    disabled: int


async def client_secret_hashes(db: Executor) -> dict[str, str | None]:
    with sql_errors():
        rows = await db.fetch("SELECT client_id, secret_hash FROM oauth2.client")
    return {row["client_id"]: row["secret_hash"] for row in rows}


async def client_sync(db: Executor, clients: list[dict[str, object]]) -> SyncResult:
    """``daemon.client_sync``: one transaction, so replicas starting together converge."""
    with sql_errors():
        row = await db.fetchrow(
            "SELECT * FROM daemon.client_sync($1::text::jsonb)", json.dumps(clients)
        )
    assert row is not None
    return SyncResult(row["added"], row["updated"], row["disabled"])


async def sync_configured_clients(
    db: Executor, clients: Mapping[str, Client], passwords: Passwords | None = None
) -> SyncResult:
    """Store the configured clients; a secret is re-hashed only when it changed."""
    passwords = passwords or Passwords(client_secret_hasher())
    existing = await client_secret_hashes(db)
    rows: list[dict[str, object]] = []
    for client in clients.values():
        app = client.config
        secret_hash: str | None = None
        if app.client_secret is not None:
            secret = app.client_secret.get_secret_value()
            old = existing.get(client.client_id)
            # argon2 runs off the event loop: a reload happens while requests are served.
            same = bool(old) and await asyncio.to_thread(passwords.verify, old, secret)
            secret_hash = old if same and old else await asyncio.to_thread(passwords.hash, secret)
        rows.append(
            {
                "client_id": client.client_id,
                "provider": client.provider,
                "app": client.app,
                "secret_hash": secret_hash,
                "grant_types": list(app.effective_grant_types),
                "redirect_uris": list(app.redirect_uris),
                "javascript_origins": list(app.javascript_origins),
                "scopes": list(app.scopes),
                "settings": app.model_dump(
                    mode="json",
                    exclude={"client_secret", "client_id", "redirect_uris", "javascript_origins"},
                    exclude_none=True,
                ),
            }
        )
    return await client_sync(db, rows)
