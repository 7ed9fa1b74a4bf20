"""Signing in with an external OpenID provider (the reference's ``/oauth2/code/<provider>``).

A provider file other than ``default.json`` (``conf/oauth2/google.json``) whose app has
``client_id``, ``client_secret``, ``auth_uri``, ``token_uri``, ``issuers`` and a key URL
(``jwks_uri`` or ``cert_uri``) is offered on the login page. The gateway is then the provider's
confidential client: authorization code with PKCE (S256) and a nonce, the code exchanged at
``token_uri`` with the client secret, the ID token verified against the provider's published keys
(issuer, audience, expiry, nonce; OIDC Core 3.1.3.7). The provider's account is linked to a local
user (by the ID token's ``iss`` and ``sub``) only when the user also signs in with the local
password in the same flow, as Keycloak's first broker login does; later sign-ins follow the link.
An email, verified or not, never links by itself: a provider account holding someone's address
must not become that person.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from gateway.config.loader import Config
from gateway.config.model import AppConfig
from gateway.grants.context import Context, ExternalCallError
from gateway.oauth.errors import InvalidGrantError
from gateway.oauth.rfc7636 import s256
from gateway.store import grants as grant_store
from gateway.store import identities
from gateway.tokens.jwt import TokenInvalid, inspect
from gateway.tokens.remote import verify_assertion

SCOPE = "openid email profile"
MAX_SUBJECT = 255  # OIDC Core 2: sub is at most 255 ASCII characters
CLOCK_SKEW = 30
LINK_TTL = 600  # seconds a pending link waits for the local password


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
    for name, apps in sorted(config.external_providers.items()):
        for app in apps.values():
            if app.is_sign_in_provider and app.client_secret and app.issuers and app.keys_url:
                found[name] = SignInProvider(name, app)
                break
    return found


@dataclass(frozen=True)
class Attempt:
    """What one sign-in attempt must remember until the provider sends the browser back.

    ``fresh_since``: the application asked for a fresh sign-in (``prompt=login`` or ``max_age``),
    so the provider is asked for one too and its ID token's ``auth_time`` must not be older."""

    verifier: str
    nonce: str
    fresh_since: int | None = None

    @classmethod
    def new(cls, *, fresh: bool, now: int) -> Attempt:
        return cls(secrets.token_urlsafe(48), secrets.token_urlsafe(24), now if fresh else None)


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
            **({"prompt": "login", "max_age": "0"} if attempt.fresh_since is not None else {}),
        }
    )
    return f"{app.auth_uri}{'&' if '?' in app.auth_uri else '?'}{query}"


@dataclass(frozen=True)
class ExternalIdentity:
    """Who the provider's verified ID token says the user is."""

    provider: str
    issuer: str
    subject: str
    email: str | None
    email_verified: bool = False


async def finish(
    ctx: Context, provider: SignInProvider, code: str, redirect_uri: str, attempt: Attempt
) -> tuple[ExternalIdentity, UUID | None]:
    """Exchange the provider's code and verify its ID token: the identity, and the local user it
    is linked to (None when it is linked to nobody yet).

    ``ExternalSignInFailed`` when the provider's answer is unusable; ``AccessDeniedError`` when
    the linked user is locked."""
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
    if app.keys_url is None:
        raise ExternalSignInFailed("the provider has no key URL")
    claims = await verify_id_token(
        ctx,
        id_token,
        keys_url=app.keys_url,
        issuers=app.issuers,
        client_id=app.client_id,
        nonce=attempt.nonce,
        fresh_since=attempt.fresh_since,
    )
    email = claims.get("email")
    identity = ExternalIdentity(
        provider.name,
        str(claims["iss"]),
        str(claims["sub"]),
        email if isinstance(email, str) and len(email) <= 320 else None,
        claims.get("email_verified") in (True, "true"),
    )
    user_id = await identities.identity_login(ctx.db, identity.issuer, identity.subject)
    return identity, user_id


