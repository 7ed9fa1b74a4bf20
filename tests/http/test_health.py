"""Health endpoints, error rendering and access logging through real HTTP and a real database."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pytest_aiohttp.plugin import AiohttpClient

from gateway.app import create_app
from gateway.config import ConfigHolder
from tests.support import (
    Client,
    GatewayTestServer,
    create_database,
    drop_database,
    dsn_with_database,
)


async def test_healthz_answers_while_the_process_runs(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_is_200_when_the_database_answers(client: Client) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ready"


async def test_readyz_is_503_with_a_reason_when_the_database_goes_away(
    aiohttp_client: AiohttpClient, holder: ConfigHolder, pg_admin_dsn: str, template_db: str
) -> None:
    name = await create_database(pg_admin_dsn, template_db)
    app = create_app(holder, database_url=dsn_with_database(pg_admin_dsn, name))
    client: Client = await aiohttp_client(app)
    assert (await client.get("/readyz")).status == 200
    await drop_database(pg_admin_dsn, name)  # terminates the pool's connections
    response = await client.get("/readyz")
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert await response.json() == {"status": "unavailable", "reason": "database unreachable"}
    assert (await client.get("/healthz")).status == 200


async def test_unknown_path_gets_a_json_404(client: Client) -> None:
    response = await client.get("/no/such/thing")
    assert response.status == 404
    assert response.content_type == "application/json"
    assert (await response.json())["error"] == "not_found"


async def test_wrong_method_gets_a_json_405_with_allow(client: Client) -> None:
    response = await client.post("/healthz")
    assert response.status == 405
    assert "GET" in response.headers["Allow"]
    assert (await response.json())["error"] == "method_not_allowed"


async def test_every_response_has_a_request_id_and_no_server_version(client: Client) -> None:
    response = await client.get("/healthz")
    request_id = response.headers["X-Request-Id"]
    assert len(request_id) == 32
    assert response.headers["Server"] == "gateway"
    again = await client.get("/healthz", headers={"X-Request-Id": "upstream-id-1234"})
    assert again.headers["X-Request-Id"] == "upstream-id-1234"
    forged = await client.get("/healthz", headers={"X-Request-Id": "bad\tvalue"})
    assert forged.headers["X-Request-Id"] != "bad\tvalue"


def access_entries(client: Client) -> list[dict[str, Any]]:
    """The access lines the client's server wrote (``AccessLogger``, as ``gateway serve``)."""
    server = client.server
    assert isinstance(server, GatewayTestServer)
    return server.access_log.entries()


async def wait_for_access_line(client: Client) -> dict[str, Any]:
    for _ in range(50):  # the line is written once the response has been sent
        entries = access_entries(client)
        if entries:
            return entries[-1]
        await asyncio.sleep(0.02)
    raise AssertionError("no access log line")


async def test_access_log_is_json_without_the_query_string(client: Client) -> None:
    response = await client.get("/healthz?code=SECRETCODE123&state=abc")
    assert response.status == 200
    entry = await wait_for_access_line(client)
    assert entry["request_id"] == response.headers["X-Request-Id"]
    assert entry["path"] == "/healthz"
    assert entry["status"] == 200
    assert entry["msg"] == "GET /healthz 200"
    assert (entry["level"], entry["logger"], entry["kind"]) == ("INFO", "gateway.access", "access")
    assert entry["ts"].endswith("Z")
    assert "SECRETCODE123" not in json.dumps(entry)


async def test_the_tests_run_on_uvloop_like_the_server() -> None:
    """The server runs on uvloop (gateway/server.py), so the HTTP tests do too."""
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")


async def test_access_log_redacts_a_token_in_the_path(client: Client) -> None:
    """A JWT pasted into the path (a 404 here) never reaches the access log, in the message or
    in the ``path`` field."""
    jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"
    response = await client.get(f"/oauth2/{jwt_like}")
    assert response.status == 404
    entry = await wait_for_access_line(client)
    assert entry["status"] == 404
    assert "eyJzdWIiOiJhbGljZSJ9" not in json.dumps(entry)
    assert entry["path"] == "/oauth2/[jwt]"
