"""``POST /oauth2/external/<provider>`` and ``GET /oauth2/code/<provider>``: signing in with an
external OpenID provider from the login page (protocol: ``gateway/grants/federation.py``).

The login page's provider button posts the sealed authorization request here, with the same CSRF
checks as the password form. The browser goes to the provider with a ``state`` that seals the
request, the PKCE verifier, the nonce and the browser's CSRF nonce; the provider sends it back to
``/oauth2/code/<provider>``, where the state must open, belong to this browser and be fresh
before the code is redeemed (RFC 6749 10.12, RFC 9700 4.7: no login CSRF, no code injection).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiohttp import web

from gateway.grants.context import Context
from gateway.grants.federation import (
    Attempt,
    ExternalSignInFailed,
    authorization_url,
    finish,
    pending_link,
    redeem_attempt,
    sign_in_providers,
)
from gateway.http import pages
from gateway.http.context import grant_context
from gateway.oauth.errors import AccessDeniedError
from gateway.oauth.rfc6749 import PageError, RedirectError
from gateway.web.authorize import (
    Posted,
    continue_flow,
    flow_params,
    login_form,
    open_browser_session,
    posted_form,
    redirect,
    refused_flow,
    validate_request,
)
from gateway.web.forms import FormKind, FormRefused, Refusal

routes = web.RouteTableDef()
log = logging.getLogger(__name__)
STATE_TTL = 600
# The provider's ``state``: the authorization request ("p", as in the login form, so a refused
# state can start it again), the provider, the PKCE verifier, the nonce and the fresh-login time.
STATE_FORM = FormKind("external-sign-in", STATE_TTL)


def callback_url(ctx: Context, provider: str) -> str:
    """The redirect URI to register at the provider."""
    return ctx.endpoint(f"/oauth2/code/{provider}")


@routes.post("/oauth2/external/{provider}")
async def external_start(request: web.Request) -> web.StreamResponse:
    posted = await posted_form(request)
    if not isinstance(posted, Posted):
        return posted
    ctx = posted.ctx
    provider = sign_in_providers(ctx.config).get(request.match_info["provider"])
    if provider is None:
        return pages.error_page(request, "invalid_request", "unknown sign-in provider", 404)
    request_ = posted.auth_request
    fresh = "login" in request_.prompt or request_.max_age is not None
    attempt = Attempt.new(fresh=fresh, now=ctx.now)
    state = {
        "p": list(posted.params.items()),
        "idp": provider.name,
        "v": attempt.verifier,
        "n": attempt.nonce,
        "t": attempt.fresh_since,
    }
    # posted_form checked the browser's nonce, which the state is bound to in turn.
    sealed = STATE_FORM.seal(request, ctx, state).value
    location = authorization_url(provider, callback_url(ctx, provider.name), sealed, attempt)
    return redirect(location, 303)


@routes.get("/oauth2/code/{provider}")
async def external_callback(request: web.Request) -> web.StreamResponse:
    ctx = grant_context(request)
    name = request.match_info["provider"]
    try:
        state = STATE_FORM.open(request, ctx, request.query.get("state"), posted=False)
        if state.get("idp") != name:  # a state of another provider's flow, replayed here
            raise FormRefused(Refusal.FORGED)
    except FormRefused as refused:
        return refused_flow(request, refused)
    try:
        params = flow_params(state)
        auth_request = validate_request(ctx.config, params)
    except PageError as exc:
        return pages.error_page(request, exc.error.error, exc.error.description)
    except RedirectError as exc:
        return redirect(exc.location(ctx.issuer))
    provider = sign_in_providers(ctx.config).get(name)
    if provider is None:
        return pages.error_page(request, "invalid_request", "unknown sign-in provider", 404)

    def again(message: str | None, status: int, link: dict[str, str] | None = None) -> web.Response:
        fmt: dict[str, object] = {"provider": provider.label, **(link or {})}
        return login_form(request, ctx, params, message=message, status=status, fmt=fmt, link=link)

    code = request.query.get("code")
    if "error" in request.query or not code:
        return again("external_failed", 400)
    # One redemption per attempt (keyed by its nonce, not the state's encoding): a replayed
    # callback neither reaches the provider nor signs in.
    until = datetime.fromtimestamp(ctx.now + STATE_TTL, UTC)  # outlives the state
    if not await redeem_attempt(ctx, str(state["n"]), until):
        return refused_flow(request, FormRefused(Refusal.EXPIRED, state))
    try:
        fresh_since = state.get("t")
        attempt = Attempt(
            str(state["v"]), str(state["n"]), int(fresh_since) if fresh_since else None
        )
        identity, user_id = await finish(
            ctx, provider, code, callback_url(ctx, provider.name), attempt
        )
    except ExternalSignInFailed as exc:
        log.warning("sign-in with %s failed: %s", provider.name, exc)
        return again("external_failed", 400)
    except AccessDeniedError:
        return again("external_denied", 403)
    if user_id is None:
        # Not linked yet: whoever signs in with the local password on this page links it.
        return again(None, 200, link=pending_link(identity, provider.label, ctx.now))
    session = await open_browser_session(request, ctx, user_id, auth_request.client_id)
    if session is None:  # locked since the link was looked up
        return again("external_denied", 403)
    return await continue_flow(
        request, ctx, params, auth_request, session, status=302, fresh_login=True, set_sid=True
    )
