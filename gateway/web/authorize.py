"""``/oauth2/authorize`` (alias ``/oauth2/auth``), the built-in login and consent forms.

The authorization request travels through the login and consent pages sealed in a hidden ``flow``
field (``web/forms.py``: an expiry and a nonce bound to this browser's ``__Host-GW-CSRF``
cookie), so the forms need no server-side state and cannot be forged or replayed from another
browser. After a credential POST the browser is sent on with 303 (RFC 9700 section 4.12).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from aiohttp import hdrs, web

from gateway.config.loader import Config
from gateway.config.model import BUILTIN_IDENTIFIER
from gateway.grants import federation, sessions
from gateway.grants.accounts import FORGOT_PATH, REGISTER_PATH, site_accounts
from gateway.grants.authorize import decide
from gateway.grants.context import Context
from gateway.grants.federation import sign_in_providers
from gateway.grants.login import check_password
from gateway.grants.sessions import Session
from gateway.http import pages
from gateway.http.context import grant_context
from gateway.http.cookies import read_session, set_session_cookie
from gateway.http.errors import read_body
from gateway.keys import CONFIG
from gateway.oauth.errors import (
    AccessDeniedError,
    InvalidGrantError,
    InvalidRequestError,
    OAuthError,
    SlowDownError,
)
from gateway.oauth.params import Params, parse_form, parse_query
from gateway.oauth.rfc6749 import (
    AuthorizationRequest,
    PageError,
    RedirectError,
    build_redirect,
    validate_authorization_request,
)
from gateway.web.forms import FormKind, FormRefused, Refusal, Sealed, refusal_page

routes = web.RouteTableDef()
FLOW_TTL = 900
AUTHORIZE_FORM = FormKind("authorize-flow", FLOW_TTL)
AUTHORIZE_PATH = "/oauth2/authorize"
LENIENT = frozenset({"state"})  # checked by the validation, which can then echo it encoded
LOGIN_ACTION = "/oauth2/login"
IDENTIFIER_PATH = BUILTIN_IDENTIFIER
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
        pairs = list(parse_form_pairs(await read_body(request)))
    except InvalidRequestError as exc:
        return error_answer(request, exc)
    return await _authorize(request, pairs)


def error_answer(request: web.Request, error: OAuthError) -> web.Response:
    """An authorization request that cannot be answered at its client's redirect URI (not
    trusted yet: RFC 6749 section 4.1.2.1; SECURITY-CHECKLIST items 63-66). When the site of the
    request's host has an ``oauth2.error`` page, 303 there with the reference's query: ``code``
    (the HTTP status), ``error`` and ``error_description``; never to a URL from the request.
    Otherwise the built-in error page."""
    config = request.config_dict[CONFIG].current
    page = config.site_pages(request.host or "").error
    if page is None:
        return pages.error_page(request, error.error, error.description, error.status)
    query = {"code": str(error.status), "error": error.error}
    if error.description:
        query["error_description"] = error.description
    return redirect(build_redirect(page, query, fragment=False), 303)


def redirect(location: str, status: int = 302) -> web.Response:
    """A redirect whose ``Location`` is sent exactly as built (``web.HTTPFound`` would re-encode
    it through yarl and corrupt ``+``, ``=`` and ``&`` inside a fragment)."""
    return web.Response(
        status=status, headers={hdrs.LOCATION: location, hdrs.CACHE_CONTROL: "no-store"}
    )


async def _authorize(request: web.Request, pairs: list[tuple[str, str]]) -> web.StreamResponse:
    ctx = grant_context(request)
    checked = checked_request(request, ctx, pairs)
    if isinstance(checked, web.Response):
        return checked
    params, auth_request = checked
    session = await current_session(request, ctx)
    return await continue_flow(request, ctx, params, auth_request, session, status=302)


def checked_request(
    request: web.Request, ctx: Context, pairs: list[tuple[str, str]]
) -> tuple[Params, AuthorizationRequest] | web.Response:
    """The authorization request in ``pairs``, validated; or the answer to give instead (the
    error page, or the site's error page, or the error redirect to the client)."""
    try:
        params = parse_query(pairs, lenient=LENIENT)
        return params, validate_request(ctx.config, params)
    except InvalidRequestError as exc:
        return error_answer(request, exc)
    except PageError as exc:
        return error_answer(request, exc.error)
    except RedirectError as exc:
        return redirect(exc.location(ctx.issuer))


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
    """The browser session after a sign-in (``grants.sessions``), or None when the account can
    no longer sign in."""
    browser_session = read_session(request, ctx.authority.cookie_sealer(ctx.config))
    return await sessions.open_browser_session(
        ctx, user_id, client_id, browser_session, password_changed_at
    )


async def current_session(request: web.Request, ctx: Context) -> Session | None:
    session_id = read_session(request, ctx.authority.cookie_sealer(ctx.config))
    return await sessions.current_session(ctx, session_id)


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
            # A site's own page, or the built-in identifier step (BUILTIN_IDENTIFIER), gets
            # the authorization request in its query, as the reference sends it.
            return redirect(build_redirect(site_page, dict(params.items()), fragment=False))
        response = login_form(request, ctx, params, username=auth_request.login_hint or "")
    else:
        assert session is not None
        flow = seal_flow(request, ctx, params, session=str(session.session_id))
        response = pages.consent_page(
            request,
            client_name=client.app,
            action=CONSENT_ACTION,
            hidden={"flow": flow.value},
            scope=auth_request.scope,
        )
        flow.bind(response, ctx.settings)
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
    identifier: str | None = None,
) -> web.Response:
    """The built-in login page for an authorization request: the password form and a button per
    external sign-in provider, all carrying the request sealed and bound to this browser.
    ``link``: an external identity to link to whoever signs in with a password here.
    ``identifier``: the password step after the identifier step: the name is sealed into the
    flow and shown read-only, with a "Not you?" link back to the identifier step."""
    client = ctx.config.client(params.get("client_id", ""))
    assert client is not None
    flow = seal_flow(request, ctx, params, link=link, identifier=identifier)
    query = "?" + urlencode({"flow": flow.value})
    offers = sign_in_offers(request, ctx, query) if link is None else SignInOffers([], None, None)
    response = pages.login_page(
        request,
        client_name=client.app,
        action=LOGIN_ACTION,
        hidden={"flow": flow.value},
        username=username if identifier is None else identifier,
        message=message,
        status=status,
        providers=offers.providers if identifier is None else [],
        fmt={**(link or {}), **(fmt or {})},
        notice="external_link" if link else None,
        register_url=offers.register_url if identifier is None else None,
        forgot_url=offers.forgot_url,
        change_url=None if identifier is None else identifier_url(params),
    )
    flow.bind(response, ctx.settings)
    return response


