"""Rate limits in one process (README, "Rate limits"): a bucket per client at the token,
revocation and introspection endpoints, one per route and session on proxied routes, per client
address without a session. Over the limit: 429 with ``Retry-After`` and a JSON body, CORS headers
for allowed origins; refills follow the application's clock (moved, never slept).

SECURITY-CHECKLIST items 137-141 (429 with ``Retry-After`` as the throttling answer; item 139:
spoofed forwarding headers cannot reset a limit; item 141(d): a client scanning introspection is
throttled per client)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.keys import CONFIG
from tests.http.conftest import CLIENTS, basic
from tests.http.proxy_support import (
    APP,
    EVIL,
    PROXY_CLIENTS,
    Answer,
    Gateway,
    route,
    running_gateway,
    send,
    write_proxy_conf,
)

LIMITED = {"rate": 1, "burst": 3}


def limited_routes(upstream: str) -> list[dict[str, Any]]:
    base = f"{upstream}/v1"
    return [
        route("/api/limited/", base, rate_limit=LIMITED),
        route("/api/free/", base),
        route("/public/", base, auth="none", rate_limit={"rate": 1, "burst": 2}),
        route("/api/slow/", base, rate_limit={"rate": 0.0001, "burst": 2}),
    ]


LIMITED_CLIENTS = {
    **PROXY_CLIENTS,
    "cc": {**CLIENTS["cc"], "rate_limit": {"rate": 0.5, "burst": 2}},
    "rs": {**CLIENTS["rs"], "rate_limit": {"rate": 1, "burst": 2}},
}


@pytest.fixture
async def gw(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Gateway]:
    async with running_gateway(
        tmp_path / "conf",
        database_url,
        routes=limited_routes("{upstream}"),
        clients=LIMITED_CLIENTS,
    ) as gateway:
        yield gateway


async def token(gw: Gateway, client: str, secret: str) -> Answer:
    return await send(
        gw,
        "/oauth2/token",
        method="POST",
        headers=basic(client, secret),
        data={"grant_type": "client_credentials", "scope": "orders.read"},
        browser=False,
    )


def assert_too_many(answer: Answer, retry_after: str, error: str) -> None:
    assert answer.status == 429, answer.text
    assert answer.headers["Retry-After"] == retry_after
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["error"] == error
    assert "retry later" in body["error_description"]


async def test_a_client_over_its_limit_gets_slow_down_until_its_bucket_refills(
    gw: Gateway,
) -> None:
    """Item 141: 429 with ``Retry-After`` (RFC 6585 section 4) and the RFC 6749 JSON shape."""
    assert [(await token(gw, "cc", "ccs3cr3t")).status for _ in range(2)] == [200, 200]
    refused = await token(gw, "cc", "ccs3cr3t")
    assert_too_many(refused, "2", "slow_down")  # 0.5 a second: a token every 2 s
    assert "access_token" not in refused.text

    # A client without a limit of its own (and no default) is not limited.
    assert [(await token(gw, "conf", "s3cr3t")).status for _ in range(8)] == [200] * 8

    gw.clock.advance(1.0)
    assert_too_many(await token(gw, "cc", "ccs3cr3t"), "1", "slow_down")
    gw.clock.advance(1.0)
    assert (await token(gw, "cc", "ccs3cr3t")).status == 200
    assert (await token(gw, "cc", "ccs3cr3t")).status == 429


async def test_revocation_and_introspection_share_the_clients_bucket(gw: Gateway) -> None:
    """Only an authenticated client takes from its bucket: failed authentications (throttled
    on their own) cannot use up another client's budget."""

    async def call(path: str, secret: str = "rss3cr3t") -> Answer:
        return await send(
            gw,
            path,
            method="POST",
            headers=basic("rs", secret),
            data={"token": "not-a-token"},
            browser=False,
        )

    wrong = [(await call("/oauth2/introspect", "wrong")).status for _ in range(4)]
    assert wrong == [401] * 4
    first = await call("/oauth2/introspect")
    assert first.status == 200, first.text
    assert first.json() == {"active": False}
    assert (await call("/oauth2/revoke")).status == 200
    assert_too_many(await call("/oauth2/introspect"), "1", "slow_down")
    assert_too_many(await call("/oauth2/revoke"), "1", "slow_down")
    gw.clock.advance(1.0)
    assert (await call("/oauth2/revoke")).status == 200


