"""Organisations and invitations by email (issue 12; seed 002's story, done the way its team
wished Keycloak 26 did it): validation of what people type, invitation tokens, the link, and
where the browser goes once an invitation is accepted.

An invitation token is 256 random bits; only its SHA-256 is stored. The link is
``{issuer}/oauth2/invitation?token=...``: single use, bound to the organisation and the email,
expiring after ``organizations.invitation_ttl``. Who may invite is decided by the callers (an
operator on the command line, the admin API's authorisation); what an invitation does is decided
in SQL (sql/functions/090_organizations.sql).
"""

from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit
from uuid import UUID

from email_validator import EmailNotValidError, validate_email

from gateway import errors
from gateway.config.loader import Config
from gateway.grants import issue
from gateway.grants.context import Context
from gateway.grants.live import live_token
from gateway.mail.message import OutgoingMail
from gateway.mail.outbox import seal_mail
from gateway.oauth.errors import InsufficientScopeError, InvalidTokenError
from gateway.passwords import check_new_password
from gateway.store import organizations as store
from gateway.store.errors import UserExistsError
from gateway.store.pool import Executor
from gateway.themes import Theme, render_mail
from gateway.tokens.seal import Sealer

INVITATION_PATH = "/oauth2/invitation"
ROLES = ("member", "admin")
ALIAS = re.compile(r"[a-z0-9][a-z0-9-]{0,61}[a-z0-9]")
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


class BadValue(ValueError):  # noqa: N818 - raised for the caller to show as it is
    """A value a person typed that cannot be used; the message says why, in plain words.
    ``key``: the theme's text that says it on a page, in the page's language."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class UsernameTaken(BadValue):
    """Registering with a user name another account has."""


# What the faces show (the store's records, named here so that they need not import it).
Organization = store.Organization
Member = store.Member
InvitationEntry = store.Invitation
InvitationView = store.InvitationView


def organization_json(o: Organization) -> dict[str, object]:
    """An organisation as the admin API and ``gateway org list --json`` show it."""
    return {
        "alias": o.alias,
        "name": o.name,
        "domains": list(o.domains),
        "members": o.members,
        "pending_invitations": o.pending,
        "created_at": o.created_at.isoformat(),
    }


def check_alias(alias: str) -> str:
    if not ALIAS.fullmatch(alias):
        raise BadValue(
            f"the alias {alias[:80]!r} must be 2 to 63 lower-case letters, digits or hyphens, "
            "starting and ending with a letter or digit (it appears in tokens and URLs)"
        )
    return alias


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200 or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise BadValue("the name must be 1 to 200 characters, without control characters")
    return name


def check_domain(domain: str) -> str:
    value = domain.strip().lower().rstrip(".")
    try:
        value = value.encode("idna").decode("ascii")
    except UnicodeError:
        raise BadValue(f"{domain[:80]!r} is not a domain name") from None
    if not DOMAIN.fullmatch(value):
        raise BadValue(f"{domain[:80]!r} is not a domain name such as example.com")
    return value


def check_email(email: str) -> str:
    """An email address as it will be stored and compared (domain normalised, IDN allowed);
    ``BadValue`` with the reason for anything else."""
    try:
        # No DNS lookups; ".test" (RFC 2606) is accepted for test set-ups.
        checked = validate_email(email.strip(), check_deliverability=False, test_environment=True)
        return str(checked.normalized)
    except EmailNotValidError as exc:
        raise BadValue(f"{email[:120]!r} is not an email address: {exc}") from None


def check_username(username: str) -> str:
    """A user name someone chose: NFKC-normalised, 1 to 128 characters, no spaces, no
    invisible or formatting characters (zero-width joiners and the like)."""
    value = unicodedata.normalize("NFKC", username.strip())
    if not 1 <= len(value) <= 128 or any(unicodedata.category(ch)[0] in "CZ" for ch in value):
        raise BadValue(
            "the user name must be 1 to 128 characters without spaces", "register_username_bad"
        )
    return value


def check_role(role: str) -> str:
    if role not in ROLES:
        raise BadValue(f"the role must be member or admin, not {role[:40]!r}")
    return role


def sealed_mail(
    theme: Theme, lang: str, master: Sealer, kind: str, to: str, **context: object
) -> tuple[UUID, str]:
    """A mail of ``kind`` rendered from the theme's template and sealed for the outbox (its
    id and sealed content), for the SQL function that queues it with its change."""
    rendered = render_mail(theme, kind, lang, **context)
    message = OutgoingMail(
        kind=kind, to=to, subject=rendered.subject, text=rendered.text, html=rendered.html
    )
    return seal_mail(master, message)


def new_token() -> tuple[str, bytes]:
    """A link's token (invitation, account link) and the hash the database keeps."""
    token = issue.new_secret()
    return token, issue.secret_hash(token)


