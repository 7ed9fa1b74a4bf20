"""JWT bearer assertions as authorization grants (RFC 7523 section 2.1).

An assertion must come from an issuer listed in a provider file (``conf/oauth2/<provider>.json``,
``issuers`` with ``jwks_uri`` or ``cert_uri``), be signed by one of that issuer's published keys,
name this gateway (its issuer or token endpoint) as audience, be unexpired and carry a ``sub``
that is a user's name or email. A ``jti`` is accepted once. Every failure is ``invalid_grant``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.config.loader import Client
from gateway.grants import issue
from gateway.grants.context import Context
from gateway.grants.issue import TokenResult
from gateway.oauth.errors import InvalidGrantError
from gateway.oauth.params import Params
from gateway.oauth.rfc6749 import grant_scope, parse_scope
from gateway.store import grants as grant_store
from gateway.store import sessions as store
from gateway.tokens.jwt import TokenInvalid, inspect
from gateway.tokens.remote import verify_assertion

INVALID = "the assertion is not valid"


def trusted_issuers(ctx: Context) -> dict[str, str]:
    """issuer -> provider name, for every provider file entry that lists issuers and keys and is
    trusted for assertions (not a sign-in provider, unless ``"assertions": true``)."""
    result: dict[str, str] = {}
    for provider, apps in ctx.config.external_providers.items():
        for app in apps.values():
            if app.keys_url and app.trusted_for_assertions:
                for issuer in app.issuers:
                    result.setdefault(issuer, provider)
    return result


async def jwt_bearer_grant(ctx: Context, client: Client, params: Params) -> TokenResult:
    assertion = params.require("assertion")
    try:
        _, unverified = inspect(assertion)
    except TokenInvalid:
        raise InvalidGrantError(INVALID) from None
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or issuer not in trusted_issuers(ctx):
        raise InvalidGrantError(INVALID)
    keys = await ctx.authority.remote_keys(issuer)
    try:
        claims = verify_assertion(
            assertion,
            keys,
            issuers=(issuer,),
            audiences=(ctx.issuer, ctx.endpoint("/oauth2/token")),
            now=ctx.now,
        )
    except TokenInvalid:
        raise InvalidGrantError(INVALID) from None
    account = await store.user_lookup(ctx.db, str(claims["sub"]))
    if account is None or account.locked:
        raise InvalidGrantError(INVALID)
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        await grant_store.assertion_use(
            ctx.db, issuer, jti[:256], datetime.fromtimestamp(int(claims["exp"]), UTC)
        )
    requested = parse_scope(params.get("scope"))
    scope = grant_scope(requested, client.config)
    refresh = issue.offline_refresh_token(client, scope, params.get("access_type"))
    login = await issue.sign_in(
        ctx,
        client,
        user_id=account.user_id,
        scope=scope,
        origin="jwt_bearer",
        refresh_token=refresh,
    )
    holder = await issue.holder(
        ctx,
        scope,
        account.user_id,
        account.username,
        account.email,
        account.name,
        email_verified=account.email_verified,
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
    )