async def test_each_session_has_its_own_bucket_on_a_route(gw: Gateway) -> None:
    alice = (await gw.sign_in(username="alice")).cookie_header()
    bob = (await gw.sign_in(username="bob")).cookie_header()

    statuses = [(await send(gw, "/api/limited/a", cookies=alice)).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    gw.upstream.clear()
    refused = await send(gw, "/api/limited/a", cookies=alice)
    assert_too_many(refused, "1", "too_many_requests")
    assert gw.upstream.requests == []  # a refused request never reaches the upstream
    # A browser on an allowed origin can read the 429 and its Retry-After (CORS, bba 6.1.3.3.2).
    assert refused.headers["Access-Control-Allow-Origin"] == APP
    assert refused.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Retry-After" in refused.headers["Access-Control-Expose-Headers"]
    # Another origin's page is refused by the CSRF check first (and can read nothing).
    foreign = await send(gw, "/api/limited/a", cookies=alice, headers={"Origin": EVIL})
    assert foreign.status == 403
    assert "Access-Control-Allow-Origin" not in foreign.headers

    # Bob's session, and alice's requests to a route without a limit, are not affected.
    assert [(await send(gw, "/api/limited/b", cookies=bob)).status for _ in range(3)] == [200] * 3
    assert [(await send(gw, "/api/free/a", cookies=alice)).status for _ in range(6)] == [200] * 6
    assert (await send(gw, "/api/limited/b", cookies=bob)).status == 429

    # One token a second comes back: one request passes, the next is refused again.
    gw.clock.advance(1.0)
    assert (await send(gw, "/api/limited/a", cookies=alice)).status == 200
    assert (await send(gw, "/api/limited/a", cookies=alice)).status == 429

    metrics = await send(gw, "/metrics", browser=False)
    assert 'gateway_rate_limited_total{scope="route"} 3.0' in metrics.text
    assert 'gateway_rate_limited_total{scope="client"} 0.0' in metrics.text


async def test_a_bearer_token_takes_from_its_sessions_bucket(gw: Gateway) -> None:
    """The key is the access token's ``sid``, however the token travels."""
    signed = await gw.sign_in(username="alice", client_id="spab")
    bearer = {"Authorization": f"Bearer {signed.body['access_token']}"}
    cookies = signed.cookie_header()
    assert (await send(gw, "/api/limited/1", cookies=cookies)).status == 200
    assert (await send(gw, "/api/limited/1", headers=bearer, browser=False)).status == 200
    assert (await send(gw, "/api/limited/1", cookies=cookies)).status == 200
    assert (await send(gw, "/api/limited/1", headers=bearer, browser=False)).status == 429


async def test_an_expired_access_token_counts_for_the_session_its_sid_cookie_names(
    gw: Gateway,
) -> None:
    """Without a valid access token the ``SID`` cookie names the session: its bucket, not the
    address's. A refused request is not refreshed (no database work, no cookies)."""
    alice = (await gw.sign_in(username="alice")).cookie_header()
    assert [(await send(gw, "/api/slow/1", cookies=alice)).status for _ in range(2)] == [200] * 2
    gw.clock.advance(3601)  # the access token (3600 s) has expired; 0.36 of a token came back
    refused = await send(gw, "/api/slow/1", cookies=alice)
    assert_too_many(refused, "6399", "too_many_requests")  # 10000 s a token, 3601 s gone
    assert refused.set_cookies == []
    # Another session from the same address still has its own full bucket.
    bob = (await gw.sign_in(username="bob")).cookie_header()
    assert (await send(gw, "/api/slow/1", cookies=bob)).status == 200


async def test_without_a_session_the_client_address_is_limited(gw: Gateway) -> None:
    """Item 139: without trusted proxies, a forwarded header does not make a new client."""
    assert [(await send(gw, "/public/x")).status for _ in range(2)] == [200, 200]
    for spoof in ("10.0.0.1", "10.0.0.2"):
        spoofed = await send(
            gw,
            "/public/x",
            headers={"X-Forwarded-For": spoof, "Forwarded": f"for={spoof}", "X-Real-IP": spoof},
        )
        assert_too_many(spoofed, "1", "too_many_requests")


async def test_a_reload_applies_new_limits_and_defaults(gw: Gateway, tmp_path: Path) -> None:
    alice = (await gw.sign_in(username="alice")).cookie_header()
    assert [(await send(gw, "/api/free/1", cookies=alice)).status for _ in range(4)] == [200] * 4

    upstream = f"{gw.upstream.root}/v1"
    write_proxy_conf(
        tmp_path / "conf",
        [
            route("/api/limited/", upstream, rate_limit=False),
            route("/api/free/", upstream),
            route("/public/", upstream, auth="none"),
        ],
        clients=LIMITED_CLIENTS,
        rate_limits={"route_default": {"rate": 1, "burst": 2}},
    )
    assert gw.server.app is not None
    assert gw.server.app[CONFIG].reload()

    # The default now limits the route that had none; false opts a route out of it.
    assert [(await send(gw, "/api/free/1", cookies=alice)).status for _ in range(3)] == [
        200,
        200,
        429,
    ]
    assert [(await send(gw, "/api/limited/1", cookies=alice)).status for _ in range(6)] == [200] * 6


async def test_a_public_clients_bucket_is_per_address(
    tmp_path: Path, database_url: str, users: dict[str, str]
) -> None:
    """Anyone can name a public client, so its requests are counted per client address: a
    stranger looping on ``client_id=pub`` uses up only their own address's bucket, and users of
    the same application elsewhere still get their tokens (review of issue 14)."""
    clients = {
        **PROXY_CLIENTS,
        "pub": {**CLIENTS["pub"], "rate_limit": {"rate": 0.001, "burst": 2}},
    }
    async with running_gateway(
        tmp_path / "conf", database_url, clients=clients, trusted_proxies=["127.0.0.1/32"]
    ) as gateway:

        async def refresh_as(address: str) -> Answer:
            return await send(
                gateway,
                "/oauth2/token",
                method="POST",
                headers={"X-Forwarded-For": address},
                data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": "pub"},
                browser=False,
            )

        stranger = [(await refresh_as("198.51.100.7")).status for _ in range(3)]
        assert stranger == [400, 400, 429]
        assert (await refresh_as("203.0.113.9")).status == 400  # not 429: a bucket of its own
        assert (await refresh_as("198.51.100.7")).status == 429


async def test_another_sites_requests_do_not_use_up_the_victims_session_bucket(
    gw: Gateway,
) -> None:
    """A page of another site making the browser send the victim's cookies (an <img>: a GET
    with ``Sec-Fetch-Site: cross-site``; a form: refused by the CSRF check first) is charged to
    the requesting address, not to the victim's session (review of issue 14)."""
    alice = (await gw.sign_in(username="alice")).cookie_header()
    for _ in range(5):
        await send(gw, "/api/limited/a", cookies=alice, headers={"Sec-Fetch-Site": "cross-site"})
        forged = await send(
            gw,
            "/api/limited/a",
            method="POST",
            cookies=alice,
            headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
        )
        assert forged.status == 403, forged.text
    statuses = [(await send(gw, "/api/limited/a", cookies=alice)).status for _ in range(3)]
    assert statuses == [200, 200, 200]
