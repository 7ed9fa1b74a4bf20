"""Rate limits shared through Redis (README, "Rate limits"): two replicas (two gateway
applications with their own upstreams, one database, one Redis) admit together exactly what one
bucket holds, requests sent to both at once included; a Redis stalled or down lets requests
through within ``rate_limits.redis_timeout`` with one warning per outage, and limits apply again
once it is back.

The shared tests use the Redis in ``GATEWAY_TEST_REDIS_URL`` when it is set (under a key prefix
of their own; they fail when it does not answer), else a private ``redis-server`` of their own,
as the database tests use an embedded PostgreSQL; the outage test always starts a private one
(never stopping a shared one). SECURITY-CHECKLIST
items 137-141 (throttling answers 429 with ``Retry-After``, across every replica)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.faults import PrivateRedis, private_redis
from tests.http.conftest import CLIENTS, basic
from tests.http.proxy_support import (
    PROXY_CLIENTS,
    Gateway,
    poll,
    route,
    running_gateway,
    send,
)

REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL")
SHARED_LOG = "gateway.ratelimit.shared"
CLIENTS_WITH_LIMITS = {
    **PROXY_CLIENTS,
    "cc": {**CLIENTS["cc"], "rate_limit": {"rate": 0.001, "burst": 3}},
}


def routes(burst: int) -> list[dict[str, Any]]:
    slow = {"rate": 0.001, "burst": burst}  # no refill within a test
    return [
        route("/public/", "{upstream}/v1", auth="none", rate_limit=slow),
        route("/api/limited/", "{upstream}/v1", rate_limit=slow),
    ]


@pytest.fixture
async def shared_redis(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A Redis and a key prefix for this test alone (its keys deleted after): the one in
    ``GATEWAY_TEST_REDIS_URL``, else a private ``redis-server``."""
    if REDIS_URL is None:
        with private_redis(tmp_path / "redis") as server:
            yield server.url, "gateway-test:"
        return
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        async with asyncio.timeout(3):
            await client.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        await client.aclose()
        pytest.fail(
            f"GATEWAY_TEST_REDIS_URL names a Redis that does not answer "
            f"({REDIS_URL.split('@')[-1]}): {type(exc).__name__}: {exc}"
        )
    prefix = f"gateway-test:{uuid.uuid4().hex}:"
    try:
        yield REDIS_URL, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in the metrics"
    return float(match.group(1))


async def metrics_of(gw: Gateway) -> str:
    return (await send(gw, "/metrics", browser=False)).text


async def test_two_replicas_share_one_bucket(
    tmp_path: Path, database_url: str, users: dict[str, str], shared_redis: tuple[str, str]
) -> None:
    url, prefix = shared_redis
    # A generous timeout: this test is about sharing, not about a slow machine's outages.
    settings: dict[str, Any] = {
        "redis": {"url": url},
        "rate_limits": {"redis_prefix": prefix, "redis_timeout": 1.0},
    }
    async with (
        running_gateway(
            tmp_path / "one",
            database_url,
            routes=routes(10),
            clients=CLIENTS_WITH_LIMITS,
            **settings,
        ) as one,
        running_gateway(
            tmp_path / "two",
            database_url,
            routes=routes(10),
            clients=CLIENTS_WITH_LIMITS,
            **settings,
        ) as two,
    ):
        # Anonymous requests from one address, 40 at once, half to each replica.
        answers = await asyncio.gather(*(send(gw, "/public/x") for gw in (one, two) * 20))
        statuses = [answer.status for answer in answers]
        assert statuses.count(200) == 10, statuses
        assert statuses.count(429) == 30, statuses
        assert len(one.upstream.requests) + len(two.upstream.requests) == 10
        assert all(a.headers["Retry-After"] == "1000" for a in answers if a.status == 429)

        # One session on both replicas: one bucket.
        alice = (await one.sign_in(username="alice")).cookie_header()
        answers = await asyncio.gather(
            *(send(gw, "/api/limited/x", cookies=alice) for gw in (one, two) * 8)
        )
        assert [a.status for a in answers].count(200) == 10, [a.status for a in answers]
        bob = (await two.sign_in(username="bob")).cookie_header()
        assert (await send(one, "/api/limited/x", cookies=bob)).status == 200

        # One client on both replicas: one bucket at the token endpoint.
        async def token(gw: Gateway) -> int:
            answer = await send(
                gw,
                "/oauth2/token",
                method="POST",
                headers=basic("cc", "ccs3cr3t"),
                data={"grant_type": "client_credentials"},
                browser=False,
            )
            return answer.status

        tokens = await asyncio.gather(*(token(gw) for gw in (one, two) * 4))
        assert sorted(tokens) == [200] * 3 + [429] * 5, tokens

        for gw in (one, two):
            text = await metrics_of(gw)
            assert metric(text, "gateway_rate_limit_redis_up") == 1.0
            assert metric(text, "gateway_rate_limit_unchecked_total") == 0.0
            assert metric(text, "gateway_rate_limit_redis_outages_total") == 0.0
        texts = [await metrics_of(gw) for gw in (one, two)]
        refused = sum(
            metric(text, f'gateway_rate_limited_total{{scope="{scope}"}}')
            for text in texts
            for scope in ("route", "client")
        )
        assert refused == 30 + 6 + 5

    # The buckets are in Redis, under the configured prefix.
    client = aioredis.Redis.from_url(url)
    try:
        keys = sorted([key.decode() async for key in client.scan_iter(match=f"{prefix}*")])
    finally:
        await client.aclose()
    assert f"{prefix}client:cc" in keys
    assert any(key.startswith(f"{prefix}route:/public/:ip:") for key in keys), keys
    assert sum(key.startswith(f"{prefix}route:/api/limited/:sid:") for key in keys) == 2


