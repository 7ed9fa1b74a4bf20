"""``/oauth2/invitation?token=...``: the link of an invitation email (issue 12 item 4).

- No account has the invited email: the registration page (``pages/invitation_register.html``),
  with the email fixed, the organisation's name shown and locked and the account type fixed;
  the person enters a name and a password. Posting it creates the account (the email counts as
  verified: the link reached that mailbox), makes them a member with the invited role, uses up
  the invitation and signs them in.
- An account has it: the sign-in page with the email filled in, then "Join <organisation>?"
  (``pages/invitation_join.html``); a browser already signed in as that account only confirms.
- Then the browser goes to the inviting client's ``initiate_login_uri`` with ``iss`` and
  ``login_hint`` (OpenID Connect Core section 4): the application starts its own authorization
  request, with its own PKCE, and the gateway answers it from the new session without asking
  again. Without one, a page says the account is ready.
- An unknown, expired, used or revoked link, or one of a removed organisation: a page that says
  which, and how to get a new invitation (``pages/invitation_problem.html``); nothing changes.

The forms are sealed for this browser and purpose (``web/forms.py``): posted from another site,
in another browser, edited or too late, they are refused; posted again after success, the
invitation is used and the page says so.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from aiohttp import hdrs, web

from gateway import errors
from gateway.grants import organizations as orgs
from gateway.grants.context import Context
from gateway.grants.login import check_password
from gateway.http import pages
from gateway.http.context import grant_context
from gateway.http.cookies import set_session_cookie
from gateway.http.errors import read_body
from gateway.oauth.errors import InvalidGrantError, SlowDownError
from gateway.oauth.params import Params, parse_form
from gateway.web.authorize import current_session, open_browser_session
from gateway.web.forms import FormKind, FormRefused, refusal_page

routes = web.RouteTableDef()
INVITATION_FORM = FormKind("invitation", 1800)
STATUS = {"unknown": 404, "other_email": 403, "account_exists": 409}


def _problem(request: web.Request, state: str, organization: str | None = None) -> web.Response:
    return pages.render(
        request,
        "invitation_problem.html",
        title_key="invitation_title",
        status=STATUS.get(state, 410),
        state=state,
        organization_name=organization,
    )


@routes.get(orgs.INVITATION_PATH)
async def invitation_get(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)
    token = request.query.get("token")
    try:
        view = await orgs.open_invitation(ctx, token)
    except errors.InvitationUnusable as exc:
        return _problem(request, exc.state)
    assert token is not None
    return await _page(request, ctx, token, view)


async def _page(
    request: web.Request,
    ctx: Context,
    token: str,
    view: orgs.InvitationView,
    *,
    message: str | None = None,
    status: int = 200,
    form: Params | None = None,
) -> web.Response:
    kind = "register" if view.user_id is None else "join"
    sealed = INVITATION_FORM.seal(request, ctx, {"t": token, "k": kind})
    common: dict[str, Any] = {
        "action": orgs.INVITATION_PATH,
        "hidden": {"flow": sealed.value},
        "organization_name": view.organization_name,
        "email": view.email,
        "role": view.role,
        "error": message,
    }
    if view.user_id is None:
        response = pages.render(
            request,
            "invitation_register.html",
            title_key="register_title",
            status=status,
            username=form.get("username", view.email) if form else view.email,
            name=form.get("name", "") if form else "",
            **common,
        )
    else:
        session = await current_session(request, ctx)
        signed_in = session is not None and session.user_id == view.user_id
        response = pages.render(
            request,
            "invitation_join.html",
            title_key="invitation_title",
            status=status,
            signed_in=signed_in,
            **common,
        )
    sealed.bind(response, ctx.settings)
    return response


@routes.post(orgs.INVITATION_PATH)
async def invitation_post(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)
    form = parse_form(await read_body(request))
    try:
        fields = INVITATION_FORM.open(request, ctx, form.get("flow"))
    except FormRefused as refused:
        return refusal_page(request, refused)
    token = str(fields["t"])
    try:
        view = await orgs.open_invitation(ctx, token)
    except errors.InvitationUnusable as exc:
        return _problem(request, exc.state)
    if fields.get("k") == "register" and view.user_id is not None:
        # The invited email got an account since the page was shown: sign in and join.
        text = pages.texts(request)["invitation_account_exists"]
        return await _page(request, ctx, token, view, message=text, status=409)
    try:
        if view.user_id is None:
            user_id = await _register(ctx, token, view.email, form)
        else:
            user_id = await _join(request, ctx, token, view, form)
    except orgs.BadValue as exc:
        texts = pages.texts(request)
        text = texts[exc.key] if exc.key and exc.key in texts else str(exc)
        status = 409 if isinstance(exc, orgs.UsernameTaken) else 400
        return await _page(request, ctx, token, view, message=text, status=status, form=form)
    except _WrongPassword as wrong:
        return wrong.response(await _page(request, ctx, token, view, message=wrong.text,
                                          status=wrong.status))  # fmt: skip
    except errors.InvitationAccountExists:
        # The invited email registered meanwhile (self-registration, another browser): join.
        try:
            fresh = await orgs.open_invitation(ctx, token)
        except errors.InvitationUnusable as exc:
            return _problem(request, exc.state, view.organization_name)
        return await _page(request, ctx, token, fresh, message=None, status=409)
    except errors.InvitationUnusable as exc:
        return _problem(request, exc.state, view.organization_name)
    return await _signed_in(request, ctx, view, user_id)


class _WrongPassword(Exception):  # noqa: N818 - an answer, raised from a helper
    def __init__(self, text: str, status: int, retry_after: int | None = None) -> None:
        super().__init__(text)
        self.text, self.status, self.retry_after = text, status, retry_after

    def response(self, page: web.Response) -> web.Response:
        if self.retry_after is not None:
            page.headers[hdrs.RETRY_AFTER] = str(self.retry_after)
        return page


async def _register(ctx: Context, token: str, email: str, form: Params) -> UUID:
    if form.get("password", "") != form.get("password_again", ""):
        raise orgs.BadValue("the two passwords are not the same", "register_password_mismatch")
    return await orgs.register(
        ctx,
        token,
        email=email,
        username=form.get("username", ""),
        name=form.get("name", ""),
        password=form.get("password", ""),
    )


async def _join(
    request: web.Request, ctx: Context, token: str, view: orgs.InvitationView, form: Params
) -> UUID:
    """The account of the invited email, proven by this browser's session or its password."""
    assert view.user_id is not None
    session = await current_session(request, ctx)
    if session is not None and session.user_id == view.user_id and form.get("password") is None:
        user_id = view.user_id
    else:
        t = pages.texts(request)
        try:
            account = await check_password(
                ctx, view.email, form.get("password", ""), origin="invitation"
            )
        except InvalidGrantError:
            raise _WrongPassword(t["wrong"], 401) from None
        except SlowDownError as exc:
            text = t["throttled"].format(seconds=exc.retry_after)
            raise _WrongPassword(text, 429, exc.retry_after) from None
        user_id = account.user_id
    await orgs.accept(ctx, token, user_id)
    return user_id


async def _signed_in(
    request: web.Request, ctx: Context, view: orgs.InvitationView, user_id: UUID
) -> web.Response:
    """Signed in (a session for the inviting client), then on to its ``initiate_login_uri``;
    the page that says the account is ready when there is nowhere to go."""
    target = orgs.initiate_login_url(ctx.config, view.client_id, view.email)
    response: web.Response
    if target is not None:
        response = web.Response(status=303, headers={hdrs.LOCATION: target})
    else:
        response = pages.render(
            request,
            "invitation_done.html",
            title_key="invitation_title",
            organization_name=view.organization_name,
        )
    client_id = view.client_id if view.client_id in ctx.config.clients else None
    if client_id is not None:
        session = await open_browser_session(request, ctx, user_id, client_id)
        if session is not None:
            sealer = ctx.authority.cookie_sealer(ctx.config)
            set_session_cookie(response, ctx.settings, sealer, session.session_id)
    return response
