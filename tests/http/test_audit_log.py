"""The audit log's SIEM output (``audit.log: true``, issue 14 item 4): two gateways on one
database (two replicas) write each event once between them, as one JSON line of the
``gateway.audit`` logger, in id order, without a secret. Events made inside SQL (a sign-in, a
failed one, a refresh) reach the log without the request that made them doing anything more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.logs import JsonFormatter
from tests.http.checklist import serving
from tests.http.conftest import as_config, basic

ALICE = "Correct-Horse-9"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


async def test_two_replicas_write_each_event_once_as_a_json_line(
    tmp_path: Path, database_url: str, users: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    conf = as_config(tmp_path / "conf", audit={"log": True, "log_interval": 0.1})
    conn = await asyncpg.connect(database_url)
    caplog.set_level(logging.INFO, logger="gateway.audit")
    try:
        async with serving(conf, database_url) as one, serving(conf, database_url) as two:
            # The first look places the cursor at the newest event; wait for it.
            for _ in range(100):
                if await conn.fetchval("SELECT count(*) FROM audit.log_cursor"):
                    break
                await asyncio.sleep(0.05)
            start = await conn.fetchval("SELECT coalesce(max(id), 0) FROM audit.event")
            tokens: dict[str, Any] = {}
            for replica, password in ((one, "wrong-one"), (two, ALICE), (one, ALICE)):
                response = await replica.post(
                    "/oauth2/token",
                    data={"grant_type": "password", "username": "alice", "password": password,
                          "scope": "openid offline_access"},
                    headers={**basic("conf", "s3cr3t"), "User-Agent": UA},
                )  # fmt: skip
                tokens = await response.json()
            refreshed = await two.post(
                "/oauth2/token",
                data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                headers=basic("conf", "s3cr3t"),
            )
            assert refreshed.status == 200
            expected = [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM audit.event WHERE id > $1 ORDER BY id", start
                )
            ]
            deadline = time.monotonic() + 10
            written: list[logging.LogRecord] = []
            while time.monotonic() < deadline:
                written = [
                    r for r in caplog.records
                    if r.name == "gateway.audit" and r.__dict__["fields"]["event"]["id"] > start
                ]  # fmt: skip
                if len(written) >= len(expected):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # a second writer would have written its copy by now
            written = [
                r for r in caplog.records
                if r.name == "gateway.audit" and r.__dict__["fields"]["event"]["id"] > start
            ]  # fmt: skip
    finally:
        await conn.close()
    assert [r.__dict__["fields"]["event"]["id"] for r in written] == expected
    lines = [json.loads(JsonFormatter().format(r)) for r in written]
    types = [line["event"]["type"] for line in lines]
    assert types == ["login.failure", "login", "login", "refresh"]
    first = lines[0]
    assert (first["logger"], first["level"], first["msg"]) == (
        "gateway.audit",
        "INFO",
        "audit login.failure",
    )
    assert first["event"]["user"] == "alice"
    assert first["event"]["address"] == "127.0.0.1"
    assert first["event"]["user_agent"] == UA
    text = json.dumps(lines)
    for secret in (ALICE, "wrong-one", tokens["refresh_token"], tokens["access_token"], "s3cr3t"):
        assert secret not in text
