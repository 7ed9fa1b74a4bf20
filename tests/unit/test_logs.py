"""Log lines are JSON with a request id, and never carry tokens, codes, cookies or secrets."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.logs import JsonFormatter, redact, request_id_var


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl issued", "eyJzdWIi"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("Authorization: Basic Y2M6Y2NzM2NyM3Q=", "Y2M6Y2NzM2NyM3Q="),
        ("POST /oauth2/token?client_secret=ccs3cr3t&x=1", "ccs3cr3t"),
        ("body password=Correct-Horse-9&username=alice", "Correct-Horse-9"),
        ("redirect to /cb?code=SplxlOBeZQQYbYS6WxSbIA&state=xyz", "SplxlOBeZQQYbYS6WxSbIA"),
        ('{"refresh_token": "85Hr-abc"}', "85Hr-abc"),
        ("Cookie: __Secure-RT=sealed.value; SID=abc123", "sealed.value"),
        ("cannot connect to postgresql://app:pa55w0rd@db:5432/gw", "pa55w0rd"),
    ],
)
def test_redact_removes_secrets(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_json_formatter_carries_request_id_and_redacts() -> None:
    record = logging.LogRecord(
        "gateway.test", logging.INFO, __file__, 1, "got code=%s", ("abcdef123456",), None
    )
    token = request_id_var.set("req-12345678")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["request_id"] == "req-12345678"
    assert entry["level"] == "INFO"
    assert "abcdef123456" not in entry["msg"]
