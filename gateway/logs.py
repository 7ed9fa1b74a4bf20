"""Structured JSON logging with a request id on every line and a redaction filter.

Tokens, codes, cookies, secrets and DSN passwords never reach a log line: the access log records
the path without its query string, and ``redact`` scrubs every formatted message as a last line of
defence (JWTs, ``Bearer`` values, ``key=value`` pairs with sensitive names, URL passwords).
"""

from __future__ import annotations

import collections
import contextvars
import json
import logging
import os
import re
import select
import sys
import threading
import time
from typing import Any, Protocol

import orjson
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
    # The SIEM output (audit.log) is data, not chatter: written whatever the level, since the
    # shared cursor moves on once a batch is handed over.
    logging.getLogger("gateway.audit").setLevel(logging.INFO)


class AccessLog:
    """Where access lines go: complete JSON lines appended on the request path (no logging
    machinery, no lock, no write), written to ``fd`` by a thread of its own every ``interval``.

    A stalled ``fd`` (stderr piped to a reader that stopped) never stalls a request: the thread
    blocks in ``write``, lines wait in memory up to ``max_pending``, and beyond that they are
    dropped and counted, and one line saying how many follows when writing works again. Each
    ``write`` holds whole lines and at most ``PIPE_BUF`` bytes when it can, so lines of other
    writers to the same pipe (the other log lines) never cut into one.
    """

    def __init__(self, fd: int, *, max_pending: int = 20_000, interval: float = 0.05) -> None:
        self.fd = fd
        self.max_pending = max_pending
        self.interval = interval
        self.dropped = 0  # counted by the event loop's thread only
        self._reported = 0  # read and written by the writer thread only
        self._pending: collections.deque[bytes] = collections.deque()
        self._stamp = Timestamps()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def emit(self, line: bytes) -> None:
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending.append(line)

    def close(self, timeout: float = 2.0) -> None:
        """Write what is pending (at most ``timeout`` seconds) and stop the thread."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        lines = []
        pending = self._pending
        for _ in range(len(pending)):
            lines.append(pending.popleft())
        dropped = self.dropped
        if dropped != self._reported:
            lines.append(_dropped_line(dropped - self._reported, self._stamp))
            self._reported = dropped
        batch: list[bytes] = []
        size = 0
        for line in lines:
            if batch and size + len(line) > select.PIPE_BUF:
                self._write(b"".join(batch))
                batch, size = [], 0
            batch.append(line)
            size += len(line)
        if batch:
            self._write(b"".join(batch))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        for _ in range(10_000):  # bounded: a descriptor that takes nothing for long is given up
            if not view:
                return
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                return  # closed or gone: nothing more can be written there


class Timestamps:
    """``2026-12-06T09:47:48.330Z`` for a ``time.time()``; the part up to the second is made
    once a second (strftime on every request would cost more than the rest of the line)."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._text}.{int((now - second) * 1000):03d}Z"


def _dropped_line(count: int, stamp: Timestamps) -> bytes:
    entry = {
        "ts": stamp(time.time()),
        "level": "WARNING",
        "logger": "gateway.access",
        "request_id": "-",
        "msg": f"{count} access log lines dropped: the log's reader did not keep up",
    }
    return orjson.dumps(entry) + b"\n"


class AccessSink(Protocol):
    """Takes one complete access line (JSON and a newline); never blocks."""

    def emit(self, line: bytes) -> None: ...


# A path needs the (slower) redaction only when it holds what a secret could look like.
_MAYBE_SECRET = re.compile(r"eyJ|[=:@]|(?i:bearer|basic|sid|__secure)")


class AccessLogger(AbstractAccessLogger):
    """One JSON line per request, as the other log lines look (``ts``, ``level``, ``logger``,
    ``request_id``, ``msg``) plus the request's fields; the query string is never logged (it may
    carry codes). aiohttp hands it what the runner's ``access_log`` option names: here the
    ``AccessSink`` the lines go to (``AccessLog`` in ``gateway serve``)."""

    def __init__(self, logger: Any, log_format: str) -> None:
        super().__init__(logger, log_format)
        self.sink: AccessSink = logger
        self.stamp = Timestamps()

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        # Redacted once here: method (an HTTP token), status, sizes and the peer address are the
        # server's own and cannot carry a secret; the path can.
        path = request.path
        if _MAYBE_SECRET.search(path):
            path = redact(path)
        method, status = request.method, response.status
        entry = {
            "ts": self.stamp(_now()),
            "level": "INFO",
            "logger": "gateway.access",
            "request_id": request.get(REQUEST_ID) or "-",
            "msg": f"{method} {path} {status}",
            "kind": "access",
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(time * 1000, 2),
            "bytes": response.body_length,
            "remote": request.remote,
        }
        self.sink.emit(orjson.dumps(entry) + b"\n")

    @property
    def enabled(self) -> bool:
        return True


_now = time.time


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
