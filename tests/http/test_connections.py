"""Slow and idle clients (issue 9 item 3): a request head must arrive in time, idle connections
close, and a process caps its connections with a clean refusal. Raw sockets, so that nothing but
the test decides what is sent when; real time is the thing under test, each wait bounded."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.connections import connection_cap, raise_file_limit
from tests.http.proxy_support import Gateway, running_gateway

HEAD_TIMEOUT = 0.6
IDLE_TIMEOUT = 1.5
CAP = 16
BODY_TIMEOUT = 1.0
LIMITS = {
    "head_timeout": HEAD_TIMEOUT,
    "idle_timeout": IDLE_TIMEOUT,
    "body_timeout": BODY_TIMEOUT,
    "max_connections": CAP,
    "login_failures_per_account": 100,
    "login_failures_per_ip": 10000,
    "client_failures": 10000,
    "client_failures_per_ip": 10000,
}
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"


@pytest.fixture
async def gw(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path / "conf", database_url, limits=LIMITS) as gateway:
        yield gateway


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(gw: Gateway) -> Stream:
    return await asyncio.open_connection("127.0.0.1", gw.port)


async def until_closed(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), timeout=limit)
    return data, time.monotonic() - started


async def test_a_half_sent_head_gets_408_and_a_closed_connection(gw: Gateway) -> None:
    """The first line and one header, then nothing: after ``limits.head_timeout`` a 408 (JSON)
    and the connection is closed."""
    reader, writer = await connect(gw)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
    await writer.drain()
    data, took = await until_closed(reader, limit=10)
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data[:100]
    assert b'"error": "request_timeout"' in data
    assert HEAD_TIMEOUT * 0.9 <= took < HEAD_TIMEOUT + 3, took
    writer.close()


async def test_a_trickled_head_is_cut_off_however_busy_it_looks(gw: Gateway) -> None:
    """Slowloris: a byte of a never-ending header every 0.1 s keeps the connection busy but
    never completes a head; it is closed after ``limits.head_timeout`` all the same."""
    reader, writer = await connect(gw)
    writer.write(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
    started = time.monotonic()
    closed = False
    for _ in range(100):  # at most 10 s of trickling
        try:
            writer.write(b"a")
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        if reader.at_eof():
            closed = True
            break
        try:
            chunk = await asyncio.wait_for(reader.read(4096), timeout=0.1)
        except TimeoutError:
            continue
        if chunk.startswith(b"HTTP/1.1 408") or not chunk:
            closed = True
            break
    took = time.monotonic() - started
    assert closed, "the trickling client kept its connection"
    assert took < HEAD_TIMEOUT + 3, took
    writer.close()


async def test_an_idle_connection_closes_after_the_idle_timeout(gw: Gateway) -> None:
    """A connection that says nothing, and one that stays after its answer: both are closed
    after ``limits.idle_timeout``, without an answer of their own."""
    silent_reader, silent = await connect(gw)
    kept_reader, kept = await connect(gw)
    kept.write(HEALTHZ)
    await kept.drain()
    head = await asyncio.wait_for(kept_reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert head.startswith(b"HTTP/1.1 200 OK")
    data, took = await until_closed(silent_reader, limit=10)
    assert data == b""
    assert IDLE_TIMEOUT * 0.9 <= took < IDLE_TIMEOUT + 3, took
    rest, _ = await until_closed(kept_reader, limit=10)
    assert b"HTTP/1.1" not in rest  # the end of the healthz body at most, no other answer
    for writer in (silent, kept):
        writer.close()


async def test_beyond_the_cap_connections_get_a_clean_503(gw: Gateway) -> None:
    """With ``limits.max_connections`` idle connections open, the next one gets 503 with
    ``Retry-After`` and is closed; once one closes, new connections are served again."""
    held = [await connect(gw) for _ in range(CAP)]
    try:
        reader, writer = await connect(gw)
        data, _ = await until_closed(reader, limit=5)
        assert data.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), data[:100]
        assert b"Retry-After: 1\r\n" in data
        assert b'"error": "temporarily_unavailable"' in data
        writer.close()
        _, first = held.pop()
        first.close()
        await first.wait_closed()

        async def healthz_answers() -> bool:
            reader, writer = await connect(gw)
            writer.write(HEALTHZ)
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), timeout=5)
            writer.close()
            return line.startswith(b"HTTP/1.1 200")

        ok = False
        for _ in range(50):  # the server learns of the close on its next loop turn
            if ok := await healthz_answers():
                break
            await asyncio.sleep(0.05)
        assert ok
    finally:
        for _, writer in held:
            writer.close()


async def test_a_normal_request_is_served_during_a_slow_client_attack(
    tmp_path: Path, database_url: str
) -> None:
    """Three hundred half-sent heads (below the default cap): a normal request is answered at
    once, and the attackers are gone after the head timeout."""
    limits = {**LIMITS, "max_connections": 10_000}
    async with running_gateway(tmp_path / "conf", database_url, limits=limits) as gw:
        attackers = []
        for _ in range(300):
            reader, writer = await connect(gw)
            writer.write(b"GET / HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
            attackers.append((reader, writer))
        await asyncio.gather(*(w.drain() for _, w in attackers))
        reader, writer = await connect(gw)
        writer.write(HEALTHZ)
        line = await asyncio.wait_for(reader.readline(), timeout=5)
        assert line.startswith(b"HTTP/1.1 200 OK")
        writer.close()
        closed = await asyncio.wait_for(
            asyncio.gather(*(r.read() for r, _ in attackers)), timeout=HEAD_TIMEOUT + 10
        )
        assert all(c.startswith(b"HTTP/1.1 408") for c in closed)
        for _, w in attackers:
            w.close()


def test_the_file_limit_is_raised_and_bounds_the_cap() -> None:
    """At start the soft open-file limit is raised to the hard one, and the connection cap
    never exceeds what the descriptors allow (two per proxied request, some kept in reserve)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised = raise_file_limit()
    assert raised == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert raised >= soft
    if hard != resource.RLIM_INFINITY:
        assert raised == hard
    assert connection_cap(10_000, 1024) == (1024 - 256) // 2
    assert connection_cap(10_000, 1_048_576) == 10_000


