"""WebSocket upgrades on routes with ``"websocket": true``.

The handshake is authenticated like any request (cookie or Bearer, refresh included: the
handshake answer carries the new cookies); the upstream gets the Bearer token. Messages are
pumped both ways until either side closes, and the connection is closed (1008, policy violation)
as soon as its session or token family is revoked, or when the access token it was opened with
expires (the session's own end included: a token never outlives its session). The browser then
opens a new one, which refreshes the tokens or finds the session over.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
from aiohttp import WSMsgType, hdrs, web
from multidict import CIMultiDict
from yarl import URL

from gateway.clock import Clock
from gateway.errors import UpstreamError
from gateway.grants.revoked import Revocations
from gateway.http.errors import json_error
from gateway.proxy.credentials import Principal
from gateway.proxy.exchange import Exchange, cookie_setter, upstream_headers

POLICY_VIOLATION = 1008


async def proxy_websocket(
    exchange: Exchange, url: URL, principal: Principal | None
) -> web.StreamResponse:
    request, route, state = exchange.request, exchange.route, exchange.state
    if not web.WebSocketResponse().can_prepare(request).ok:
        refused = json_error(400, "invalid_request", "not a valid WebSocket handshake")
        cookie_setter(exchange)(refused)  # a refresh done for this request still reaches it
        return refused
    # The same headers as any proxied request: Bearer, identity, forwarding, request id.
    headers = CIMultiDict(upstream_headers(exchange, principal))
    claims: dict[str, Any] = dict(principal.claims) if principal else {}
    protocols = [
        p.strip()
        for p in request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "").split(",")
        if p.strip()
    ]
    ws_url = url.with_scheme("wss" if url.scheme == "https" else "ws")
    try:
        upstream = await state.upstreams.session(route).ws_connect(
            ws_url,
            headers=headers,
            protocols=protocols,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
            autoclose=False,
            autoping=True,
        )
    except (aiohttp.ClientError, TimeoutError):
        raise UpstreamError(502, "bad_gateway", "the upstream refused the WebSocket") from None

    code: int = aiohttp.WSCloseCode.GOING_AWAY
    message = b""
    try:
        client = web.WebSocketResponse(
            protocols=(upstream.protocol,) if upstream.protocol else (), autoclose=False
        )
        cookie_setter(exchange)(client)
        await client.prepare(request)
        revocations: Revocations = state.revocations
        watch = asyncio.create_task(_watch(revocations, claims, exchange.state.clock))
        tasks = [
            asyncio.create_task(_pump(client, upstream)),
            asyncio.create_task(_pump(upstream, client)),
            watch,
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            ended = watch.result() if watch in done else None
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        code = POLICY_VIOLATION if ended else aiohttp.WSCloseCode.OK
        message = ended.encode() if ended else b""
        await client.close(code=code, message=message)
    finally:
        # Whatever happened to the browser side, the upstream connection is not left open.
        await upstream.close(code=code, message=message)
    return client


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif (
            message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
            or message.type == WSMsgType.ERROR
        ):
            break


async def _watch(revocations: Revocations, claims: dict[str, Any], clock: Clock) -> str:
    """Why the connection must end: its session or family was revoked, or its access token
    expired. Never returns for an anonymous connection."""
    if not claims:
        await asyncio.Event().wait()
    expires = claims.get("exp")
    deadline = float(expires) if isinstance(expires, int | float) else None
    while not revocations.is_revoked(claims):
        event = revocations.changed()
        try:
            if revocations.is_revoked(claims):
                break
            left = None if deadline is None else deadline - clock.time()
            if left is not None and left <= 0:
                return "session expired"
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await event.wait()
        finally:
            revocations.forget(event)
    return "session revoked"
