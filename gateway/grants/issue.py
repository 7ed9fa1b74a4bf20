"""Minting what a grant returns: access tokens (RFC 9068 JWTs), ID tokens, refresh tokens and codes.

Refresh tokens and codes are 256-bit random strings; only their SHA-256 reaches the database.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from gateway.config.loader import Client
from gateway.config.model import GRANT_REFRESH_TOKEN
from gateway.grants.context import Context
from gateway.oauth import oidc
from gateway.oauth.rfc6749 import format_scope
from gateway.store import organizations as org_store
from gateway.store import sessions as session_store
from gateway.store.sessions import Login
from gateway.tokens.jwt import ACCESS_TOKEN_TYP, ID_TOKEN_TYP, mint_for

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN
SECRET_EXTRAS = frozenset({"secret"})


def new_secret() -> str:
    """A refresh token, code or session secret: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def secret_hash(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def client_subject(client_id: str) -> str:
    """The ``sub`` of client-credentials tokens: never equal to a user's (RFC 9700 4.15)."""
    return f"client:{client_id}"


GENERATION_CLAIM = "rgen"


@dataclass(frozen=True)
class TokenResult:
    """A successful token response (RFC 6749 section 5.1) and what the cookies need."""

    access_token: str
    expires_in: int
    scope: tuple[str, ...]
    session_id: UUID | None
    family_id: UUID | None
    refresh_token: str | None = None
    id_token: str | None = None
    service: bool = False
    requested_scope: tuple[str, ...] | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    # The access token's claims, as minted: the token handler forwards identity headers from
    # them without verifying the token it has just signed.
    access_claims: Mapping[str, Any] = field(default_factory=dict)

    def body(self, *, include_tokens: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": self.expires_in}
        if include_tokens:
            body["access_token"] = self.access_token
            if self.refresh_token:
                body["refresh_token"] = self.refresh_token
            if self.id_token:
                body["id_token"] = self.id_token
        body["scope"] = format_scope(self.scope)
        if self.session_id is not None:
            body["session"] = str(self.session_id)
        for key, value in self.extra.items():
            # The session secret is a credential: it stays out of bodies when tokens do.
            if include_tokens or key not in SECRET_EXTRAS:
                body[key] = value
        return body


def access_ttl(ctx: Context, client: Client, *, service: bool) -> int:
    if client.config.access_ttl is not None:
        return client.config.access_ttl
    tokens = ctx.settings.tokens
    return tokens.service_access_ttl if service else tokens.access_ttl


def mint_access_token(
    ctx: Context,
    client: Client,
    *,
    subject: str,
    scope: tuple[str, ...],
    session_id: UUID | None,
    family_id: UUID | None,
    ttl: int,
    username: str | None = None,
    audience: tuple[str, ...] = (),
    actor: Mapping[str, Any] | None = None,
    organizations: tuple[str, ...] | None = None,
) -> str:
    claims = access_token_claims(
        ctx,
        client,
        subject=subject,
        scope=scope,
        session_id=session_id,
        family_id=family_id,
        ttl=ttl,
        username=username,
        audience=audience,
        actor=actor,
    )
    if organizations is not None:
        claims[oidc.ORGANIZATION_CLAIM] = list(organizations)
    return _sign(ctx, client, claims, ACCESS_TOKEN_TYP)


def access_token_claims(
    ctx: Context,
    client: Client,
    *,
    subject: str,
    scope: tuple[str, ...],
    session_id: UUID | None,
    family_id: UUID | None,
    ttl: int,
    username: str | None = None,
    audience: tuple[str, ...] = (),
    actor: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ctx.issuer,
        "sub": subject,
        "aud": list(audience) if audience else ctx.audience,
        "exp": ctx.now + ttl,
        "iat": ctx.now,
        "nbf": ctx.now,
        "jti": uuid.uuid4().hex,
        "client_id": client.client_id,
        "scope": format_scope(scope),
    }
    if session_id is not None:
        claims["sid"] = str(session_id)
    if family_id is not None:
        claims["gid"] = str(family_id)
    if username is not None:
        claims["preferred_username"] = username
    if actor:
        claims["act"] = dict(actor)
    return claims


def mint_id_token(
    ctx: Context,
    client: Client,
    *,
    user: Mapping[str, Any],
    scope: tuple[str, ...],
    session_id: UUID,
    family_id: UUID,
    auth_time: int,
    nonce: str | None = None,
    access_token: str | None = None,
    code: str | None = None,
) -> str:
    claims = oidc.id_token_claims(
        issuer=ctx.issuer,
        client_id=client.client_id,
        user=user,
        scope=scope,
        now=ctx.now,
        ttl=ctx.settings.tokens.access_ttl,
        auth_time=auth_time,
        session_id=str(session_id),
        nonce=nonce,
        access_token=access_token,
        code=code,
    )
    claims["gid"] = str(family_id)
    return _sign(ctx, client, claims, ID_TOKEN_TYP)


def _sign(ctx: Context, client: Client, claims: dict[str, Any], typ: str) -> str:
    return mint_for(claims, ctx.authority.keyring, typ, client.config.hs256_key)


@dataclass(frozen=True)
class Holder:
    """Whom user tokens are for: the user's id and the claims tokens may carry
    (``organizations``: the aliases, when the ``organization`` scope was granted)."""

    user_id: UUID
    username: str | None
    email: str | None
    name: str | None
    organizations: tuple[str, ...] | None = None
    email_verified: bool = False  # the address was shown to reach the user (a link they used)

    def profile(self) -> dict[str, Any]:
        """The user's claims as oidc.user_claims and the ID token take them."""
        profile: dict[str, Any] = {
            "sub": str(self.user_id),
            "username": self.username,
            "email": self.email,
            "email_verified": self.email_verified,
            "name": self.name,
        }
        if self.organizations is not None:
            profile["organization"] = list(self.organizations)
        return profile


async def holder(
    ctx: Context,
    scope: tuple[str, ...],
    user_id: UUID,
    username: str | None,
    email: str | None,
    name: str | None,
    *,
    email_verified: bool = False,
    organizations: tuple[str, ...] | None = None,
) -> Holder:
    """The holder of user tokens; with the ``organization`` scope, the organisations the user
    belongs to now (Keycloak 26's ``organization`` claim: a list of aliases)."""
    if organizations is None and oidc.ORGANIZATION_SCOPE in scope:
        # Unless the grant's own statement read them (daemon.refresh_token does).
        organizations = await org_store.user_organizations(ctx.db, user_id)
    return Holder(user_id, username, email, name, organizations, email_verified)


def user_tokens(
    ctx: Context,
    client: Client,
    holder: Holder,
    *,
    scope: tuple[str, ...],
    session_id: UUID,
    family_id: UUID,
    auth_time: datetime,
    refresh_token: str | None = None,
    nonce: str | None = None,
    requested_scope: tuple[str, ...] | None = None,
    extra: Mapping[str, str] | None = None,
    with_id_token: bool = True,
    generation: int | None = None,
) -> TokenResult:
    """The token response of a user grant: an access token, an ID token when ``openid`` was
    granted (and ``with_id_token``: the token handler's own refreshes have no use for one), and
    the refresh token the grant stored (if any). ``generation``: the refresh generation the
    token handler's refresh minted this access token with (claim ``rgen``), so that seeing it
    come back in a browser's cookie proves the response arrived."""
    ttl = access_ttl(ctx, client, service=False)
    claims = access_token_claims(
        ctx,
        client,
        subject=str(holder.user_id),
        scope=scope,
        session_id=session_id,
        family_id=family_id,
        ttl=ttl,
        username=holder.username,
    )
    if generation is not None:
        claims[GENERATION_CLAIM] = generation
    if holder.organizations is not None:
        claims[oidc.ORGANIZATION_CLAIM] = list(holder.organizations)
    access = _sign(ctx, client, claims, ACCESS_TOKEN_TYP)
    id_token = None
    if "openid" in scope and with_id_token:
        id_token = mint_id_token(
            ctx,
            client,
            user=holder.profile(),
            scope=scope,
            session_id=session_id,
            family_id=family_id,
            auth_time=int(auth_time.timestamp()),
            nonce=nonce,
            access_token=access,
        )
    return TokenResult(
        access_token=access,
        expires_in=ttl,
        scope=scope,
        session_id=session_id,
        family_id=family_id,
        refresh_token=refresh_token,
        id_token=id_token,
        requested_scope=requested_scope,
        extra=extra or {},
        access_claims=claims,
    )


def service_tokens(
    ctx: Context,
    client: Client,
    *,
    scope: tuple[str, ...],
    session_id: UUID,
    family_id: UUID,
    refresh_token: str | None = None,
    requested_scope: tuple[str, ...] | None = None,
) -> TokenResult:
    """The token response of a client acting for itself (no user, no ID token)."""
    ttl = access_ttl(ctx, client, service=True)
    claims = access_token_claims(
        ctx,
        client,
        subject=client_subject(client.client_id),
        scope=scope,
        session_id=session_id,
        family_id=family_id,
        ttl=ttl,
    )
    access = _sign(ctx, client, claims, ACCESS_TOKEN_TYP)
    return TokenResult(
        access_token=access,
        expires_in=ttl,
        scope=scope,
        session_id=session_id,
        family_id=family_id,
        refresh_token=refresh_token,
        service=True,
        requested_scope=requested_scope,
        access_claims=claims,
    )


def offline_refresh_token(
    client: Client, scope: tuple[str, ...], access_type: str | None
) -> str | None:
    """A new refresh token when the grant asked for offline access and the client may refresh."""
    offline = access_type == "offline" or "offline_access" in scope
    if offline and GRANT_REFRESH_TOKEN in client.config.effective_grant_types:
        return new_secret()
    return None


async def sign_in(
    ctx: Context,
    client: Client,
    *,
    user_id: UUID | None,
    scope: tuple[str, ...],
    origin: str,
    refresh_token: str | None,
    kind: str = "browser",
    session_id: UUID | None = None,
    secret_hash: bytes | None = None,
    password_changed_at: datetime | None = None,
) -> Login:
    """``daemon.login`` with this configuration's lifetimes: the session and its token family."""
    tokens = ctx.settings.tokens
    return await session_store.login(
        ctx.db,
        user_id=user_id,
        client_id=client.client_id,
        kind=kind,
        scope=scope,
        origin=origin,
        refresh_hash=secret_hash_of(refresh_token),
        session_ttl=tokens.refresh_ttl if kind == "service" else tokens.session_ttl,
        refresh_ttl=tokens.refresh_ttl,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
        session_id=session_id,
        secret_hash=secret_hash,
        password_changed_at=password_changed_at,
        guard=ctx.client_lock,
    )


def secret_hash_of(value: str | None) -> bytes | None:
    return secret_hash(value) if value is not None else None