async def verify_id_token(
    ctx: Context,
    id_token: str,
    *,
    keys_url: str,
    issuers: tuple[str, ...],
    client_id: str,
    nonce: str | None,
    fresh_since: int | None = None,
) -> dict[str, Any]:
    """OIDC Core 3.1.3.7: signed by a key the provider publishes at its own key URL (fetched
    again once when the token names a key not seen yet: the provider rotated), issued by one of
    its issuers, to us alone (``aud``, ``azp``), unexpired, with ``iat`` and our ``nonce``
    (None: a refreshed ID token, which carries none to check, OIDC Core 12.2)."""
    fetch = ctx.authority.remote_keys_at
    if fetch is None:
        raise ExternalSignInFailed("the provider's keys cannot be fetched")
    try:
        header, _ = inspect(id_token)
        kid = header.get("kid")
        keys = await fetch(keys_url, kid if isinstance(kid, str) else None)
        claims = verify_assertion(
            id_token, keys, issuers=issuers, audiences=(client_id,), now=ctx.now
        )
    except TokenInvalid as exc:
        raise ExternalSignInFailed(f"the ID token is not valid: {exc}") from None
    audience = claims["aud"]
    if isinstance(audience, list) and any(a != client_id for a in audience):
        raise ExternalSignInFailed("the ID token has audiences besides us")
    if claims.get("azp", client_id) != client_id:
        raise ExternalSignInFailed("the ID token was issued to another party (azp)")
    if not isinstance(claims.get("iat"), int | float):
        raise ExternalSignInFailed("the ID token has no iat")
    subject = claims["sub"]
    if not isinstance(subject, str) or not 1 <= len(subject) <= MAX_SUBJECT:
        raise ExternalSignInFailed("the ID token's sub is not usable")
    if nonce is not None:
        presented = claims.get("nonce")
        if not isinstance(presented, str) or not hmac.compare_digest(presented, nonce):
            raise ExternalSignInFailed("the ID token's nonce does not match")
    if fresh_since is not None:
        auth_time = claims.get("auth_time")
        if not isinstance(auth_time, int | float) or auth_time < fresh_since - CLOCK_SKEW:
            raise ExternalSignInFailed("the provider did not sign the user in afresh (auth_time)")
    return claims


async def link(
    ctx: Context, identity: ExternalIdentity, user_id: UUID, password_changed_at: datetime
) -> None:
    """Link ``identity`` to the user who has just signed in with the local password (whose
    ``password_changed_at`` the caller read) in the same flow; ``AccessDeniedError`` when it is
    linked to someone else, ``InvalidGrantError`` when the account changed meanwhile."""
    await identities.identity_link(
        ctx.db,
        provider=identity.provider,
        issuer=identity.issuer,
        subject=identity.subject,
        user_id=user_id,
        email=identity.email,
        password_changed_at=password_changed_at,
    )


def pending_link(identity: ExternalIdentity, label: str, now: int) -> dict[str, str]:
    """What the login form carries (sealed) until a password sign-in links ``identity``; also
    the page's ``{provider}`` and ``{account}``."""
    shown = identity.email if identity.email and identity.email_verified else identity.subject
    return {
        "provider_name": identity.provider,
        "issuer": identity.issuer,
        "subject": identity.subject,
        "email": identity.email or "",
        "provider": label,
        "account": shown,  # an unverified email could claim to be anyone's: not shown
        "until": str(now + LINK_TTL),  # fixed: re-rendering never extends it
    }


def pending_identity(pending: dict[str, str], now: int) -> ExternalIdentity | None:
    """The identity a pending link names, or None when its time is up."""
    if int(pending.get("until", "0")) < now:
        return None
    return ExternalIdentity(
        pending["provider_name"], pending["issuer"], pending["subject"], pending["email"] or None
    )


STATE_ISSUER = "gateway:external-state"  # auth.assertion rows that make each state single-use


async def redeem_attempt(ctx: Context, nonce: str, until: datetime) -> bool:
    """Use up one sign-in attempt (keyed by its nonce); False when it was used already (a
    replayed or reloaded callback), so it reaches the provider and signs in at most once."""
    try:
        await grant_store.assertion_use(
            ctx.db, STATE_ISSUER, hashlib.sha256(nonce.encode()).hexdigest(), until
        )
    except InvalidGrantError:
        return False
    return True
