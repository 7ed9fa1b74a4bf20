"""``/oauth2/authorize`` (alias ``/oauth2/auth``), the built-in login and consent forms.

The authorization request travels through the login and consent pages sealed in a hidden ``flow``
field (with an expiry and a CSRF nonce that must match the ``__Host-GW-CSRF`` cookie), so the forms
need no server-side state and cannot be forged or replayed from another browser. After a credential
POST the browser is sent on with 303 (RFC 9700 section 4.12).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit
from uuid import UUID

from aiohttp import hdrs, web

from gateway.config.loader import Config
from gateway.grants import federation
from gateway.grants.authorize import decide
from gateway.grants.context import Context
from gateway.grants.federation import sign_in_providers
from gateway.grants.login import check_password
from gateway.oauth.errors import (
    AccessDeniedError,
    InvalidGrantError,
    InvalidRequestError,
    SlowDownError,
)
from gateway.oauth.params import Params, parse_form, parse_query
from gateway.oauth.rfc6749 import (
    AuthorizationRequest,
    PageError,
    RedirectError,
    validate_authorization_request,
)
from gateway.store import sessions as store
from gateway.store.sessions import Session
from gateway.web import pages
from gateway.web.context import grant_context
from gateway.web.cookies import CSRF, read_session, same_secret, set_csrf_cookie, set_session_cookie

routes = web.RouteTableDef()
FLOW_PURPOSE = "authorize-flow"
FLOW_TTL = 900
LENIENT = frozenset({"state"})  # checked by the validation, which can then echo it encoded
LOGIN_ACTION = "/oauth2/login"
EXTERNAL_ACTION = "/oauth2/external/{provider}"
CONSENT_ACTION = "/oauth2/consent"


# --- the authorization endpoint ---------------------------------------------------------------


@routes.get("/oauth2/authorize")
@routes.get("/oauth2/auth")
async def authorize_get(request: web.Request) -> web.StreamResponse:
    return await _authorize(request, list(request.query.items()))


@routes.post("/oauth2/authorize")
@routes.post("/oauth2/auth")
async def authorize_post(request: web.Request) -> web.StreamResponse:
    try:
        pairs = list(parse_form_pairs(await request.read()))
    except InvalidRequestError as exc:
        return pages.error_page(request, exc.error, exc.description)
    return await _authorize(request, pairs)


def redirect(location: str, status: int = 302) -> web.Response:
    """A redirect whose ``Location`` is sent exactly as built (``web.HTTPFound`` would re-encode
    it through yarl and corrupt ``+``, ``=`` and ``&`` inside a fragment)."""
    return web.Response(
        status=status, headers={hdrs.LOCATION: location, hdrs.CACHE_CONTROL: "no-store"}
    )


async def _authorize(request: web.Request, pairs: list[tuple[str, str]]) -> web.StreamResponse:
    ctx = grant_context(request)
    try:
        params = parse_query(pairs, lenient=LENIENT)
        auth_request = validate_request(ctx.config, params)
    except InvalidRequestError as exc:
        return pages.error_page(request, exc.error, exc.description)
    except PageError as exc:
        return pages.error_page(request, exc.error.error, exc.error.description)
    except RedirectError as exc:
        return redirect(exc.location(ctx.issuer))
    session = await current_session(request, ctx)
    return await continue_flow(request, ctx, params, auth_request, session, status=302)


def parse_form_pairs(body: bytes) -> list[tuple[str, str]]:
    return list(parse_form(body).items())


def validate_request(config: Config, params: Params) -> AuthorizationRequest:
    def lookup(client_id: str) -> Any:
        client = config.client(client_id)
        return client.config if client else None

    return validate_authorization_request(params, lookup)


async def open_browser_session(
    request: web.Request,
    ctx: Context,
    user_id: UUID,
    client_id: str,
    password_changed_at: datetime | None = None,
) -> Session | None:
    """The browser session after a sign-in: the browser's own one renewed when it is this user's
    and live (``daemon.session_open`` checks), else a new one. None when the account can no
    longer sign in (locked, or a password changed since ``password_changed_at``)."""
    try:
        session_id = await store.session_open(
            ctx.db,
            user_id=user_id,
            client_id=client_id,
            ttl=ctx.settings.tokens.session_ttl,
            ip=ctx.ip,
            user_agent=ctx.user_agent,
            session_id=read_session(request, ctx.authority.cookie_sealer(ctx.config)),
            password_changed_at=password_changed_at,
        )
    except InvalidGrantError:
        return None
    return await store.session_get(ctx.db, session_id)


async def current_session(request: web.Request, ctx: Context) -> Session | None:
    session_id = read_session(request, ctx.authority.cookie_sealer(ctx.config))
    return await store.session_get(ctx.db, session_id) if session_id else None


async def continue_flow(
    request: web.Request,
    ctx: Context,
    params: Params,
    auth_request: AuthorizationRequest,
    session: Session | None,
    *,
    status: int,
    fresh_login: bool = False,
    consented: bool = False,
    set_sid: bool = False,
) -> web.StreamResponse:
    client = ctx.config.client(auth_request.client_id)
    assert client is not None
    try:
        outcome = await decide(
            ctx, client, auth_request, session, fresh_login=fresh_login, consented=consented
        )
    except RedirectError as exc:
        outcome = exc.location(ctx.issuer)
    if isinstance(outcome, str):
        response: web.StreamResponse = redirect(outcome, status)
    elif outcome.page == "login":
        site_page = _site_login_page(request, ctx.config, auth_request)
        if site_page is not None:
            return redirect(site_page + "?" + urlencode(list(params.items())))
        response = login_form(request, ctx, params, username=auth_request.login_hint or "")
    else:
        assert session is not None
        nonce = request.cookies.get(CSRF) or secrets.token_urlsafe(24)
        response = pages.consent_page(
            request,
            client_name=client.app,
            action=CONSENT_ACTION,
            hidden={"flow": _seal_flow(ctx, params, nonce, session=str(session.session_id))},
            scope=auth_request.scope,
        )
        set_csrf_cookie(response, ctx.settings, nonce)
    if set_sid and session is not None:
        set_session_cookie(
            response, ctx.settings, ctx.authority.cookie_sealer(ctx.config), session.session_id
        )
    return response


def login_form(
    request: web.Request,
    ctx: Context,
    params: Params,
    *,
    username: str = "",
    message: str | None = None,
    status: int = 200,
    fmt: dict[str, object] | None = None,
    link: dict[str, str] | None = None,
) -> web.Response:
    """The built-in login page for an authorization request: the password form and a button per
    external sign-in provider, all carrying the request sealed and bound to this browser.
    ``link``: an external identity to link to whoever signs in with a password here."""
    client = ctx.config.client(params.get("client_id", ""))
    assert client is not None
    nonce = request.cookies.get(CSRF) or secrets.token_urlsafe(24)
    providers = [
        (provider.label, EXTERNAL_ACTION.format(provider=name))
        for name, provider in sign_in_providers(ctx.config).items()
    ]
    response = pages.login_page(
        request,
        client_name=client.app,
        action=LOGIN_ACTION,
        hidden={"flow": _seal_flow(ctx, params, nonce, link=link)},
        username=username,
        message=message,
        status=status,
        providers=[] if link else providers,
        fmt={**(link or {}), **(fmt or {})},
        notice="external_link" if link else None,
    )
    set_csrf_cookie(response, ctx.settings, nonce)
    return response


def _site_login_page(
    request: web.Request, config: Config, auth_request: AuthorizationRequest
) -> str | None:
    """A site's own login page (``conf/sites``) for this host, if it has one."""
    host = (request.host or "").split(":", 1)[0].lower()
    for site in config.sites.values():
        if host in (h.lower() for h in site.hosts):
            pages_ = site.oauth2
            page = pages_.secret if "secret" in auth_request.prompt else None
            return page or pages_.identifier
    return None


