"""Signing in with an external OpenID provider (the reference's ``/oauth2/code/<provider>``).

A provider file other than ``default.json`` (``conf/oauth2/google.json``) whose app has
``client_id``, ``client_secret``, ``auth_uri``, ``token_uri``, ``issuers`` and a key URL
(``jwks_uri`` or ``cert_uri``) is offered on the login page. The gateway is then the provider's
confidential client: authorization code with PKCE (S256) and a nonce, the code exchanged at
``token_uri`` with the client secret, the ID token verified against the provider's published keys
(issuer, audience, expiry, nonce; OIDC Core 3.1.3.7). The provider's ``sub`` is linked to a local
user on first use, by an email the provider says it verified; later sign-ins follow the link.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode
from uuid import UUID

from gateway.config.loader import DEFAULT_PROVIDER, Config
from gateway.config.model import AppConfig
from gateway.grants.context import Context, ExternalCallError
from gateway.oauth.rfc7636 import s256
from gateway.store import identities
from gateway.tokens.jwt import TokenInvalid, inspect
from gateway.tokens.remote import verify_assertion

SCOPE = "openid email profile"


class ExternalSignInFailed(Exception):  # noqa: N818
    """The provider refused, could not be reached, or answered with something unusable."""


@dataclass(frozen=True)
class SignInProvider:
    name: str  # the provider file's name: conf/oauth2/<name>.json
    app: AppConfig

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").replace("-", " ").title()


def sign_in_providers(config: Config) -> dict[str, SignInProvider]:
    """The external providers a user can sign in with, by name (first usable app of each file)."""
    found: dict[str, SignInProvider] = {}
    for name, apps in sorted(config.providers.items()):
        if name == DEFAULT_PROVIDER:
            continue
        for app in apps.values():
            keys_url = app.jwks_uri or app.cert_uri or app.auth_provider_x509_cert_url
            if app.auth_uri and app.token_uri and app.client_secret and app.issuers and keys_url:
                found[name] = SignInProvider(name, app)
                break
    return found


@dataclass(frozen=True)
class Attempt:
    """What one sign-in attempt must remember until the provider sends the browser back."""

    verifier: str
    nonce: str

    @classmethod
    def new(cls) -> Attempt:
        return cls(secrets.token_urlsafe(48), secrets.token_urlsafe(24))


def authorization_url(
    provider: SignInProvider, redirect_uri: str, state: str, attempt: Attempt
) -> str:
    """Where to send the browser: the provider's authorization endpoint with our request."""
    app = provider.app
    assert app.auth_uri is not None
    query = urlencode(
        {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": redirect_uri,
            "scope": SCOPE,
            "state": state,
            "nonce": attempt.nonce,
            "code_challenge": s256(attempt.verifier),
            "code_challenge_method": "S256",
        }
    )
    return f"{app.auth_uri}{'&' if '?' in app.auth_uri else '?'}{query}"


async def finish(
    ctx: Context, provider: SignInProvider, code: str, redirect_uri: str, attempt: Attempt
) -> UUID:
    """Exchange the provider's code, verify its ID token, and return the local user it signs in.

    ``ExternalSignInFailed`` when the provider's answer is unusable; ``AccessDeniedError`` when
    the identity is valid but no local user is (or can be) linked to it."""
    app = provider.app
    assert app.token_uri is not None
    assert app.client_secret is not None
    try:
        answer = await ctx.authority.external_call(
            app.token_uri,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": app.client_id,
                "client_secret": app.client_secret.get_secret_value(),
                "code_verifier": attempt.verifier,
            },
        )
    except ExternalCallError as exc:
        raise ExternalSignInFailed(f"the token endpoint failed: {exc}") from None
    id_token = answer.get("id_token")
    if not isinstance(id_token, str):
        raise ExternalSignInFailed("the provider sent no ID token")
    try:
        _, unverified = inspect(id_token)
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or issuer not in app.issuers:
            raise TokenInvalid("untrusted issuer")
        keys = await ctx.authority.remote_keys(issuer)
        claims = verify_assertion(id_token, keys, issuers=app.issuers, audiences=(app.client_id,))
    except TokenInvalid as exc:
        raise ExternalSignInFailed(f"the ID token is not valid: {exc}") from None
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(nonce, attempt.nonce):
        raise ExternalSignInFailed("the ID token's nonce does not match")
    audience = claims.get("aud")
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != app.client_id:
        raise ExternalSignInFailed("the ID token was issued to another party (azp)")
    email = claims.get("email")
    verified = claims.get("email_verified") in (True, "true")
    return await identities.identity_login(
        ctx.db,
        provider.name,
        str(claims["sub"])[:255],
        email if isinstance(email, str) else None,
        verified,
    )
