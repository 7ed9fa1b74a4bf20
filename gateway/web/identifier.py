"""``/oauth2/identifier``: the identifier-first step of the built-in sign-in, for the hosts of a
site with ``"oauth2": {"identifier": "/oauth2/identifier"}`` (README, "Sites").

``/oauth2/authorize`` sends the browser here with the authorization request in the query, as it
sends it to a site's own page. ``GET`` checks the request and shows a form asking only for the
user name or email, the request sealed in ``flow`` as on the login form (``web/forms.py``).
``POST`` takes ``username`` (or the reference's ``value``) and answers with the password step:
the login form with the name sealed into the flow and shown read-only, and a "Not you?" link
back here. The password goes to ``/oauth2/login`` as before, with its throttling
(SECURITY-CHECKLIST items 137-139) and its one message for every failure.

The step never tells whether an account exists (item 140): the POST looks nothing up (no
database query at all), so its status, headers, body and timing are the same for an existing, a
locked and an unknown name, apart from the echoed name and the per-request seal. The
reference's API form (``daemon.identifier(token, value)`` behind a Bearer token) answers
whether a name exists, an oracle, and is not offered: without this browser's sealed flow a POST
is refused alike whatever the value.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from gateway.grants.context import Context
from gateway.http import pages
from gateway.http.context import grant_context
from gateway.oauth.params import Params
from gateway.web.authorize import (
    IDENTIFIER_PATH,
    Posted,
    checked_request,
    login_form,
    posted_form,
    seal_flow,
    sign_in_offers,
)

routes = web.RouteTableDef()
# Longer than any user name or email address (RFC 5321 4.5.3.1: 64 + 1 + 255).
MAX_IDENTIFIER = 320


@routes.get(IDENTIFIER_PATH)
async def identifier_get(request: web.Request) -> web.Response:
    ctx = grant_context(request)
    checked = checked_request(request, ctx, list(request.query.items()))
    if isinstance(checked, web.Response):
        return checked
    params, auth_request = checked
    return identifier_form(request, ctx, params, username=auth_request.login_hint or "")


@routes.post(IDENTIFIER_PATH)
async def identifier_post(request: web.Request) -> web.StreamResponse:
    posted = await posted_form(request)
    if not isinstance(posted, Posted):
        return posted
    value = (posted.form.get("username") or posted.form.get("value") or "").strip()
    if not value or len(value) > MAX_IDENTIFIER:
        return identifier_form(
            request, posted.ctx, posted.params, message="identifier_missing", status=400
        )
    return login_form(request, posted.ctx, posted.params, identifier=value)


def identifier_form(
    request: web.Request,
    ctx: Context,
    params: Params,
    *,
    username: str = "",
    message: str | None = None,
    status: int = 200,
) -> web.Response:
    """The identifier page of an authorization request, its flow bound to this browser."""
    client = ctx.config.client(params.get("client_id", ""))
    assert client is not None
    flow = seal_flow(request, ctx, params)
    offers = sign_in_offers(request, ctx, "?" + urlencode({"flow": flow.value}))
    response = pages.identifier_page(
        request,
        client_name=client.app,
        action=IDENTIFIER_PATH,
        hidden={"flow": flow.value},
        username=username,
        message=message,
        status=status,
        providers=offers.providers,
        register_url=offers.register_url,
    )
    flow.bind(response, ctx.settings)
    return response
