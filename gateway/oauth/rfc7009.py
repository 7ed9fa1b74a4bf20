"""OAuth 2.0 Token Revocation (RFC 7009): what a revocation request carries.

Section 2.1: the client sends ``token`` (and may send ``token_type_hint``, which a server may
ignore: this one looks the token up as a refresh token, then as an access token). Section 2.2:
the answer is 200 whether or not the token was valid, so revocation reveals nothing.
"""

from __future__ import annotations

from gateway.oauth.params import Params

# Longer values are no token this server issued; they are answered as an unknown token would be.
MAX_TOKEN_LENGTH = 8192


def revocation_token(params: Params) -> str | None:
    """The token to revoke (``invalid_request`` when absent), or None when it cannot be one of
    ours (then nothing is looked up and the answer is the same 200)."""
    token = params.require("token")
    return token if len(token) <= MAX_TOKEN_LENGTH else None
