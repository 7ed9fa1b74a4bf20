"""Refreshing (RFC 6749 section 6) with rotation, a grace period and replay detection.

Every refresh rotates the token. The successor is kept sealed (master key) beside the family for
``tokens.refresh_grace`` seconds, so a concurrent refresh with the same token, from another tab or
another replica, gets the same successor instead of tripping replay detection; after the grace a
superseded token revokes the whole session (RFC 9700 section 4.14.2). The state machine is in
sql/functions/060_grants.sql.
"""

from __future__ import annotations

from gateway.config.loader import Client
from gateway.grants import issue
from gateway.grants.context import Context
from gateway.grants.issue import TokenResult
from gateway.oauth.errors import InvalidGrantError
from gateway.oauth.params import Params
from gateway.oauth.rfc6749 import parse_scope
from gateway.store import grants as store

SUCCESSOR_PURPOSE = "refresh-successor"


async def refresh_token_grant(ctx: Context, client: Client, params: Params) -> TokenResult:
    return await refresh(
        ctx, client, params.require("refresh_token"), parse_scope(params.get("scope"))
    )


async def refresh(
    ctx: Context,
    client: Client,
    token: str,
    scope: tuple[str, ...] | None = None,
    *,
    for_token_handler: bool = False,
) -> TokenResult:
    """Rotate ``token`` and mint new tokens. ``for_token_handler``: the transparent refresh of
    a cookie session, which mints no ID token and recovers from a lost response (a superseded
    token whose successor was never used is not a replay there: the browser never stored the
    new cookie; sql/functions/060_grants.sql)."""
    if len(token) > 512:
        raise InvalidGrantError("unknown refresh token")
    successor = issue.new_secret()
    purpose = f"{SUCCESSOR_PURPOSE}:{client.client_id}"
    tokens = ctx.settings.tokens
    rotation = await store.refresh_token(
        ctx.db,
        old_hash=issue.secret_hash(token),
        client_id=client.client_id,
        new_hash=issue.secret_hash(successor),
        new_sealed=ctx.authority.master.seal(successor.encode(), purpose=purpose),
        scope=scope,
        grace=tokens.refresh_grace,
        refresh_ttl=tokens.refresh_ttl,
        recover=for_token_handler,
        guard=ctx.client_lock,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
    )
    if rotation.status == "replay":
        raise InvalidGrantError("the refresh token was already used; the session has ended")
    if rotation.status == "grace":
        sealed = rotation.successor_sealed or ""
        plain = ctx.authority.master.unseal(sealed, purpose=purpose)
        if plain is None:
            raise InvalidGrantError("the refresh token is no longer valid")
        successor = plain.decode()
    assert rotation.family_id is not None
    assert rotation.session_id is not None
    assert rotation.auth_time is not None
    if rotation.user_id is not None:
        # daemon.refresh_token checked family, session and user, and returned the user's names.
        holder = await issue.holder(
            ctx,
            rotation.scope,
            rotation.user_id,
            rotation.username,
            rotation.email,
            rotation.name,
            email_verified=rotation.email_verified,
            organizations=rotation.organizations,
        )
        return issue.user_tokens(
            ctx,
            client,
            holder,
            scope=rotation.scope,
            session_id=rotation.session_id,
            family_id=rotation.family_id,
            auth_time=rotation.auth_time,
            refresh_token=successor,
            requested_scope=scope,
            with_id_token=not for_token_handler,
            generation=rotation.generation if for_token_handler else None,
        )
    return issue.service_tokens(
        ctx,
        client,
        scope=rotation.scope,
        session_id=rotation.session_id,
        family_id=rotation.family_id,
        refresh_token=successor,
        requested_scope=scope,
    )
