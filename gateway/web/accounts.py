"""Self-registration and account recovery pages (issue 12 item 5), on a site that switches them
on (``conf/sites/<name>.json`` ``accounts``); use cases in ``grants/accounts.py``.

- ``/oauth2/account/register`` (GET form, POST): email, name, user name, password twice. The
  answer is the same "check your email" page whether or not the email has an account.
- ``/oauth2/account/forgot`` (GET form, POST): an email; the same "check your email" page.
- ``/oauth2/account/verify?token=...``: the emailed link; a page with one button (a mail
  scanner that opens links does not use it up); POST verifies the account.
- ``/oauth2/account/reset?token=...``: the emailed link; a new password twice; POST sets it and
  ends every session of the user.

The sign-in page links to the first two with its sealed authorization request (``flow``), so
the pages offer the way back to sign in, and the link pages, once used, offer to continue with
that request. Every POST is a sealed, browser-bound form (``web/forms.py``). Requests that send
mail are throttled per email and per client address: 429 with ``Retry-After`` on the page.
"""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web

from gateway import errors
from gateway.config.model import SiteAccounts
from gateway.grants import accounts
from gateway.grants.context import Context
from gateway.http import pages
from gateway.http.context import grant_context
from gateway.http.errors import read_body
from gateway.oauth.errors import SlowDownError
from gateway.oauth.params import Params, parse_form
from gateway.web.authorize import AUTHORIZE_FORM, restart_url
from gateway.web.forms import FormKind, FormRefused, Refusal, refusal_page

routes = web.RouteTableDef()
FORM_TTL = 1800
REGISTER_FORM = FormKind("account-register", FORM_TTL)
FORGOT_FORM = FormKind("account-forgot", FORM_TTL)
LINK_FORM = FormKind("account-link", FORM_TTL)
LINK_STATUS = {"unknown": 404}


def _site(request: web.Request, ctx: Context) -> SiteAccounts:
    return accounts.site_accounts(ctx.config, request.host or "")


def _off(request: web.Request) -> web.Response:
    return pages.error_page(request, "not_found", pages.texts(request)["account_off"], 404)


def _sign_in(request: web.Request, ctx: Context) -> str | None:
    """The authorization request the sign-in page sealed into its links, as a URL that starts
    it again (None without one, or with one that does not open)."""
    try:
        fields = AUTHORIZE_FORM.open(request, ctx, request.query.get("flow"), posted=False)
    except FormRefused:
        return None
    return restart_url(fields)


def _mail(request: web.Request, ctx: Context) -> accounts.AccountMail:
    return accounts.AccountMail(
        master=ctx.authority.master, theme=pages.theme_of(request), lang=pages.language(request)
    )


def _form_page(
    request: web.Request,
    ctx: Context,
    kind: FormKind,
    template: str,
    title_key: str,
    fields: dict[str, Any],
    *,
    status: int = 200,
    error: str | None = None,
    retry_after: int | None = None,
    **context: object,
) -> web.Response:
    sealed = kind.seal(request, ctx, fields)
    response = pages.render(
        request,
        template,
        title_key=title_key,
        status=status,
        action=request.path,
        hidden={"flow": sealed.value},
        error=error,
        **context,
    )
    if retry_after is not None:
        response.headers[hdrs.RETRY_AFTER] = str(retry_after)
    sealed.bind(response, ctx.settings)
    return response


def _throttled(request: web.Request, exc: SlowDownError) -> dict[str, Any]:
    text = pages.texts(request)["throttled"].format(seconds=exc.retry_after)
    return {"status": 429, "error": text, "retry_after": exc.retry_after}


# --- registration -----------------------------------------------------------------------------


def _register_page(
    request: web.Request, ctx: Context, sign_in: str | None, form: Params | None = None, **kw: Any
) -> web.Response:
    def value(name: str) -> str:
        return form.get(name, "") if form is not None else ""

    return _form_page(
        request, ctx, REGISTER_FORM, "account_register.html", "account_register_title",
        {"r": sign_in}, email=value("email"), name=value("name"), username=value("username"),
        sign_in=sign_in, **kw,
    )  # fmt: skip


@routes.get(accounts.REGISTER_PATH)
async def register_get(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)
    if not _site(request, ctx).registration:
        return _off(request)
    return _register_page(request, ctx, _sign_in(request, ctx))


@routes.post(accounts.REGISTER_PATH)
async def register_post(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)
    site = _site(request, ctx)
    if not site.registration:
        return _off(request)
    form = parse_form(await read_body(request))
    try:
        sign_in = REGISTER_FORM.open(request, ctx, form.get("flow")).get("r")
    except FormRefused as refused:
        return refusal_page(request, refused)
    t = pages.texts(request)
    if form.get("password", "") != form.get("password_again", ""):
        text = t["account_passwords_differ"]
        return _register_page(request, ctx, sign_in, form, status=400, error=text)
    try:
        await accounts.register(
            ctx, site, email=form.get("email", ""), username=form.get("username", ""),
            name=form.get("name", ""), password=form.get("password", ""),
            mail=_mail(request, ctx), continue_to=sign_in,
        )  # fmt: skip
    except accounts.UsernameTaken:
        text = t["register_username_taken"]
        return _register_page(request, ctx, sign_in, form, status=409, error=text)
    except accounts.BadValue as exc:
        return _register_page(request, ctx, sign_in, form, status=400, error=str(exc))
    except SlowDownError as exc:
        return _register_page(request, ctx, sign_in, form, **_throttled(request, exc))
    text = t["account_register_sent"].format(email=form.get("email", "").strip())
    return pages.render(
        request, "account_sent.html", title_key="account_sent_title", text=text, sign_in=sign_in
    )


