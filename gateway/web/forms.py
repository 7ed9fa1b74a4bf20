"""Sealed, browser-bound, single-purpose form state: one type for every page that posts back.

The login, consent and logout pages, and the ``state`` of a sign-in with an external provider,
carry what they need (the authorization request, the session it belongs to, a pending link)
sealed: AES-GCM under the cookie key with a ``purpose`` bound in, an expiry, and a nonce that
must equal the browser's ``__Host-GW-CSRF`` cookie. So a form needs no server-side state, cannot
be forged or edited, is useless in another browser, and cannot be replayed as another form.

That nonce binding is the CSRF defence (RFC 6749 section 10.12; SECURITY-CHECKLIST item 15): a
page on another site cannot read the victim's cookie, so it cannot produce a form whose nonce
matches it, and the ``SameSite=Lax`` cookie is not even sent with its cross-site POST. The
``Origin`` header is checked on top: a POST from another origin is refused, the gateway's own
origin is accepted, and so is ``Origin: null``, which browsers send for a form on a page whose
referrer policy hides the referrer, from privacy modes and after some redirects (see
docs/threat-model.md).

Every refusal is one ``FormRefused`` with its reason, rendered as one HTML page
(``pages.refused_page``) by whichever handler catches it.
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from gateway.config.model import GatewaySettings
from gateway.grants.context import Context
from gateway.http import pages
from gateway.http.cookies import CSRF, same_secret, set_csrf_cookie


class Refusal(enum.Enum):
    """Why a posted form was not accepted (each has its own text on the refused page)."""

    FORGED = "forged"  # missing, edited, sealed for another purpose or with an unknown key
    FOREIGN = "foreign"  # sealed for another browser, or this browser sent no CSRF cookie
    CROSS_ORIGIN = "cross_origin"  # posted from a page of another origin
    EXPIRED = "expired"  # authentic, but older than its lifetime
    SESSION_CHANGED = "session_changed"  # a consent form of a session that is no longer this one


class FormRefused(Exception):  # noqa: N818 - a refusal, raised for the handler to render
    """A form that cannot be accepted. ``fields`` are its content when it was authentic (sealed
    by this gateway), so the handler may offer to start again; None when it was not."""

    def __init__(self, reason: Refusal, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.fields = fields


@dataclass(frozen=True)
class Sealed:
    """A sealed form value and the browser nonce it is bound to; ``bind`` sets the cookie."""

    value: str
    nonce: str

    def bind(self, response: web.StreamResponse, settings: GatewaySettings) -> None:
        set_csrf_cookie(response, settings, self.nonce)


@dataclass(frozen=True)
class FormKind:
    """One kind of form: its purpose (bound into the seal) and how long it stays valid."""

    purpose: str
    ttl: int

    def seal(self, request: web.BaseRequest, ctx: Context, fields: Mapping[str, Any]) -> Sealed:
        """Seal ``fields`` (JSON values) for this browser. The browser's nonce is reused when it
        has one, so forms open in several tabs stay valid together."""
        nonce = request.cookies.get(CSRF) or secrets.token_urlsafe(24)
        payload = {"f": dict(fields), "c": nonce, "e": ctx.now + self.ttl}
        value = ctx.authority.cookie_sealer(ctx.config).seal(
            json.dumps(payload, separators=(",", ":")).encode(), purpose=self.purpose
        )
        return Sealed(value, nonce)

    def open(
        self,
        request: web.BaseRequest,
        ctx: Context,
        sealed: str | None,
        *,
        posted: bool = True,
    ) -> dict[str, Any]:
        """The fields of a form this gateway sealed for this browser, within its lifetime.

        ``posted``: the value arrived in a form POST, whose ``Origin`` is checked too (the
        external provider's callback is a top-level GET from the provider's site instead).
        Raises ``FormRefused``.
        """
        plain = (
            ctx.authority.cookie_sealer(ctx.config).unseal(sealed, purpose=self.purpose)
            if sealed
            else None
        )
        if plain is None:
            raise FormRefused(Refusal.FORGED)
        try:
            payload = json.loads(plain)
            fields = dict(payload["f"])
            nonce, expires = str(payload["c"]), int(payload["e"])
        except (ValueError, KeyError, TypeError):  # sealed by an older release
            raise FormRefused(Refusal.FORGED) from None
        if posted and not is_own_origin(request, ctx):
            raise FormRefused(Refusal.CROSS_ORIGIN, fields)
        if not same_secret(nonce, request.cookies.get(CSRF, "")):
            raise FormRefused(Refusal.FOREIGN, fields)
        if expires < ctx.now:
            raise FormRefused(Refusal.EXPIRED, fields)
        return fields


def is_own_origin(request: web.BaseRequest, ctx: Context) -> bool:
    """Whether a form POST may come from where its ``Origin`` says: absent (older browsers),
    ``null`` (a page that hides its referrer; the sealed nonce is the defence), the issuer's
    origin, or the origin the browser addressed with the issuer's scheme (the gateway reached
    under another name, such as 127.0.0.1 for localhost)."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or origin == "null" or origin == ctx.own_origin:
        return True
    host = request.headers.get(hdrs.HOST)
    scheme = urlsplit(ctx.own_origin).scheme
    return host is not None and origin.lower() == f"{scheme}://{host}".lower()


def refusal_page(
    request: web.BaseRequest,
    refused: FormRefused,
    restart: Callable[[Mapping[str, Any]], str] | None = None,
) -> web.Response:
    """The one answer to a form that was not accepted: an HTML page in the user's language that
    says what happened and, when the form was authentic, links to ``restart(fields)`` (the same
    request, started again in this browser). 400 for an expired form, 403 otherwise."""
    link = restart(refused.fields) if restart is not None and refused.fields is not None else None
    status = 400 if refused.reason is Refusal.EXPIRED else 403
    return pages.refused_page(request, refused.reason.value, restart=link, status=status)
