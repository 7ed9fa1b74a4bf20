"""Rendering of every error the gateway answers with, in one middleware.

OAuth errors become RFC 6749 section 5.2 JSON with ``Cache-Control: no-store`` and the right
challenge; ``aiohttp`` HTTP errors (404, 405, 413) become the same JSON shape; database outages
become 503 with ``Retry-After``; anything unexpected becomes ``500 server_error`` carrying only the
request id, with the traceback in the log.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import ClientConnectionResetError, hdrs, web
from aiohttp.web_protocol import RequestPayloadError

from gateway.errors import InvalidInputError, StoreError, UpstreamError
from gateway.http import pages
from gateway.http.cors import add_cors_headers, preflight
from gateway.keys import CONFIG, REQUEST_ID
from gateway.logs import request_id_var
from gateway.oauth import errors as oauth

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
NO_STORE: dict[str, str] = {"Cache-Control": "no-store", "Pragma": "no-cache"}
REALM = 'realm="gateway"'
RETRY_AFTER = 5


def _wants_page(request: web.BaseRequest) -> bool:
    """A browser navigation (a page or a form post) rather than an API call."""
    return "text/html" in request.headers.get(hdrs.ACCEPT, "")


async def read_body(request: web.Request) -> bytes:
    """The request body, which must arrive within ``limits.body_timeout`` (408 otherwise: a
    client trickling a body would hold its connection and a slot of the cap for ever)."""
    limit = request.config_dict[CONFIG].current.gateway.limits.body_timeout
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(reason="the request body did not arrive in time") from None


def json_error(
    status: int, error: str, description: str = "", headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": error}
    if description:
        body["error_description"] = description
    return web.json_response(body, status=status, headers={**NO_STORE, **(headers or {})})


def upstream_error_response(err: UpstreamError) -> web.Response:
    """The JSON answer for an upstream failure (502, 504, a body refused with 408 or 413); after
    a 408 the connection closes (the rest of the body may still be on its way)."""
    response = json_error(err.status, err.error, err.description)
    if err.status == 408:
        response.force_close()
    return response


def render_oauth_error(err: oauth.OAuthError) -> web.Response:
    headers: dict[str, str] = {}
    if isinstance(err, oauth.InvalidClientError):
        if err.challenge:
            headers[hdrs.WWW_AUTHENTICATE] = f"Basic {REALM}"
    elif isinstance(
        err, oauth.InvalidTokenError | oauth.InsufficientScopeError | oauth.BearerRequestError
    ):
        challenge = f'Bearer {REALM}, error="{err.error}"'
        if isinstance(err, oauth.MissingTokenError):
            challenge = f"Bearer {REALM}"
        headers[hdrs.WWW_AUTHENTICATE] = challenge
    elif isinstance(err, oauth.SlowDownError):
        headers[hdrs.RETRY_AFTER] = str(err.retry_after)
    elif isinstance(err, oauth.TemporarilyUnavailableError):
        headers[hdrs.RETRY_AFTER] = "5"
    if isinstance(err, oauth.MissingTokenError):
        return web.json_response(
            {"error": err.error}, status=err.status, headers={**NO_STORE, **headers}
        )
    return web.json_response(err.as_dict(), status=err.status, headers={**NO_STORE, **headers})


_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "access_denied",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
}


def http_error_code(status: int) -> str:
    """The ``error`` of a plain HTTP failure: its name, else the class's (never a bare "error")."""
    return _HTTP_CODES.get(status) or ("server_error" if status >= 500 else "invalid_request")


class RequestIds:
    """Request ids: a random per-process prefix and a counter (unique, cheap; not secrets)."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


REQUEST_IDS = web.AppKey("request_ids", RequestIds)
# Never proxied nor served (RFC 9110 9.3.6, 9.3.8): tunnels and request echoes.
REFUSED_METHODS = frozenset({"CONNECT", "TRACE", "TRACK"})
ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Assign the request id, answer CORS preflights, and turn every failure into JSON."""
    incoming = request.headers.get("X-Request-Id")
    if incoming is not None and _REQUEST_ID.match(incoming):
        request_id = incoming
    else:
        request_id = request.app[REQUEST_IDS].next()
    request[REQUEST_ID] = request_id
    token = request_id_var.set(request_id)
    try:
        if request.method in REFUSED_METHODS:
            raise web.HTTPMethodNotAllowed(request.method, ALLOWED_METHODS)
        response = preflight(request) or await handler(request)
    except oauth.OAuthError as err:
        response = render_oauth_error(err)
    except UpstreamError as err:
        response = upstream_error_response(err)
    except InvalidInputError:
        response = json_error(400, "invalid_request", "a value in the request cannot be used")
    except RequestPayloadError:
        # A body the parser cannot read (bad compression, a broken chunk): the client's fault.
        response = json_error(400, "invalid_request", "the request body cannot be read")
        response.force_close()
    except (ConnectionResetError, ClientConnectionResetError):
        # The client went away mid-request: nobody is left to answer. Ending the handler as
        # cancelled is how aiohttp expects it (a debug line, no traceback).
        log.info("client disconnected during %s %s", request.method, request.path)
        raise asyncio.CancelledError from None
    except StoreError as exc:
        log.warning(
            "database unavailable while serving %s %s: %s", request.method, request.path, exc
        )
        if _wants_page(request):
            response = pages.unavailable_page(request, RETRY_AFTER)
        else:
            response = json_error(
                503,
                "temporarily_unavailable",
                "the database is unavailable; retry later",
                {hdrs.RETRY_AFTER: str(RETRY_AFTER)},
            )
    except web.HTTPException as exc:
        if exc.status < 400:
            exc.headers["X-Request-Id"] = request_id
            raise
        headers = {k: v for k, v in exc.headers.items() if k in (hdrs.ALLOW, hdrs.RETRY_AFTER)}
        response = json_error(exc.status, http_error_code(exc.status), exc.reason or "", headers)
        if exc.status == 408:
            response.force_close()  # the rest of a late body must not be read as a request
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error while serving %s %s", request.method, request.path)
        response = json_error(500, "server_error", f"internal error; request id {request_id}")
    finally:
        request_id_var.reset(token)
    response.headers["X-Request-Id"] = request_id
    return response


async def prepare_response(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: no version in ``Server``, no MIME sniffing, CORS."""
    headers = response.headers
    headers[hdrs.SERVER] = "gateway"
    if "X-Content-Type-Options" not in headers:
        headers["X-Content-Type-Options"] = "nosniff"
    add_cors_headers(request, response)
