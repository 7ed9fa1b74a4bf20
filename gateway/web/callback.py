"""``GET /oauth2/callback``: the reference's callback endpoint.

A site with ``oauth2.callback`` (``conf/sites``, for the request's host) gets the browser with
the query as it came (a code and state, or ``code=403&error=...&error_description=...``): 302
to that page, the query appended to the page's own. The fragment of an implicit response
(``#access_token=...``) never reaches the server; the browser carries it over to the page, as
RFC 9110 section 10.2.2 has it for a ``Location`` without one. The target is the configured
page only, never a URL from the request (SECURITY-CHECKLIST item 66).

Without a site page: a built-in page for a developer testing with
``redirect_uri=<issuer>/oauth2/callback``, which lists the query's parameters (escaped).
The code is never logged (the access log has no query strings).
"""

from __future__ import annotations

from aiohttp import web

from gateway.http import pages
from gateway.keys import CONFIG
from gateway.oauth.rfc6749 import build_redirect
from gateway.web.authorize import redirect

routes = web.RouteTableDef()
CALLBACK_PATH = "/oauth2/callback"
SHOWN_PARAMS = 20  # the built-in page lists at most this many parameters


@routes.get(CALLBACK_PATH)
async def callback(request: web.Request) -> web.Response:
    config = request.config_dict[CONFIG].current
    page = config.site_pages(request.host or "").callback
    pairs = list(request.query.items())
    if page is None:
        return pages.callback_page(request, pairs[:SHOWN_PARAMS])
    return redirect(build_redirect(page, pairs, fragment=False))