def well_formed(token: str | None) -> bool:
    """Whether ``token`` can be an invitation token at all (checked before any lookup)."""
    return token is not None and TOKEN.fullmatch(token) is not None


def invitation_link(issuer: str, token: str) -> str:
    return f"{issuer}{INVITATION_PATH}?{urlencode({'token': token})}"


@dataclass(frozen=True)
class NewInvitation:
    """An invitation just made: what the CLI prints and the email says."""

    alias: str
    organization_name: str
    email: str
    role: str
    client_id: str | None
    link: str
    expires_at: datetime
    replaced: bool
    mail_id: UUID | None = None  # the outbox entry of its email, when one was queued


@dataclass(frozen=True)
class InvitationMail:
    """How the invitation email is made: the theme and language it is written in, who invites
    (a name, or None), and the master key its sealed copy in the outbox is sealed with."""

    master: Sealer
    theme: Theme
    lang: str = "en"
    inviter: str | None = None


async def invite(
    db: Executor,
    config: Config,
    *,
    alias: str,
    email: str,
    role: str = "member",
    client_id: str | None = None,
    actor: str,
    mail: InvitationMail | None = None,
    now: float | None = None,
) -> NewInvitation:
    """Invite ``email`` to the organisation, and with ``mail`` queue the email that carries the
    link, in the same transaction; ``BadValue`` for input, store errors for the rest (unknown
    organisation, already a member)."""
    check_alias(alias)
    email = check_email(email)
    check_role(role)
    client = config.clients.get(client_id) if client_id is not None else None
    if client_id is not None and client is None:
        raise BadValue(f"there is no client {client_id[:80]!r}")
    organization = await store.org_get(db, alias)
    if organization is None:
        raise errors.UnknownOrganizationError("there is no such organisation")
    token, digest = new_token()
    link = invitation_link(config.gateway.public_issuer(), token)
    ttl = config.gateway.organizations.invitation_ttl
    queued = None
    if mail is not None:
        expires = datetime.fromtimestamp((time.time() if now is None else now) + ttl, UTC)
        mail_id, sealed = sealed_mail(
            mail.theme,
            mail.lang,
            mail.master,
            "invitation",
            email,
            organization_name=organization.name,
            inviter=mail.inviter,
            link=link,
            expires_at=expires,
            role=role,
            client_name=client.app if client is not None else None,
        )
        queued = (mail_id, email, sealed)
    invited = await store.org_invite(
        db,
        alias,
        email,
        role=role,
        client_id=client_id,
        token_hash=digest,
        ttl=ttl,
        actor=actor,
        mail=queued,
    )
    return NewInvitation(
        alias=alias,
        organization_name=organization.name,
        email=email,
        role=role,
        client_id=client_id,
        link=link,
        expires_at=invited.expires_at,
        replaced=invited.replaced,
        mail_id=queued[0] if queued is not None else None,
    )


def initiate_login_url(config: Config, client_id: str | None, login_hint: str) -> str | None:
    """Where the browser goes once an invitation is accepted: the inviting client's
    ``initiate_login_uri`` with ``iss`` and ``login_hint`` (OIDC Core 4), so the application
    starts its own authorization request (its own PKCE); None without one."""
    if client_id is None:
        return None
    client = config.clients.get(client_id)
    uri = client.config.initiate_login_uri if client is not None else None
    if uri is None:
        return None
    issuer = config.gateway.public_issuer()
    if uri.startswith("/"):
        uri = issuer + uri
    query = urlencode({"iss": issuer, "login_hint": login_hint})
    return f"{uri}{'&' if urlsplit(uri).query else '?'}{query}"


