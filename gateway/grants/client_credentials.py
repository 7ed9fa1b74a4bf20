"""Client credentials (RFC 6749 section 4.4): confidential clients only, no ID token.

A refresh token only when asked for with ``access_type=offline`` (the reference's service token);
RFC 6749 section 4.4.3 says it SHOULD NOT be included otherwise.
"""

from __future__ import annotations

from gateway.config.loader import Client
from gateway.grants import issue
from gateway.grants.context import Context
from gateway.grants.issue import TokenResult
from gateway.oauth.errors import UnauthorizedClientError
from gateway.oauth.params import Params
from gateway.oauth.rfc6749 import grant_scope, parse_scope


async def client_credentials_grant(ctx: Context, client: Client, params: Params) -> TokenResult:
    if client.config.is_public:
        raise UnauthorizedClientError("client_credentials is for confidential clients only")
    requested = parse_scope(params.get("scope"))
    scope = grant_scope(requested, client.config)
    refresh = None
    if params.get("access_type") == "offline":
        refresh = issue.offline_refresh_token(client, scope, "offline")
    login = await issue.sign_in(
        ctx,
        client,
        user_id=None,
        kind="service",
        scope=scope,
        origin="client_credentials",
        refresh_token=refresh,
    )
    return issue.service_tokens(
        ctx,
        client,
        scope=scope,
        session_id=login.session_id,
        family_id=login.family_id,
        refresh_token=refresh,
        requested_scope=requested,
    )
