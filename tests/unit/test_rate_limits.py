"""Rate limits without I/O: the bucket arithmetic (GCRA) and the configuration's errors
(README, "Rate limits"; SECURITY-CHECKLIST items 137-141 name 429 with ``Retry-After`` as the
throttling answer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.config.model import RateLimit, effective_rate_limit, parse_redis_url
from gateway.errors import ConfigError
from gateway.ratelimit.bucket import LocalBuckets, admit
from tests.support import write_conf

T0 = 1_800_000_000.0


def test_a_bucket_admits_its_burst_then_one_per_interval() -> None:
    buckets = LocalBuckets()
    limit = RateLimit(rate=2, burst=3)
    assert [buckets.take("k", limit, T0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k", limit, T0) == pytest.approx(0.5)  # one token in 1/rate seconds
    assert buckets.take("k", limit, T0 + 0.49) == pytest.approx(0.01)
    assert buckets.take("k", limit, T0 + 0.5) == 0.0
    assert buckets.take("k", limit, T0 + 0.5) == pytest.approx(0.5)
    # A long pause refills the bucket to its burst, never beyond.
    later = T0 + 3600
    assert [buckets.take("k", limit, later) for _ in range(4)][-1] == pytest.approx(0.5)


def test_a_refused_request_costs_nothing() -> None:
    tat, wait = admit(T0 + 5, T0, 1.0, 2)
    assert tat == T0 + 5
    assert wait == pytest.approx(4.0)


def test_buckets_are_independent_and_bounded() -> None:
    buckets = LocalBuckets(limit=4)
    limit = RateLimit(rate=1, burst=1)
    assert buckets.take("a", limit, T0) == 0.0
    assert buckets.take("a", limit, T0) == pytest.approx(1.0)
    assert buckets.take("b", limit, T0) == 0.0
    for key in ("c", "d", "e"):
        buckets.take(key, limit, T0 + 10)  # a, b are full again: forgotten to make room
    assert len(buckets) == 3


def test_a_flood_of_new_keys_evicts_the_least_recently_used_not_everything() -> None:
    """Review of issue 14: a full table of live buckets loses its least recently used tenth
    for a new key; the buckets in use keep their state (a flood cannot reset a limit)."""
    buckets = LocalBuckets(limit=20)
    limit = RateLimit(rate=0.001, burst=1)  # one request, then a very long wait
    for i in range(20):
        assert buckets.take(f"k{i}", limit, T0) == 0.0
    assert buckets.take("k0", limit, T0) > 0  # k0 used last now (a refusal does not count)
    buckets.take("k5", limit, T0 + 1)  # refused as well
    assert buckets.take("new", limit, T0 + 2) == 0.0
    assert len(buckets) == 19  # the 2 least recently used went, the new one came
    assert buckets.take("k19", limit, T0 + 3) > 0  # kept: still refused
    assert (
        buckets.take("k0", limit, T0 + 3) == 0.0
    )  # evicted (first inserted, never admitted since)


def test_burst_defaults_to_the_rate_rounded_up() -> None:
    assert RateLimit(rate=20).capacity == 20
    assert RateLimit(rate=0.5).capacity == 1
    assert RateLimit(rate=2.5, burst=10).capacity == 10


def test_own_limit_default_and_opt_out() -> None:
    default = RateLimit(rate=5)
    own = RateLimit(rate=1)
    assert effective_rate_limit(None, default) is default
    assert effective_rate_limit(own, default) is own
    assert effective_rate_limit(False, default) is None
    assert effective_rate_limit(None, None) is None


def issues_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    return [str(issue) for issue in info.value.issues]


ROUTE = {"prefix": "/api/", "upstream": "http://127.0.0.1:9000"}


SHAPE = 'rate_limit: must be an object {"rate": r, "burst": b}, or false for none'


@pytest.mark.parametrize(
    ("limit", "reason"),
    [
        ({"rate": 0}, "rate_limit.rate: Input should be greater than 0"),
        ({"rate": 1, "burst": 0}, "rate_limit.burst: Input should be greater than or equal to 1"),
        ({"burst": 5}, "rate_limit.rate: required key is missing"),
        ({"rate": 1, "per": "minute"}, "rate_limit.per: unknown key"),
        (True, SHAPE),
        ("10/s", SHAPE),
    ],
)
def test_a_bad_route_limit_gets_one_clear_issue(tmp_path: Path, limit: object, reason: str) -> None:
    path = write_conf(tmp_path, gateway={"routes": [{**ROUTE, "rate_limit": limit}]})
    (issue,) = issues_of(path)
    assert issue == f"{path}: routes[0].{reason}"


def test_a_bad_client_limit_and_default_are_reported_together(tmp_path: Path) -> None:
    path = write_conf(
        tmp_path,
        gateway={"rate_limits": {"client_default": {"rate": -1}, "redis_timeout": 0}},
        clients={"svc": {"client_id": "svc", "client_secret": "x" * 32, "rate_limit": {"r": 1}}},
    )
    issues = issues_of(path)
    text = "\n".join(issues)
    assert "gateway.json: rate_limits.client_default.rate" in text
    assert "gateway.json: rate_limits.redis_timeout" in text
    assert "default.json: svc.rate_limit" in text


def test_an_external_providers_app_has_no_rate_limit(tmp_path: Path) -> None:
    path = write_conf(tmp_path)
    (path.parent / "oauth2" / "partner.json").write_text(
        json.dumps({"p": {"client_id": "p", "rate_limit": {"rate": 1}}})
    )
    (issue,) = issues_of(path)
    assert "partner.json: p.rate_limit: rate limits are for clients of this gateway" in issue


def test_limits_load(tmp_path: Path) -> None:
    path = write_conf(
        tmp_path,
        gateway={
            "rate_limits": {"route_default": {"rate": 10, "burst": 20}},
            "routes": [{**ROUTE, "rate_limit": False}],
        },
        clients={"svc": {"client_id": "svc", "client_secret": "x" * 32, "rate_limit": {"rate": 3}}},
    )
    config = load_config(path, environ={})
    assert config.gateway.routes[0].rate_limit is False
    assert config.gateway.rate_limits.route_default == RateLimit(rate=10, burst=20)
    assert config.gateway.rate_limits.client_default is None
    assert config.gateway.rate_limits.redis_timeout == 0.05
    assert config.clients["svc"].config.rate_limit == RateLimit(rate=3)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379",
        "redis://",
        "redis://127.0.0.1:99999",
        "redis://127.0.0.1:6379/zero",
        "redis://127.0.0.1:6379/0?timeout=1",
    ],
)
def test_a_bad_redis_url_is_refused_without_echoing_it(tmp_path: Path, url: str) -> None:
    path = write_conf(tmp_path, gateway={"redis": {"url": url.replace("//", "//:hunter2@", 1)}})
    (issue,) = issues_of(path)
    assert issue.split(": ")[1] == "redis.url", issue
    assert "hunter2" not in issue


def test_a_redis_url_is_parsed() -> None:
    server = parse_redis_url("rediss://gw:p%40ss@redis.internal:6380/2")
    assert (server.host, server.port, server.db, server.tls) == ("redis.internal", 6380, 2, True)
    assert (server.username, server.password) == ("gw", "p@ss")
    assert "p@ss" not in repr(server)
    assert parse_redis_url("redis://127.0.0.1").port == 6379
