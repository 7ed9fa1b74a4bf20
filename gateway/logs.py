"""Structured JSON logging with a request id on every line and a redaction filter.

Tokens, codes, cookies, secrets and DSN passwords never reach a log line: the access log records
the path without its query string, and ``redact`` scrubs every formatted message as a last line of
defence (JWTs, ``Bearer`` values, ``key=value`` pairs with sensitive names, URL passwords).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from gateway.keys import REQUEST_ID

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_SENSITIVE = (
    r"access_token|refresh_token|id_token|token|code|code_verifier|client_secret|secret|password"
    r"|assertion|subject_token|actor_token|state|nonce|cookie|session|sid"
)
_PATTERNS = (
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*"), "[jwt]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    (
        re.compile(rf"(?i)(\b(?:{_SENSITIVE})[\"']?\s*[=:]\s*[\"']?)[^\s&\"',;]+"),
        r"\1[redacted]",
    ),
    (re.compile(r"(?i)(__Secure-[A-Za-z]+|SID)=[^\s;,]+"), r"\1=[redacted]"),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        fields = getattr(record, "fields", None)
        if getattr(record, "redacted", False):
            # The producer redacted what could carry a secret (the access log: the path).
            entry["msg"] = record.getMessage()
            if isinstance(fields, dict):
                entry.update(fields)
        else:
            entry["msg"] = redact(record.getMessage())
            if isinstance(fields, dict):
                entry.update({k: redact(v) if isinstance(v, str) else v for k, v in fields.items()})
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Route every logger to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.INFO)


class AccessLogger(AbstractAccessLogger):
    """One JSON line per request; the query string is never logged (it may carry codes)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        # Redacted once here: method (an HTTP token), status, sizes and the peer address are the
        # server's own and cannot carry a secret; the path can.
        path = redact(request.path)
        self.logger.info(
            "%s %s %s",
            request.method,
            path,
            response.status,
            extra={
                "redacted": True,
                "fields": {
                    "kind": "access",
                    "method": request.method,
                    "path": path,
                    "status": response.status,
                    "duration_ms": round(time * 1000, 2),
                    "bytes": response.body_length,
                    "remote": request.remote,
                },
                "request_id": request.get(REQUEST_ID),
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
