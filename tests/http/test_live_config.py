"""Live configuration (issue 4 item 8): edits on disk apply without a restart, invalid edits are
rejected with a logged reason while the old configuration keeps serving; /metrics counts it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import ConfigHolder, load_config
from gateway.config import origins as origin_edits
from tests.http.conftest import CLIENTS, RELAXED_LIMITS
from tests.support import Client, GatewayTestServer, write_conf

NEW_ORIGIN = "https://new.example.test"
# The client, the path of gateway.json and the configuration holder of the served gateway.
Live = tuple[Client, Path, ConfigHolder]


@pytest.fixture
async def live(tmp_path: Path, database_url: str) -> AsyncIterator[Live]:
    conf = write_conf(
        tmp_path / "conf",
        gateway={"issuer": "https://as.example.test", "limits": RELAXED_LIMITS},
        clients=CLIENTS,
    )
    holder = ConfigHolder(load_config(conf, environ={}))
    server = GatewayTestServer(create_app(holder, database_url=database_url))
    await server.start_server()
    client = TestClient(server)
    await client.start_server()
    yield client, conf, holder
    await client.close()


async def preflight(client: Client, origin: str) -> str | None:
    response = await client.options(
        "/oauth2/token",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    assert response.status == 204
    return response.headers.get("Access-Control-Allow-Origin")


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_origin_added_on_disk_is_allowed_within_seconds(live: Live) -> None:
    client, _conf, holder = live
    assert await preflight(client, NEW_ORIGIN) is None
    message = origin_edits.edit(holder.current, "pub", NEW_ORIGIN, add=True)
    assert message.startswith(f"added {NEW_ORIGIN} to client pub")
    started = time.monotonic()
    assert await wait_for(lambda: _allowed(client, NEW_ORIGIN))
    assert time.monotonic() - started < 5
    origin_edits.edit(holder.current, "pub", NEW_ORIGIN, add=False)
    assert await wait_for(lambda: _not_allowed(client, NEW_ORIGIN))


async def _allowed(client: Client, origin: str) -> bool:
    return await preflight(client, origin) == origin


async def _not_allowed(client: Client, origin: str) -> bool:
    return await preflight(client, origin) is None


async def test_invalid_edit_is_rejected_and_the_old_config_keeps_serving(
    live: Live,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, conf, holder = live
    caplog.set_level(logging.ERROR, logger="gateway.config.holder")
    clients_file = conf.parent / "oauth2" / "default.json"
    broken = json.loads(clients_file.read_text())
    broken["pub"]["javascript_origins"] = ["https://app.example.test", "*"]
    clients_file.write_text(json.dumps(broken))
    assert await wait_for(lambda: _logged(caplog))
    assert holder.generation == 0
    assert await preflight(client, "https://app.example.test") == "https://app.example.test"
    token = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "cc", "client_secret": "ccs3cr3t"},
    )
    assert token.status == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_config_reloads_total{result="rejected"} 1.0' in metrics


async def _logged(caplog: pytest.LogCaptureFixture) -> bool:
    return any(
        "configuration change rejected" in r.getMessage()
        and "pub.javascript_origins[1]" in r.getMessage()
        for r in caplog.records
    )


async def test_a_client_added_on_disk_can_get_tokens(live: Live) -> None:
    client, conf, _holder = live
    clients_file = conf.parent / "oauth2" / "default.json"
    data = json.loads(clients_file.read_text())
    data["late"] = {
        "client_id": "late",
        "client_secret": "late-secret",
        "scopes": ["orders.read"],
        "grant_types": ["client_credentials"],
    }
    clients_file.write_text(json.dumps(data))

    async def works() -> bool:
        response = await client.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "late",
                "client_secret": "late-secret",
            },
        )
        return response.status == 200

    assert await wait_for(works)
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_config_reloads_total{result="accepted"}' in metrics


async def test_metrics_on_loopback_in_prometheus_format(live: Live) -> None:
    client, _, _ = live
    await client.options(
        "/oauth2/token",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert "# HELP gateway_refreshes_total" in text
    assert "gateway_cors_rejected_origins_total 1.0" in text
