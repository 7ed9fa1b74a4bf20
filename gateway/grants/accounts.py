"""Self-registration and account recovery (issue 12 item 5), switched on per site
(``conf/sites/<name>.json`` ``accounts``).

Registration::

    form -> throttle (per email, per address) -> hash the password -> daemon.account_register
         -> created / replaced: a pending account, its verification link mailed
         -> exists (a verified account has the email): a notice mailed instead
    every outcome answers with the same "check your email" page
    link -> daemon.account_verify -> the account may sign in

Recovery::

    form -> throttle -> daemon.account_recover -> a reset link mailed, or nothing at all
    link (30 minutes, single use) -> daemon.account_reset -> new password, every session ended

The answers never say whether an email has an account (SECURITY-CHECKLIST item 140): the page,
the status and the work done (a password hash, both mails rendered and sealed, one SQL call) are
the same for a known and an unknown email. A link token is 256 random bits; only its SHA-256 is
stored. Links are built on the issuer, never on the request's ``Host`` (no reset-link
poisoning), and keep working until they expire even if the site's switch is turned off since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from gateway import errors
from gateway.config.loader import Config
from gateway.config.model import SiteAccounts
from gateway.grants import organizations
from gateway.grants.context import Context
from gateway.grants.issue import secret_hash
from gateway.grants.organizations import (
    BadValue,
    UsernameTaken,
    check_email,
    check_name,
    new_token,
    well_formed,
)
from gateway.oauth.errors import SlowDownError
from gateway.passwords import check_new_password
from gateway.store import accounts as store
from gateway.store import throttle
from gateway.store.errors import UserExistsError
from gateway.themes import Theme
from gateway.tokens.seal import Sealer

REGISTER_PATH = "/oauth2/account/register"
FORGOT_PATH = "/oauth2/account/forgot"
VERIFY_PATH = "/oauth2/account/verify"
RESET_PATH = "/oauth2/account/reset"
VERIFY, RESET = "verify_email", "reset_password"
CONTINUE_PREFIX = "/oauth2/authorize?"
DISABLED = SiteAccounts()

AccountLink = store.AccountLink
LinkUsed = store.LinkUsed

__all__ = ["BadValue", "UsernameTaken"]


@dataclass(frozen=True)
class AccountMail:
    """How the account emails are made: the master key that seals them for the outbox, and
    the theme and language they are written in (the request's)."""

    master: Sealer
    theme: Theme
    lang: str = "en"


def site_accounts(config: Config, host: str) -> SiteAccounts:
    """The ``accounts`` switches of the site the request's ``Host`` names; both off when none."""
    name = config.site_for_host(host)
    return config.sites[name].accounts if name is not None else DISABLED


def link(issuer: str, path: str, token: str) -> str:
    return f"{issuer}{path}?{urlencode({'token': token})}"


def check_username(username: str) -> str:
    """A chosen user name, checked as an invitation's (``organizations.check_username``:
    normalised, no spaces or invisible characters); here never with ``@``, since sign-in takes a
    user name or an email and a self-registered name must not look like anyone's email."""
    value = organizations.check_username(username)
    if "@" in value:
        raise BadValue("the user name must be 1 to 128 characters, without spaces or @")
    return value


def _continue(continue_to: str | None) -> str | None:
    if continue_to is None or not continue_to.startswith(CONTINUE_PREFIX):
        return None
    return continue_to if len(continue_to) <= 4096 else None


async def throttle_request(ctx: Context, email: str) -> None:
    """Count a request that sends a mail, per email and per client address (040_throttle.sql);
    ``SlowDownError`` with the seconds to wait past the limits. Known and unknown emails are
    counted alike, so the limit says nothing about an account either."""
    limits = ctx.settings.limits
    keys = [f"account:email:{email.lower()}"]
    thresholds = [limits.account_requests_per_email]
    if ctx.ip:
        keys.append(f"account:ip:{ctx.ip}")
        thresholds.append(limits.account_requests_per_ip)
    wait = await throttle.throttle_attempt(
        ctx.db, tuple(keys), tuple(thresholds), limits.account_lock_seconds, ctx.ip, ctx.user_agent
    )
    if wait:
        raise SlowDownError("too many requests; try again later", retry_after=wait)


def _mail(mail: AccountMail, kind: str, to: str, **context: object) -> store.QueuedMail:
    return organizations.sealed_mail(mail.theme, mail.lang, mail.master, kind, to, **context)


async def register(
    ctx: Context,
    accounts: SiteAccounts,
    *,
    email: str,
    username: str,
    name: str,
    password: str,
    mail: AccountMail,
    continue_to: str | None = None,
) -> None:
    """Register a pending account (or mail a notice to the owner of a verified one); the same
    outcome for the caller either way. ``BadValue`` for input, ``UsernameTaken``,
    ``SlowDownError``."""
    email = check_email(email)
    username = check_username(username)
    name = check_name(name)
    problem = check_new_password(password)
    if problem:
        raise BadValue(problem)
    await throttle_request(ctx, email)
    password_hash = await ctx.authority.hash_password(password)
    token, digest = new_token()
    expires = datetime.fromtimestamp(ctx.now + accounts.verify_ttl, UTC)
    issuer = ctx.issuer
    # Both mails are made every time: the work does not depend on the email's owner.
    verify_mail = _mail(
        mail, VERIFY, email, name=name, link=link(issuer, VERIFY_PATH, token), expires_at=expires
    )
    forgot = f"{issuer}{FORGOT_PATH}" if accounts.recovery else None
    notice_mail = _mail(mail, "account_exists", email, name=None, link=forgot)
    try:
        await store.account_register(
            ctx.db,
            email=email,
            username=username,
            name=name,
            password_hash=password_hash,
            token_hash=digest,
            ttl=accounts.verify_ttl,
            continue_to=_continue(continue_to),
            verify_mail=verify_mail,
            notice_mail=notice_mail,
        )
    except UserExistsError:
        raise UsernameTaken("this user name is taken") from None


async def request_recovery(
    ctx: Context,
    accounts: SiteAccounts,
    *,
    email: str,
    mail: AccountMail,
    continue_to: str | None = None,
) -> None:
    """Mail a reset link to the account with ``email``, if there is one; the same outcome for
    the caller either way. ``BadValue``, ``SlowDownError``."""
    email = check_email(email)
    await throttle_request(ctx, email)
    token, digest = new_token()
    expires = datetime.fromtimestamp(ctx.now + accounts.reset_ttl, UTC)
    queued = _mail(
        mail, RESET, email, name=None, link=link(ctx.issuer, RESET_PATH, token), expires_at=expires
    )
    await store.account_recover(
        ctx.db,
        email=email,
        token_hash=digest,
        ttl=accounts.reset_ttl,
        continue_to=_continue(continue_to),
        mail=queued,
    )


async def open_link(ctx: Context, token: str | None, purpose: str) -> AccountLink:
    """The pending link ``token`` names; ``AccountLinkUnusable`` for a malformed, unknown, used
    or expired one."""
    if token is None or not well_formed(token):
        raise errors.AccountLinkUnknown("this link is not valid")
    found = await store.account_link_lookup(ctx.db, secret_hash(token), purpose)
    if found is None:
        raise errors.AccountLinkUnknown("this link is not valid")
    if found.state == "used":
        raise errors.AccountLinkUsed("used")
    if found.state == "expired":
        raise errors.AccountLinkExpired("expired")
    return found


async def verify(ctx: Context, token: str) -> LinkUsed:
    """Use a verification link: the account may sign in from now on."""
    if not well_formed(token):
        raise errors.AccountLinkUnknown("this link is not valid")
    return await store.account_verify(ctx.db, secret_hash(token))


async def reset(ctx: Context, token: str, password: str) -> LinkUsed:
    """Use a reset link: the new password, and every session of the user ended. ``BadValue``
    for a password that cannot be used (the link stays usable then)."""
    if not well_formed(token):
        raise errors.AccountLinkUnknown("this link is not valid")
    problem = check_new_password(password)
    if problem:
        raise BadValue(problem)
    password_hash = await ctx.authority.hash_password(password)
    return await store.account_reset(ctx.db, secret_hash(token), password_hash)
