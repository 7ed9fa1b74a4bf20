"""The token endpoint's decision (RFC 6749 section 3.2): which grant, which client, then the grant.

grant_type -> client authentication -> the client's rate limit -> is the grant enabled for the
client -> the grant
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from gateway.config.loader import Client
from gateway.config.model import (
    GRANT_AUTHORIZATION_CODE,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_JWT_BEARER,
    GRANT_PASSWORD,
    GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE,
)
from gateway.grants.authorization_code import authorization_code_grant
from gateway.grants.client_credentials import client_credentials_grant
from gateway.grants.clients import admit_client, authenticate_client, throttle_keys
from gateway.grants.context import Context
from gateway.grants.issue import TokenResult
from gateway.grants.jwt_bearer import jwt_bearer_grant
from gateway.grants.password import password_grant
from gateway.grants.refresh_token import refresh_token_grant
from gateway.grants.token_exchange import token_exchange_grant
from gateway.oauth.errors import (
    InvalidRequestError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
)
from gateway.oauth.params import Params
from gateway.oauth.rfc6749 import client_credentials

Grant = Callable[[Context, Client, Params], Awaitable[TokenResult]]

GRANTS: dict[str, Grant] = {
    GRANT_AUTHORIZATION_CODE: authorization_code_grant,
    GRANT_PASSWORD: password_grant,
    GRANT_CLIENT_CREDENTIALS: client_credentials_grant,
    GRANT_REFRESH_TOKEN: refresh_token_grant,
    GRANT_TOKEN_EXCHANGE: token_exchange_grant,
    GRANT_JWT_BEARER: jwt_bearer_grant,
}

# Grants whose one statement checks the client's throttle lock itself (daemon.throttle_guard), so
# that a successful grant is one database round trip (issue 13). Every other grant has the lock
# checked by authenticate_client first.
LOCK_IN_STATEMENT = frozenset({GRANT_CLIENT_CREDENTIALS, GRANT_REFRESH_TOKEN})


async def token_request(
    ctx: Context, params: Params, authorization: str | None, origin: str | None = None
) -> tuple[Client, TokenResult]:
    """Run the grant. ``origin`` is the browser's ``Origin`` header: a page may only use a client
    that lists its origin (or the gateway's own), so a cross-site form cannot sign a victim's
    browser in to another account (login CSRF) or have tokens issued into it."""
    grant_type = params.get("grant_type")
    if grant_type is None:
        raise InvalidRequestError("grant_type is required")
    grant = GRANTS.get(grant_type)
    if grant is None:
        raise UnsupportedGrantTypeError("this grant_type is not supported")
    in_statement = grant_type in LOCK_IN_STATEMENT
    creds = client_credentials(authorization, params)
    client = await authenticate_client(ctx, creds, check_lock=not in_statement)
    if in_statement:
        ctx = dataclasses.replace(ctx, client_lock=throttle_keys(ctx, client.client_id))
    await admit_client(ctx, client)
    if grant_type not in client.config.effective_grant_types:
        raise UnauthorizedClientError("this grant_type is not enabled for this client")
    allowed = (*client.config.javascript_origins, ctx.own_origin)
    if origin is not None and origin not in allowed:
        raise UnauthorizedClientError("this client may not be used from this origin")
    return client, await grant(ctx, client, params)
