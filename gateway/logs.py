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

from aiohttp import ClientConnectionResetError, http_exceptions
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse
from aiohttp.web_protocol import RequestPayloadError

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


# --- requests the HTTP parser refused ------------------------------------------------------------

PROTOCOL_LOGGER = "gateway.http"
MALFORMED_LOG_INTERVAL = 10.0
# Fixed words per parser error: the exceptions' own messages quote the client's bytes (a cookie,
# a token), which must never reach a log line.
_MALFORMED_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (http_exceptions.LineTooLong, "a request line or header is too long"),
    (http_exceptions.BadHttpMethod, "not an HTTP request (bad method)"),
    (http_exceptions.BadStatusLine, "a malformed request line"),
    (http_exceptions.InvalidHeader, "a malformed header"),
    (http_exceptions.InvalidURLError, "a malformed request target"),
    (http_exceptions.TransferEncodingError, "a malformed chunked body"),
    (http_exceptions.ContentLengthError, "a body shorter than its Content-Length"),
    (http_exceptions.PayloadEncodingError, "a malformed body"),
)
_LLHTTP_REASON = re.compile(r"^[A-Za-z][A-Za-z0-9 ,'-]{2,80}$")


def malformed_reason(exc: BaseException) -> str:
    """Why the parser refused a request, in words that quote nothing the client sent."""
    for kind, reason in _MALFORMED_REASONS:
        if isinstance(exc, kind):
            return reason
    if isinstance(exc, http_exceptions.HttpProcessingError):
        # llhttp's description comes first ("Invalid header value char:\n\n  b'...'"); it is
        # one of llhttp's fixed phrases, kept only when it looks like one.
        first = str(exc.message).split(":", 1)[0].split("\n", 1)[0].strip()
        return first.lower() if _LLHTTP_REASON.match(first) else "a malformed request"
    return "a malformed request"


class MalformedRequests(logging.Filter):
    """Turns aiohttp's ERROR record with a traceback for a request its parser refused into one
    WARNING line with the reason and the peer, at most one per ``MALFORMED_LOG_INTERVAL`` with a
    count of the others (a client can send any bytes, as often as it likes). Records of real
    failures pass unchanged."""

    def __init__(self, interval: float = MALFORMED_LOG_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self.count = 0
        self._last = -interval

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ConnectionResetError | ClientConnectionResetError):
            return False  # the client left: nothing went wrong here
        if isinstance(exc, RequestPayloadError) and isinstance(
            exc.__cause__ or exc.__context__, http_exceptions.HttpProcessingError
        ):
            exc = exc.__cause__ or exc.__context__  # a body the parser refused, found late
        if not isinstance(exc, http_exceptions.HttpProcessingError):
            # The logger passes DEBUG (aiohttp logs a bad method that way); others keep the
            # level the application logs at.
            return record.levelno >= logging.getLogger().getEffectiveLevel()
        self.count += 1
        now = time.monotonic()
        if now - self._last < self.interval:
            return False
        self._last = now
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "a client"
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "malformed request from %s refused: %s (%d so far)"
        record.args = (peer, malformed_reason(exc), self.count)
        record.exc_info, record.exc_text = None, None
        return True


def protocol_logger() -> logging.Logger:
    """The logger of aiohttp's connection handling, with ``MalformedRequests`` on it."""
    logger = logging.getLogger(PROTOCOL_LOGGER)
    if not any(isinstance(f, MalformedRequests) for f in logger.filters):
        logger.addFilter(MalformedRequests())
        # aiohttp logs a first request with a bad method at DEBUG (noise from TLS probes to an
        # http port): let it reach the filter, which counts it like the others.
        logger.setLevel(logging.DEBUG)
    return logger
