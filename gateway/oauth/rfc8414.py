"""Authorization server metadata (RFC 8414; OpenID Connect Discovery 1.0 section 3)."""

from __future__ import annotations

from typing import Any

from gateway.config.loader import Config
from gateway.config.model import (
    GRANT_AUTHORIZATION_CODE,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_IMPLICIT,
    GRANT_JWT_BEARER,
    GRANT_PASSWORD,
    GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE,
)


def metadata(config: Config) -> dict[str, Any]:
    issuer = config.gateway.public_issuer()
    scopes = sorted({s for c in config.clients.values() for s in c.config.scopes} | {"openid"})
    algs = sorted({config.gateway.tokens.signing_alg, "RS256"})
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth2/authorize",
        "token_endpoint": f"{issuer}/oauth2/token",
        "userinfo_endpoint": f"{issuer}/oauth2/userinfo",
        "jwks_uri": f"{issuer}/oauth2/jwks",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "end_session_endpoint": f"{issuer}/oauth2/logout",
        "response_types_supported": [
            "code",
            "token",
            "id_token",
            "code token",
            "code id_token",
            "id_token token",
            "code id_token token",
        ],
        "response_modes_supported": ["query", "fragment"],
        "grant_types_supported": [
            GRANT_AUTHORIZATION_CODE,
            GRANT_IMPLICIT,
            GRANT_PASSWORD,
            GRANT_CLIENT_CREDENTIALS,
            GRANT_REFRESH_TOKEN,
            GRANT_TOKEN_EXCHANGE,
            GRANT_JWT_BEARER,
        ],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes,
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "sid",
            "name",
            "preferred_username",
            "email",
            "email_verified",
            "organization",
        ],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "claims_parameter_supported": False,
        # OpenID Connect Back-Channel Logout 1.0 section 2.1: logout tokens always carry sid.
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
    }