# --- the sealed flow --------------------------------------------------------------------------


def _seal_flow(
    ctx: Context,
    params: Params,
    nonce: str,
    *,
    session: str | None = None,
    link: dict[str, str] | None = None,
) -> str:
    flow = {
        "p": list(params.items()),
        "c": nonce,
        "e": int(time.time()) + FLOW_TTL,
        "s": session,
        "l": link,
    }
    sealer = ctx.authority.cookie_sealer(ctx.config)
    return sealer.seal(json.dumps(flow).encode(), purpose=FLOW_PURPOSE)


def _open_flow(
    request: web.Request, ctx: Context, form: Params
) -> tuple[Params, str | None, dict[str, str] | None]:
    """The sealed authorization request of a form POST, after the CSRF checks (RFC 6749 10.12)."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and origin != _origin_of(ctx.issuer):
        raise web.HTTPForbidden(reason="cross-origin form submission")
    sealed = form.get("flow")
    plain = (
        ctx.authority.cookie_sealer(ctx.config).unseal(sealed, purpose=FLOW_PURPOSE)
        if sealed
        else None
    )
    if plain is None:
        raise web.HTTPForbidden(reason="missing or forged form")
    flow = json.loads(plain)
    cookie = request.cookies.get(CSRF, "")
    if not same_secret(str(flow["c"]), cookie):
        raise web.HTTPForbidden(reason="the form does not belong to this browser")
    if int(flow["e"]) < time.time():
        raise _Expired
    pairs = [(str(k), str(v)) for k, v in flow["p"]]
    return parse_query(pairs, lenient=LENIENT), flow.get("s"), flow.get("l")


class _Expired(Exception):  # noqa: N818
    pass


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# --- the login and consent forms --------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    """A login or consent form that passed the CSRF checks, with its authorization request."""

    ctx: Context
    form: Params
    params: Params
    auth_request: AuthorizationRequest
    flow_session: str | None
    link: dict[str, str] | None = None  # an external identity to link after a password sign-in


async def posted_form(request: web.Request) -> Posted | web.StreamResponse:
    """The checked form, or the answer to give instead (expired, error page, error redirect)."""
    ctx = grant_context(request)
    form = parse_form(await request.read())
    try:
        params, flow_session, link = _open_flow(request, ctx, form)
        auth_request = validate_request(ctx.config, params)
    except _Expired:
        return pages.message_page(request, "expired", status=400)
    except PageError as exc:
        return pages.error_page(request, exc.error.error, exc.error.description)
    except RedirectError as exc:
        return redirect(exc.location(ctx.issuer), 303)
    return Posted(ctx, form, params, auth_request, flow_session, link)


@routes.post(LOGIN_ACTION)
async def login_post(request: web.Request) -> web.StreamResponse:
    posted = await posted_form(request)
    if not isinstance(posted, Posted):
        return posted
    ctx, form = posted.ctx, posted.form
    client = ctx.config.client(posted.auth_request.client_id)
    assert client is not None
    username = form.get("username", "")

    def again(message: str, status: int, **fmt: object) -> web.Response:
        return login_form(
            request,
            ctx,
            posted.params,
            username=username,
            message=message,
            status=status,
            fmt=fmt,
            link=posted.link,
        )

    try:
        account = await check_password(ctx, username, form.get("password", ""))
    except InvalidGrantError:
        return again("wrong", 401)
    except SlowDownError as exc:
        response = again("throttled", 429, seconds=exc.retry_after)
        response.headers[hdrs.RETRY_AFTER] = str(exc.retry_after)
        return response
    if posted.link is not None:
        identity = federation.pending_identity(posted.link)
        if identity is None:
            return pages.message_page(request, "expired", status=400)
        try:
            await federation.link(ctx, identity, account.user_id, account.password_changed_at)
        except AccessDeniedError:
            return again("external_denied", 403)
        except InvalidGrantError:  # locked, or a new password, since the check
            return again("wrong", 401)
    session = await open_browser_session(
        request, ctx, account.user_id, client.client_id, account.password_changed_at
    )
    if session is None:  # locked, or a new password, since the check
        return again("wrong", 401)
    return await continue_flow(
        request,
        ctx,
        posted.params,
        posted.auth_request,
        session,
        status=303,
        fresh_login=True,
        set_sid=True,
    )


@routes.post(CONSENT_ACTION)
async def consent_post(request: web.Request) -> web.StreamResponse:
    posted = await posted_form(request)
    if not isinstance(posted, Posted):
        return posted
    ctx, auth_request = posted.ctx, posted.auth_request
    session = await current_session(request, ctx)
    if session is None or str(session.session_id) != posted.flow_session:
        raise web.HTTPForbidden(reason="the consent form belongs to another session")
    if posted.form.get("decision") != "allow":
        denied = RedirectError(
            AccessDeniedError("the user denied access"),
            auth_request.redirect_uri,
            auth_request.state,
            auth_request.fragment,
        )
        return redirect(denied.location(ctx.issuer), 303)
    return await continue_flow(
        request, ctx, posted.params, auth_request, session, status=303, consented=True
    )