@dataclass(frozen=True)
class SignInOffers:
    """What a sign-in page offers besides the form: a button per external provider and the
    site's "Create account" and "Forgot password?" links (``query`` carries the flow)."""

    providers: list[tuple[str, str]]
    register_url: str | None
    forgot_url: str | None


def sign_in_offers(request: web.Request, ctx: Context, query: str) -> SignInOffers:
    accounts = site_accounts(ctx.config, request.host or "")
    return SignInOffers(
        [
            (provider.label, EXTERNAL_ACTION.format(provider=name))
            for name, provider in sign_in_providers(ctx.config).items()
        ],
        REGISTER_PATH + query if accounts.registration else None,
        FORGOT_PATH + query if accounts.recovery else None,
    )


def identifier_url(params: Params) -> str:
    """The identifier step of this authorization request, empty ("Not you?": no login_hint)."""
    pairs = [(k, v) for k, v in params.items() if k != "login_hint"]
    return IDENTIFIER_PATH + "?" + urlencode(pairs)


def _site_login_page(
    request: web.Request, config: Config, auth_request: AuthorizationRequest
) -> str | None:
    """A site's own login page (``conf/sites``) for this host, if it has one."""
    site_pages = config.site_pages(request.host or "")
    if "secret" in auth_request.prompt:
        if site_pages.secret is not None:
            return site_pages.secret
        if site_pages.identifier == BUILTIN_IDENTIFIER:
            return None  # the built-in password page: today's login form
    return site_pages.identifier