@pytest.mark.parametrize("delay", [0.0, 0.1])
async def test_body_bytes_never_start_the_head_timer(gw: Gateway, delay: float) -> None:
    """A request whose body arrives after its head (at once, or 0.1 s later, after the handler
    has answered without reading it) gets its answer and then only the idle timeout's silent
    close: never a stray 408 that a reused connection would read as its next answer."""
    reader, writer = await connect(gw)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(delay)
    writer.write(b"abcde")
    await writer.drain()
    data, took = await until_closed(reader, limit=10)
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert took >= IDLE_TIMEOUT * 0.8, took
    writer.close()


async def trickle(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader
) -> tuple[bytes, float]:
    """Send a byte every 0.3 s (for at most 10 s) until the server answers and closes."""
    started = time.monotonic()
    for _ in range(33):
        try:
            writer.write(b"a")
            await writer.drain()
        except ConnectionError:
            break
        try:
            first = await asyncio.wait_for(reader.read(4096), timeout=0.3)
        except TimeoutError:
            continue
        rest, _ = await until_closed(reader, limit=5)
        return first + rest, time.monotonic() - started
    return b"", time.monotonic() - started


async def test_a_trickled_body_gets_408_on_the_gateways_own_endpoints(gw: Gateway) -> None:
    """A body that pauses longer than ``limits.body_timeout`` at the token endpoint: 408 and the
    connection closed, however busy the client looks overall."""
    reader, writer = await connect(gw)
    writer.write(
        b"POST /oauth2/token HTTP/1.1\r\nHost: gw\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
    )
    answer, took = await trickle(writer, reader)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout"), answer[:100]
    assert took < BODY_TIMEOUT + 4, took
    writer.close()


async def test_a_trickled_body_gets_408_on_a_proxied_route(gw: Gateway) -> None:
    """The same on a proxied route, where the body streams to the upstream: 408, closed."""
    signed = await gw.sign_in()
    reader, writer = await connect(gw)
    writer.write(
        b"POST /api/orders/1 HTTP/1.1\r\nHost: gw\r\nOrigin: https://app.example.test\r\n"
        b"Cookie: " + signed.cookie_header().encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    )
    answer, took = await trickle(writer, reader)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout"), answer[:100]
    assert took < BODY_TIMEOUT + 4, took
    writer.close()


async def test_a_client_that_stops_reading_is_let_go(gw: Gateway) -> None:
    """A client that asks for a large download and stops reading: once a write has waited
    ``limits.body_timeout`` the gateway closes the connection (the rest is never sent)."""
    signed = await gw.sign_in()
    reader, writer = await connect(gw)
    writer.write(
        b"GET /api/orders/download?n=67108864 HTTP/1.1\r\nHost: gw\r\n"
        b"Origin: https://app.example.test\r\nCookie: "
        + signed.cookie_header().encode()
        + b"\r\n\r\n"
    )
    await writer.drain()
    await asyncio.sleep(BODY_TIMEOUT + 1.5)  # not reading: real time is the thing tested
    received = await until_closed(reader, limit=20)
    assert len(received[0]) < 64 * 1048576
    writer.close()
