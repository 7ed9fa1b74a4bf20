"""The token handler's upstream client (gateway/proxy/client.py) against real servers on
127.0.0.1: keep-alive reuse, body framing both ways, HEAD/204, timeouts, broken upstreams and
the retry of a connection the upstream closed while it was idle."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.proxy.client import (
    Timeouts,
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamPool,
    UpstreamTimeout,
)
from tests.support import free_port

FAST = Timeouts(connect=2.0, read=2.0)
# The upstream server and what it saw: (method, client port) of each request.
Upstream = tuple[TestServer, list[tuple[str, object]]]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    """An upstream that records which connection (client port) each request came on."""
    seen: list[tuple[str, object]] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append((request.method, peer[1] if peer else None))
        body = await request.read()
        if request.path == "/chunked":
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (b"alpha-", b"beta-", b"gamma"):
                await response.write(part)
            await response.write_eof()
            return response
        if request.path == "/empty":
            return web.Response(status=204)
        if request.path == "/slow":
            await asyncio.sleep(3)
        if request.path == "/big":
            return web.Response(body=b"b" * 3_000_000)
        digest = hashlib.sha256(body).hexdigest()
        return web.json_response(
            {"len": len(body), "sha": digest, "te": request.headers.get("Transfer-Encoding")}
        )

    app = web.Application(client_max_size=10_000_000)
    app.router.add_route("*", "/{tail:.*}", echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, seen
    await server.close()


def pool_for(server: TestServer) -> UpstreamPool:
    assert server.port is not None
    return UpstreamPool("http", "127.0.0.1", server.port)


async def test_connections_are_reused(upstream: Upstream) -> None:
    server, seen = upstream
    pool = pool_for(server)
    for _ in range(5):
        response = await pool.request("GET", "/x", [], None, content_length=None, timeouts=FAST)
        assert response.status == 200
        await response.read()
        response.release()
    assert len({port for _, port in seen}) == 1
    pool.close()


async def test_bodies_are_framed_both_ways(upstream: Upstream) -> None:
    server, _ = upstream
    pool = pool_for(server)
    data = bytes(range(256)) * 4096  # 1 MiB

    async def stream() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    expected = hashlib.sha256(data).hexdigest()
    for body, length, te in ((data, None, None), (stream(), len(data), None)):
        response = await pool.request("POST", "/up", [], body, content_length=length, timeouts=FAST)
        answer = await response.read()
        response.release()
        assert f'"sha": "{expected}"'.encode() in answer
        assert f'"te": {"null" if te is None else te}'.encode() in answer
    chunked = await pool.request("POST", "/up", [], stream(), content_length=None, timeouts=FAST)
    answer = await chunked.read()
    chunked.release()
    assert f'"sha": "{expected}"'.encode() in answer
    assert b'"te": "chunked"' in answer
    pool.close()


async def test_chunked_head_and_empty_answers(upstream: Upstream) -> None:
    server, _ = upstream
    pool = pool_for(server)
    chunked = await pool.request("GET", "/chunked", [], None, content_length=None, timeouts=FAST)
    assert await chunked.read() == b"alpha-beta-gamma"
    chunked.release()
    head = await pool.request("HEAD", "/x", [], None, content_length=None, timeouts=FAST)
    assert head.status == 200
    assert int(head.headers["Content-Length"]) > 0
    assert await head.read() == b""
    head.release()
    empty = await pool.request("DELETE", "/empty", [], None, content_length=None, timeouts=FAST)
    assert empty.status == 204
    assert await empty.read() == b""
    empty.release()
    big = await pool.request("GET", "/big", [], None, content_length=None, timeouts=FAST)
    total = 0
    async for chunk in big.iter_chunks():
        total += len(chunk)
    big.release()
    assert total == 3_000_000
    pool.close()


async def test_timeouts_and_unreachable_upstreams(upstream: Upstream) -> None:
    server, _ = upstream
    pool = pool_for(server)
    with pytest.raises(UpstreamTimeout):
        await pool.request(
            "GET", "/slow", [], None, content_length=None, timeouts=Timeouts(2.0, 0.5)
        )
    closed = UpstreamPool("http", "127.0.0.1", free_port())
    with pytest.raises(UpstreamConnectError):
        await closed.request("GET", "/", [], None, content_length=None, timeouts=FAST)
    pool.close()


async def test_malformed_and_cut_answers_are_broken() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool("http", "127.0.0.1", port)
    response = await pool.request("GET", "/", [], None, content_length=None, timeouts=FAST)
    with pytest.raises(UpstreamBroken):
        await response.read()
    response.release()

    async def nonsense(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    other = await asyncio.start_server(nonsense, "127.0.0.1", 0)
    bad = UpstreamPool("http", "127.0.0.1", other.sockets[0].getsockname()[1])
    with pytest.raises(UpstreamBroken):
        await bad.request("GET", "/", [], None, content_length=None, timeouts=FAST)
    for srv in (server, other):
        srv.close()
        await srv.wait_closed()


async def test_a_connection_closed_while_idle_is_retried_once() -> None:
    """The upstream closes each kept-alive connection right after answering (as servers with a
    short keep-alive timeout do): the next request on that stale connection is retried on a
    fresh one instead of failing."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # without Connection: close, so the client keeps it

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    pool = UpstreamPool("http", "127.0.0.1", server.sockets[0].getsockname()[1])
    for _ in range(3):
        response = await pool.request("GET", "/", [], None, content_length=None, timeouts=FAST)
        assert await response.read() == b"ok"
        response.release()
        await asyncio.sleep(0.2)
    assert connections == 3
    pool.close()
    server.close()
    await server.wait_closed()