# --- the sealed flow --------------------------------------------------------------------------


def seal_flow(
    request: web.Request,
    ctx: Context,
    params: Params,
    *,
    session: str | None = None,
    link: dict[str, str] | None = None,
    identifier: str | None = None,
) -> Sealed:
    """The authorization request for the login and consent forms, sealed for this browser;
    ``session``: the session a consent form belongs to; ``link``: a pending external link;
    ``identifier``: the name given at the identifier step, which the password step uses."""
    fields: dict[str, Any] = {"p": list(params.items()), "s": session, "l": link}
    if identifier is not None:
        fields["i"] = identifier
    return AUTHORIZE_FORM.seal(request, ctx, fields)


def flow_params(fields: Mapping[str, Any]) -> Params:
    """The authorization request of an opened flow."""
    return parse_query([(str(k), str(v)) for k, v in fields["p"]], lenient=LENIENT)


def restart_url(fields: Mapping[str, Any]) -> str:
    """The authorization request of a flow as a URL that starts it again in this browser."""
    return AUTHORIZE_PATH + "?" + urlencode([(str(k), str(v)) for k, v in fields["p"]])


def refused_flow(request: web.Request, refused: FormRefused) -> web.Response:
    """The page for a login or consent form that was not accepted."""
    return refusal_page(request, refused, restart_url)


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
    identifier: str | None = None  # the name from the identifier step: the password step's


async def posted_form(request: web.Request) -> Posted | web.StreamResponse:
    """The checked form, or the answer to give instead (expired, error page, error redirect)."""
    ctx = grant_context(request)
    form = parse_form(await read_body(request))
    try:
        fields = AUTHORIZE_FORM.open(request, ctx, form.get("flow"))
        params = flow_params(fields)
        auth_request = validate_request(ctx.config, params)
    except FormRefused as refused:
        return refused_flow(request, refused)
    except PageError as exc:
        return error_answer(request, exc.error)
    except RedirectError as exc:
        return redirect(exc.location(ctx.issuer), 303)
    identifier = fields.get("i")
    return Posted(
        ctx,
        form,
        params,
        auth_request,
        fields.get("s"),
        fields.get("l"),
        str(identifier) if identifier is not None else None,
    )


@routes.post(LOGIN_ACTION)
async def login_post(request: web.Request) -> web.StreamResponse:
    posted = await posted_form(request)
    if not isinstance(posted, Posted):
        return posted
    ctx, form = posted.ctx, posted.form
    client = ctx.config.client(posted.auth_request.client_id)
    assert client is not None
    # After the identifier step the name is the sealed one (the read-only field is not read).
    username = posted.identifier if posted.identifier is not None else form.get("username", "")

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
            identifier=posted.identifier,
        )

    try:
        account = await check_password(
            ctx, username, form.get("password", ""), client_id=client.client_id
        )
    except InvalidGrantError:
        return again("wrong", 401)
    except SlowDownError as exc:
        response = again("throttled", 429, seconds=exc.retry_after)
        response.headers[hdrs.RETRY_AFTER] = str(exc.retry_after)
        return response
    if posted.link is not None:
        identity = federation.pending_identity(posted.link, ctx.now)
        if identity is None:  # the link's own deadline: start again from the provider
            expired = FormRefused(Refusal.EXPIRED, {"p": list(posted.params.items())})
            return refused_flow(request, expired)
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
        changed = FormRefused(Refusal.SESSION_CHANGED, {"p": list(posted.params.items())})
        return refused_flow(request, changed)
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