# --- recovery ---------------------------------------------------------------------------------


def _forgot_page(
    request: web.Request, ctx: Context, sign_in: str | None, email: str = "", **kw: Any
) -> web.Response:
    return _form_page(
        request, ctx, FORGOT_FORM, "account_forgot.html", "account_forgot_title",
        {"r": sign_in}, email=email, sign_in=sign_in, **kw,
    )  # fmt: skip


@routes.get(accounts.FORGOT_PATH)
async def forgot_get(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)
    if not _site(request, ctx).recovery:
        return _off(request)
    return _forgot_page(request, ctx, _sign_in(request, ctx))


@routes.post(accounts.FORGOT_PATH)
async def forgot_post(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)
    site = _site(request, ctx)
    if not site.recovery:
        return _off(request)
    form = parse_form(await read_body(request))
    try:
        sign_in = FORGOT_FORM.open(request, ctx, form.get("flow")).get("r")
    except FormRefused as refused:
        return refusal_page(request, refused)
    email = form.get("email", "")
    try:
        await accounts.request_recovery(
            ctx, site, email=email, mail=_mail(request, ctx), continue_to=sign_in
        )
    except accounts.BadValue as exc:
        return _forgot_page(request, ctx, sign_in, email, status=400, error=str(exc))
    except SlowDownError as exc:
        return _forgot_page(request, ctx, sign_in, email, **_throttled(request, exc))
    text = pages.texts(request)["account_recovery_sent"].format(
        email=email.strip(), minutes=site.reset_ttl // 60
    )
    return pages.render(
        request, "account_sent.html", title_key="account_sent_title", text=text, sign_in=sign_in
    )


# --- the emailed links ------------------------------------------------------------------------


def _problem(request: web.Request, ctx: Context, state: str, purpose: str) -> web.Response:
    site = _site(request, ctx)
    again = None
    if purpose == accounts.RESET and site.recovery:
        again = accounts.FORGOT_PATH
    elif purpose == accounts.VERIFY and site.registration:
        again = accounts.REGISTER_PATH
    return pages.render(
        request,
        "account_problem.html",
        title_key="account_link_problem_heading",
        status=LINK_STATUS.get(state, 410),
        state=state,
        again=again,
    )


def _done(request: web.Request, key: str, continue_to: str | None) -> web.Response:
    text = pages.texts(request)[key]
    return pages.render(
        request, "account_done.html", title_key="account_done_heading", text=text,
        continue_to=continue_to,
    )  # fmt: skip


async def _link_page(
    request: web.Request, ctx: Context, purpose: str, token: str | None, **kw: Any
) -> web.Response:
    try:
        found = await accounts.open_link(ctx, token, purpose)
    except errors.AccountLinkUnusable as exc:
        return _problem(request, ctx, exc.state, purpose)
    assert token is not None
    template, title = (
        ("account_verify.html", "account_verify_title")
        if purpose == accounts.VERIFY
        else ("account_reset.html", "account_reset_title")
    )
    return _form_page(
        request, ctx, LINK_FORM, template, title, {"t": token, "k": purpose},
        email=found.email or "", **kw,
    )  # fmt: skip


async def _posted_link(
    request: web.Request, ctx: Context, purpose: str
) -> tuple[str, Params] | web.Response:
    form = parse_form(await read_body(request))
    try:
        fields = LINK_FORM.open(request, ctx, form.get("flow"))
    except FormRefused as refused:
        return refusal_page(request, refused)
    if fields.get("k") != purpose:  # the other link's form, posted here
        return refusal_page(request, FormRefused(Refusal.FORGED))
    return str(fields["t"]), form


@routes.get(accounts.VERIFY_PATH)
async def verify_get(request: web.Request) -> web.StreamResponse:
    return await _link_page(
        request, grant_context(request), accounts.VERIFY, request.query.get("token")
    )


@routes.post(accounts.VERIFY_PATH)
async def verify_post(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)  # one per request: one database budget, one configuration
    posted = await _posted_link(request, ctx, accounts.VERIFY)
    if isinstance(posted, web.Response):
        return posted
    try:
        used = await accounts.verify(ctx, posted[0])
    except errors.AccountLinkUnusable as exc:
        return _problem(request, ctx, exc.state, accounts.VERIFY)
    return _done(request, "account_verified", used.continue_to)


@routes.get(accounts.RESET_PATH)
async def reset_get(request: web.Request) -> web.StreamResponse:
    return await _link_page(
        request, grant_context(request), accounts.RESET, request.query.get("token")
    )


@routes.post(accounts.RESET_PATH)
async def reset_post(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)  # one per request: one database budget, one configuration
    posted = await _posted_link(request, ctx, accounts.RESET)
    if isinstance(posted, web.Response):
        return posted
    token, form = posted
    password = form.get("password", "")
    try:
        if password != form.get("password_again", ""):
            raise accounts.BadValue(pages.texts(request)["account_passwords_differ"])
        used = await accounts.reset(ctx, token, password)
    except accounts.BadValue as exc:
        return await _link_page(request, ctx, accounts.RESET, token, status=400, error=str(exc))
    except errors.AccountLinkUnusable as exc:
        return _problem(request, ctx, exc.state, accounts.RESET)
    return _done(request, "account_reset_done", used.continue_to)