# --- who may manage organisations (the admin API) ------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who calls the admin API: a service client (every organisation) or a user who is an
    ``admin`` of the organisation asked about (that one only). ``name`` goes to the audit log."""

    name: str
    client_id: str
    user_id: UUID | None
    display: str | None = None  # the user's name, for the invitation email


async def admin_actor(ctx: Context, token: str) -> Actor:
    """The caller behind a Bearer access token of this gateway that holds the management
    scope (RFC 6750 errors otherwise: ``invalid_token``, ``insufficient_scope``)."""
    live = await live_token(ctx, token)
    if live is None:
        raise InvalidTokenError("the access token is not valid or has been revoked")
    claims, status = live
    needed = ctx.settings.organizations.manage_scope
    if needed not in str(claims.get("scope", "")).split():
        raise InsufficientScopeError(f"the {needed} scope is required")
    if status.user_id is None:
        return Actor(f"client:{status.client_id}", status.client_id, None)
    display = status.name or status.username
    return Actor(f"user:{status.user_id}", status.client_id, status.user_id, display)


async def require_admin_of(ctx: Context, actor: Actor, alias: str) -> None:
    """A user must be an ``admin`` of ``alias``; a service client may manage any. An unknown
    organisation and one the user does not administer look the same to a user (403)."""
    if actor.user_id is None:
        return
    role = await store.org_role(ctx.db, alias, actor.user_id)
    if role != "admin":
        raise InsufficientScopeError(f"you are not an admin of the organisation {alias!r}")


def require_service(actor: Actor) -> None:
    if actor.user_id is not None:
        raise InsufficientScopeError("only a service client may do this")


# --- the invitation link ------------------------------------------------------------------------

UNUSABLE = {
    "used": errors.InvitationUsed,
    "revoked": errors.InvitationRevoked,
    "expired": errors.InvitationExpired,
    "organization_removed": errors.InvitationOrganizationRemoved,
}


async def open_invitation(ctx: Context, token: str | None) -> store.InvitationView:
    """The pending invitation a link names; ``InvitationUnusable`` (with its ``state``) for a
    malformed, unknown, used, revoked or expired one, or one of a removed organisation."""
    if token is None or not well_formed(token):
        raise errors.InvitationUnknown("this invitation link is not valid")
    view = await store.invitation_lookup(ctx.db, issue.secret_hash(token))
    if view is None:
        raise errors.InvitationUnknown("this invitation link is not valid")
    unusable = UNUSABLE.get(view.state)
    if unusable is not None:
        raise unusable(view.state)
    return view


async def register(
    ctx: Context, token: str, *, email: str, username: str, name: str, password: str
) -> UUID:
    """Redeem an invitation by registering (``daemon.invitation_register``): the new user's id.
    ``email``: the invited one (``open_invitation`` read it). ``BadValue`` for a name or password
    that cannot be used."""
    username = check_username(username)
    if "@" in username and username.lower() != email.lower():
        # Sign-in takes a user name or an email: a name that looks like an email must be yours.
        raise BadValue("a user name with @ must be your email address", "register_username_email")
    try:
        name = check_name(name)
    except BadValue as exc:
        raise BadValue(str(exc), "register_name_bad") from None
    problem = check_new_password(password)
    if problem:
        raise BadValue(problem, "register_password_bad")
    password_hash = await ctx.authority.hash_password(password)
    try:
        return await store.invitation_register(
            ctx.db,
            issue.secret_hash(token),
            username=username,
            name=name,
            password_hash=password_hash,
        )
    except UserExistsError:
        again = await store.invitation_lookup(ctx.db, issue.secret_hash(token))
        if again is not None and again.user_id is not None:  # the email registered meanwhile
            raise errors.InvitationAccountExists("an account with this email exists") from None
        raise UsernameTaken("this user name is taken", "register_username_taken") from None


async def accept(ctx: Context, token: str, user_id: UUID) -> str:
    """Redeem an invitation with the signed-in account whose email it names; the alias."""
    return await store.invitation_accept(ctx.db, issue.secret_hash(token), user_id)


# --- what the admin API does, each checked against the actor --------------------------------


async def create_organization(
    ctx: Context, actor: Actor, alias: str, name: str, domains: list[str]
) -> Organization:
    require_service(actor)
    alias, name = check_alias(alias), check_name(name)
    checked = tuple(dict.fromkeys(check_domain(d) for d in domains))
    await store.org_add(ctx.db, alias, name, checked, actor.name)
    created = await store.org_get(ctx.db, alias)
    assert created is not None
    return created


async def organizations_of(ctx: Context, actor: Actor) -> list[Organization]:
    """Every organisation for a service client; those a user administers."""
    return await store.org_list(ctx.db, actor.user_id)


async def organization(ctx: Context, actor: Actor, alias: str) -> Organization:
    await require_admin_of(ctx, actor, alias)
    found = await store.org_get(ctx.db, alias)
    if found is None:
        raise errors.UnknownOrganizationError("there is no such organisation")
    return found


async def members(ctx: Context, actor: Actor, alias: str) -> list[Member]:
    await require_admin_of(ctx, actor, alias)
    return await store.org_members(ctx.db, alias)


async def remove_member(ctx: Context, actor: Actor, alias: str, user_id: str) -> None:
    await require_admin_of(ctx, actor, alias)
    try:
        UUID(user_id)
    except ValueError:
        raise BadValue("name the member by its id") from None
    await store.org_remove_member(ctx.db, alias, user_id, actor.name)


async def invitations(
    ctx: Context, actor: Actor, alias: str, *, every: bool
) -> list[InvitationEntry]:
    await require_admin_of(ctx, actor, alias)
    return await store.org_invitations(ctx.db, alias, include_all=every)


async def revoke_invitation(ctx: Context, actor: Actor, alias: str, email: str) -> None:
    await require_admin_of(ctx, actor, alias)
    await store.org_revoke_invite(ctx.db, alias, email, actor.name)
