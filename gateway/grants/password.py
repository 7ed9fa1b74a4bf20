"""Resource owner password credentials (RFC 6749 section 4.3), opt-in per client.

Two variants the reference has: ``secret`` instead of ``username``/``password`` signs in again to
the session whose secret an earlier response carried; ``response_type=code`` with a registered
``redirect_uri`` also returns an authorization code, so a site's own login page can finish an
authorization request.
"""

from __future__ import annotations

from uuid import UUID

from gateway.config.loader import Client
from gateway.config.model import GRANT_REFRESH_TOKEN
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


async def password_grant(ctx: Context, client: Client, params: Params) -> TokenResult:
    requested = parse_scope(params.get("scope"))
    scope = grant_scope(requested, client.config)
    redirect_uri = None
    if "code" in params.get("response_type", "").split():
        redirect_uri = params.require("redirect_uri")
        if redirect_uri not in client.config.redirect_uris:
            raise InvalidRequestError("redirect_uri is not registered for this client")
    challenge = rfc7636.check_challenge(
        params.get("code_challenge"), params.get("code_challenge_method"), required=False
    )

    session_secret = params.get("secret")
    existing_session: UUID | None = None
    clear: tuple[str, ...] = ()
    if session_secret is not None:
        user_id, existing_session = await _session_of_secret(ctx, session_secret)
        new_secret_hash = None
    else:
        account, clear = await check_password(
            ctx, params.require("username"), params.require("password")
        )
        user_id = account.user_id
        session_secret = issue.new_secret()
        new_secret_hash = issue.secret_hash(session_secret)

    offline = params.get("access_type") == "offline" or "offline_access" in scope
    can_refresh = GRANT_REFRESH_TOKEN in client.config.effective_grant_types
    refresh = issue.new_secret() if offline and can_refresh else None
    tokens = ctx.settings.tokens
    login = await store.login(
        ctx.db,
        user_id=user_id,
        client_id=client.client_id,
        kind="browser",
        scope=scope,
        origin="password",
        refresh_hash=issue.secret_hash(refresh) if refresh else None,
        session_ttl=tokens.session_ttl,
        refresh_ttl=tokens.refresh_ttl,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
        session_id=existing_session,
        clear=clear,
        secret_hash=new_secret_hash,
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
            offline=offline,
            ttl=tokens.code_ttl,
        )
        extra["code"] = code
    ttl = issue.access_ttl(ctx, client, service=False)
    access = issue.mint_access_token(
        ctx,
        client,
        subject=str(user_id),
        scope=scope,
        session_id=login.session_id,
        family_id=login.family_id,
        ttl=ttl,
        username=session.username,
    )
    id_token = None
    if "openid" in scope:
        id_token = issue.mint_id_token(
            ctx,
            client,
            user=issue.user_profile(user_id, session.username, session.email, session.name),
            scope=scope,
            session_id=login.session_id,
            family_id=login.family_id,
            auth_time=int(login.auth_time.timestamp()),
            access_token=access,
        )
    return TokenResult(
        access_token=access,
        expires_in=ttl,
        scope=scope,
        session_id=login.session_id,
        family_id=login.family_id,
        refresh_token=refresh,
        id_token=id_token,
        requested_scope=requested,
        extra=extra,
    )


async def _session_of_secret(ctx: Context, secret: str) -> tuple[UUID, UUID]:
    keys = login_throttle_keys(ctx, "session-secret")[1:]  # per address only
    wait = await store.throttle_check(ctx.db, keys)
    if wait:
        raise SlowDownError("too many failed sign-in attempts; try again later", retry_after=wait)
    found = await store.session_by_secret(ctx.db, issue.secret_hash(secret))
    if found is None:
        limits = ctx.settings.limits
        await store.throttle_fail(
            ctx.db, keys, (limits.login_failures_per_ip,), limits.login_lock_seconds
        )
        raise InvalidGrantError("the session secret is not valid")
    session_id, user_id = found
    return user_id, session_id
