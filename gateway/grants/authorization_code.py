"""Authorization code redemption (RFC 6749 section 4.1.3) with PKCE (RFC 7636 section 4.6).

The code is single-use and bound to the client, the redirect URI and the PKCE challenge; all of it
is checked inside ``daemon.code_redeem`` in one transaction, so ten parallel redemptions of one code
yield exactly one token response. A second use revokes what the first one issued.
"""

from __future__ import annotations

from gateway.config.loader import Client
from gateway.config.model import GRANT_REFRESH_TOKEN
from gateway.grants import issue
from gateway.grants.context import Context
from gateway.grants.issue import TokenResult
from gateway.oauth import rfc7636
from gateway.oauth.errors import InvalidGrantError
from gateway.oauth.params import Params
from gateway.store import grants as store


async def authorization_code_grant(ctx: Context, client: Client, params: Params) -> TokenResult:
    code = params.require("code")
    verifier_challenge = rfc7636.challenge_of_verifier(params.get("code_verifier"))
    can_refresh = GRANT_REFRESH_TOKEN in client.config.effective_grant_types
    refresh = issue.new_secret() if can_refresh else None
    if len(code) > 512:
        raise InvalidGrantError("unknown authorization code")
    redeemed = await store.code_redeem(
        ctx.db,
        code_hash=issue.secret_hash(code),
        client_id=client.client_id,
        redirect_uri=params.get("redirect_uri"),
        verifier_challenge=verifier_challenge,
        refresh_hash=issue.secret_hash(refresh) if refresh else None,
        refresh_ttl=ctx.settings.tokens.refresh_ttl,
    )
    if redeemed.status != "ok":
        raise InvalidGrantError("the authorization code was already used")
    assert redeemed.family_id is not None
    assert redeemed.session_id is not None
    assert redeemed.user_id is not None
    assert redeemed.auth_time is not None
    holder = await issue.holder(
        ctx,
        redeemed.scope,
        redeemed.user_id,
        redeemed.username,
        redeemed.email,
        redeemed.name,
        email_verified=redeemed.email_verified,
    )
    return issue.user_tokens(
        ctx,
        client,
        holder,
        scope=redeemed.scope,
        session_id=redeemed.session_id,
        family_id=redeemed.family_id,
        auth_time=redeemed.auth_time,
        refresh_token=refresh if redeemed.offline else None,
        nonce=redeemed.nonce,
    )
