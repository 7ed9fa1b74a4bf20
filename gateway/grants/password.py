"""Resource owner password credentials (RFC 6749 section 4.3), opt-in per client.

Two variants the reference has: ``secret`` instead of ``username``/``password`` signs in again to
the session whose secret an earlier response carried; ``response_type=code`` with a registered
``redirect_uri`` also returns an authorization code, so a site's own login page can finish an
authorization request.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from gateway.config.loader import Client
from gateway.grants import issue
from gateway.grants.context import Context
from gateway.grants.issue import TokenResult
from gateway.grants.login import WRONG_CREDENTIALS, check_password, login_throttle_keys
from gateway.oauth import rfc7636
from gateway.oauth.errors import InvalidGrantError, InvalidRequestError, SlowDownError
from gateway.oauth.params import Params
from gateway.oauth.rfc6749 import grant_scope, parse_scope
from gateway.store import grants as grant_store
from gateway.store import sessions as store
from gateway.store import throttle


async def password_grant(ctx: Context, client: Client, params: Params) -> TokenResult:
    requested = parse_scope(params.get("scope"))
    scope = grant_scope(requested, client.config)
    redirect_uri = None
    if "code" in params.get("response_type", "").split():
        redirect_uri = params.require("redirect_uri")
        if redirect_uri not in client.config.redirect_uris:
            raise InvalidRequestError("redirect_uri is not registered for this client")
    challenge = rfc7636.check_challenge(
        params.get("code_challenge"),
        params.get("code_challenge_method"),
        required=redirect_uri is not None and client.config.requires_pkce,
    )

    session_secret = params.get("secret")
    existing_session: UUID | None = None
    password_changed_at: datetime | None = None
    if session_secret is not None:
        user_id, existing_session = await _session_of_secret(ctx, session_secret)
        new_secret_hash = None
    else:
        account = await check_password(
            ctx,
            params.require("username"),
            params.require("password"),
            client_id=client.client_id,
            origin="password",
        )
        user_id = account.user_id
        password_changed_at = account.password_changed_at
        session_secret = issue.new_secret()
        new_secret_hash = issue.secret_hash(session_secret)

    refresh = issue.offline_refresh_token(client, scope, params.get("access_type"))
    login = await issue.sign_in(
        ctx,
        client,
        user_id=user_id,
        scope=scope,
        origin="password",
        refresh_token=refresh,
        session_id=existing_session,
        secret_hash=new_secret_hash,
        password_changed_at=password_changed_at,
    )
    session = await store.session_get(ctx.db, login.session_id)
    if session is None:
        raise InvalidGrantError(WRONG_CREDENTIALS)
    extra: dict[str, str] = {"secret": session_secret}
    if redirect_uri is not None:
        code = issue.new_secret()
        await grant_store.code_issue(
            ctx.db,
            code_hash=issue.secret_hash(code),
            client_id=client.client_id,
            user_id=user_id,
            session_id=login.session_id,
            redirect_uri=redirect_uri,
            scope=scope,
            nonce=params.get("nonce"),
            code_challenge=challenge,
            offline=refresh is not None,
            ttl=ctx.settings.tokens.code_ttl,
        )
        extra["code"] = code
    holder = await issue.holder(
        ctx,
        scope,
        user_id,
        session.username,
        session.email,
        session.name,
        email_verified=session.email_verified,
    )
    return issue.user_tokens(
        ctx,
        client,
        holder,
        scope=scope,
        session_id=login.session_id,
        family_id=login.family_id,
        auth_time=login.auth_time,
        refresh_token=refresh,
        requested_scope=requested,
        extra=extra,
    )


async def _session_of_secret(ctx: Context, secret: str) -> tuple[UUID, UUID]:
    keys = login_throttle_keys(ctx, "session-secret")[1:]  # per address only
    limits = ctx.settings.limits
    thresholds = (limits.login_failures_per_ip,) * len(keys)
    wait = await throttle.throttle_check(ctx.db, keys)
    if wait:
        raise SlowDownError("too many failed sign-in attempts; try again later", retry_after=wait)
    found = await store.session_by_secret(ctx.db, issue.secret_hash(secret))
    if found is None:
        await throttle.throttle_failure(
            ctx.db, keys, thresholds, limits.login_lock_seconds, ctx.ip, ctx.user_agent
        )
        raise InvalidGrantError("the session secret is not valid")
    session_id, user_id = found
    return user_id, session_id