def shared_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == SHARED_LOG and record.levelno == logging.WARNING
    ]


async def timed_status(gw: Gateway, path: str) -> tuple[int, float]:
    started = time.monotonic()
    answer = await send(gw, path)
    return answer.status, time.monotonic() - started


async def test_limits_fail_open_while_redis_is_stalled_or_down_and_apply_again_after(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SHARED_LOG)
    with private_redis(tmp_path / "redis") as server:
        await _outage(tmp_path, database_url, server, caplog)


async def _outage(
    tmp_path: Path, database_url: str, server: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    settings: dict[str, Any] = {
        "redis": {"url": server.url},
        "rate_limits": {"redis_prefix": "outage:", "redis_timeout": 0.1},
    }
    async with running_gateway(tmp_path / "conf", database_url, routes=routes(2), **settings) as gw:
        assert [(await send(gw, "/public/x")).status for _ in range(3)] == [200, 200, 429]
        assert shared_warnings(caplog) == []

        server.stall()
        stalled = [await timed_status(gw, "/public/x") for _ in range(5)]
        assert [status for status, _ in stalled] == [200] * 5
        # The first three wait for redis_timeout (three late answers make an outage), the
        # others do not even ask.
        assert all(elapsed < 1.0 for _, elapsed in stalled), stalled

        server.kill()
        down = [await timed_status(gw, "/public/x") for _ in range(5)]
        assert [status for status, _ in down] == [200] * 5
        assert all(elapsed < 1.0 for _, elapsed in down), down

        (warning,) = shared_warnings(caplog)  # one line for the whole outage
        assert f"Redis at 127.0.0.1:{server.port} is unavailable" in warning
        assert "rate limits are not applied until it answers" in warning
        text = await metrics_of(gw)
        assert metric(text, "gateway_rate_limit_redis_up") == 0.0
        assert metric(text, "gateway_rate_limit_redis_outages_total") == 1.0
        assert metric(text, "gateway_rate_limit_unchecked_total") == 10.0

        server.start()  # empty: the bucket is full again

        async def back() -> bool:
            return metric(await metrics_of(gw), "gateway_rate_limit_redis_up") == 1.0

        assert await poll(back, timeout=15), "the gateway did not notice that Redis is back"
        assert [(await send(gw, "/public/x")).status for _ in range(3)] == [200, 200, 429]
        assert any(
            "answers again" in record.getMessage()
            for record in caplog.records
            if record.name == SHARED_LOG and record.levelno == logging.INFO
        )
        assert len(shared_warnings(caplog)) == 1


async def test_a_redis_down_at_start_does_not_stop_the_gateway(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SHARED_LOG)
    with private_redis(tmp_path / "redis") as server:
        server.kill()
        settings: dict[str, Any] = {
            "redis": {"url": server.url},
            "rate_limits": {"redis_prefix": "start:", "redis_timeout": 0.1},
        }
        async with running_gateway(
            tmp_path / "conf", database_url, routes=routes(1), **settings
        ) as gw:
            assert [(await send(gw, "/public/x")).status for _ in range(3)] == [200] * 3
            assert len(shared_warnings(caplog)) == 1
            server.start()

            async def limited() -> bool:
                return (await send(gw, "/public/x")).status == 429

            assert await poll(limited, timeout=15, interval=0.2)
