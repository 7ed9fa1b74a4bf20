"""``/oauth2/account/sessions``: a signed-in person's sessions (issue 14 item 3).

GET lists the live sessions of the browser's ``SID`` user: application, device (from the
User-Agent), address, started, last used (the sign-in, or the last token issued or refreshed in
it: the token handler's hot path does no database I/O, so a request that only presents a valid
access token does not count), with this browser's session marked. POST ends one session, every
other one, or all of them, through ``daemon.session_revoke`` (every token handler refuses their
tokens once the revocation notice arrives). The forms are sealed and bound to this browser and
to this session (``web/forms.py``: the CSRF defence, SECURITY-CHECKLIST item 15), and answered
with 303 back to the list; ending this browser's own session signs it out.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from aiohttp import hdrs, web

from gateway.grants import sessions
from gateway.grants.context import Context
from gateway.grants.devices import describe_device
from gateway.grants.sessions import Session, SessionInfo
from gateway.http import pages
from gateway.http.context import grant_context
from gateway.http.cookies import clear_session_cookies, read_session
from gateway.http.errors import NO_STORE, read_body
from gateway.keys import REVOCATIONS
from gateway.oauth.params import Params, parse_form
from gateway.web.forms import FormKind, FormRefused, Refusal, refusal_page

routes = web.RouteTableDef()
SESSIONS_PATH = "/oauth2/account/sessions"
SESSIONS_FORM = FormKind("account-sessions", 3600)
ACTIONS = frozenset({"end", "end_others", "end_all"})


async def _signed_in(request: web.Request, ctx: Context) -> Session | None:
    session_id = read_session(request, ctx.authority.cookie_sealer(ctx.config))
    return await sessions.current_session(ctx, session_id)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _row(s: SessionInfo, current: Session) -> dict[str, object]:
    return {
        "id": str(s.session_id),
        "client": f"{s.app} ({s.client_id})" if s.app and s.app != s.client_id else s.client_id,
        "device": describe_device(s.user_agent),
        "address": s.ip or "-",
        "started": _when(s.created_at),
        "last_used": _when(s.last_seen_at),
        "current": s.session_id == current.session_id,
    }


@routes.get(SESSIONS_PATH)
async def sessions_get(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)
    session = await _signed_in(request, ctx)
    if session is None:
        return pages.message_page(request, "sessions_signed_out", 401)
    rows = [_row(s, session) for s in await sessions.sessions_of(ctx, session.user_id)]
    sealed = SESSIONS_FORM.seal(request, ctx, {"s": str(session.session_id)})
    response = pages.render(
        request, "account_sessions.html", title_key="sessions_title", action=SESSIONS_PATH,
        hidden={"flow": sealed.value}, user=session.username, sessions=rows,
        others=sum(1 for r in rows if not r["current"]),
    )  # fmt: skip
    sealed.bind(response, ctx.settings)
    return response


@routes.post(SESSIONS_PATH)
async def sessions_post(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)
    form = parse_form(await read_body(request))
    try:
        fields = SESSIONS_FORM.open(request, ctx, form.get("flow"))
    except FormRefused as refused:
        return refusal_page(request, refused, lambda _f: SESSIONS_PATH)
    session = await _signed_in(request, ctx)
    if session is None or str(session.session_id) != fields.get("s"):
        changed = FormRefused(Refusal.SESSION_CHANGED, fields)
        return refusal_page(request, changed, lambda _f: SESSIONS_PATH)
    outcome = await _end(request, ctx, session, form)
    if isinstance(outcome, web.Response):
        return outcome
    if outcome:  # this browser's session too: signed out
        response = pages.message_page(request, "signed_out")
        clear_session_cookies(response, ctx.settings)
        return response
    return web.Response(status=303, headers={hdrs.LOCATION: SESSIONS_PATH, **NO_STORE})


async def _end(
    request: web.Request, ctx: Context, session: Session, form: Params
) -> bool | web.Response:
    """Do what the form asks: whether this browser's session ended too, or an error page."""
    action = form.get("action", "")
    if action not in ACTIONS:
        return pages.error_page(request, "invalid_request", "unknown action", 400)
    if action != "end":
        await sessions.end_other_sessions(ctx, session, keep_this=action == "end_others")
        return action == "end_all"
    try:
        target = UUID(form.get("session", ""))
    except ValueError:
        return pages.error_page(request, "invalid_request", "session is not a session id", 400)
    if not await sessions.end_own_session(ctx, session, target):
        return pages.message_page(request, "sessions_not_found", 404)
    request.app[REVOCATIONS].add("s", str(target))  # here at once; elsewhere by NOTIFY
    return target == session.session_id
