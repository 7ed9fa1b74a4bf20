"""Running the application: one process, or N worker processes sharing the port (SO_REUSEPORT).

Shutdown on SIGTERM/SIGINT is graceful: the listening socket closes, in-flight requests finish
(up to ``SHUTDOWN_TIMEOUT``), ``cleanup_ctx`` closes the pool, and the caller then stops the
embedded PostgreSQL. SIGHUP reloads the configuration (every worker, when there are several).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

from gateway.app import create_app
from gateway.config.holder import ConfigHolder
from gateway.config.loader import Config, load_config
from gateway.config.model import GatewaySettings, is_loopback_host
from gateway.connections import GatewayRunner, connection_cap, raise_file_limit
from gateway.errors import GatewayError
from gateway.keys import CONFIG
from gateway.logs import AccessLog, AccessLogger, AccessSink, configure_logging, protocol_logger

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 30.0
MAX_HEADER = 32768
RESTART_BACKOFF = 1.0


class ListenError(GatewayError):
    """The listening socket cannot be opened; the message says what to do."""


def describe_listen_error(host: str, port: int, exc: OSError) -> str:
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: another program uses the port; stop it or choose another with --port"
    if exc.errno == errno.EACCES:
        return (
            f"{where}: permission denied (ports below 1024 need privileges); choose a port "
            "from 1024 up with --port"
        )
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return f"{where}: this machine has no such address; choose another with --host"
    if isinstance(exc, socket.gaierror):
        return f"{where}: the host name does not resolve; choose another with --host"
    return f"{where}: {exc.strerror or exc}"


def check_listen(host: str, port: int, *, reuse_port: bool = False) -> None:
    """Bind and release the listen address once, so a port in use or a forbidden port is one
    readable line before anything starts (the server binds again, for real, right after)."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(describe_listen_error(host, port, exc)) from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise ListenError(describe_listen_error(host, port, exc)) from None


def runner_options(
    settings: GatewaySettings, *, access_log: AccessSink | None = None
) -> dict[str, Any]:
    """Options of the ``GatewayRunner``: JSON access log, graceful-shutdown timeout, and the
    bounds on client connections (``limits.*``)."""
    limits = settings.limits
    return {
        "keepalive_timeout": limits.idle_timeout,
        # Unread body after an answer (a 408, a 413) is drained this long, not aiohttp's 10 s.
        "lingering_time": min(2.0, limits.body_timeout),
        "head_timeout": limits.head_timeout,
        "max_connections": connection_cap(limits.max_connections, file_limit()),
        "shutdown_timeout": SHUTDOWN_TIMEOUT,
        # Long enough for real cookies and tokens, so oversized credentials reach the
        # application and get its JSON answer; beyond this, aiohttp refuses the request.
        "max_line_size": MAX_HEADER,
        "max_field_size": MAX_HEADER,
        "access_log_class": AccessLogger,
        # aiohttp hands this to AccessLogger; None: no access log.
        "access_log": access_log,
        # Requests the parser refuses: one WARNING line each (rate-limited), no traceback.
        "logger": protocol_logger(),
    }


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    access_log: bool = True,
    on_reload: Callable[[], object] | None = None,
    started: Callable[[int], None] | None = None,
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down gracefully."""
    settings = app[CONFIG].current.gateway
    # Access lines at INFO, as every other line: a level above INFO turns them off too.
    wanted = access_log and logging.getLogger("gateway.access").isEnabledFor(logging.INFO)
    sink = AccessLog(sys.stderr.fileno()) if wanted else None
    runner = GatewayRunner(app, handle_signals=False, **runner_options(settings, access_log=sink))
    await runner.setup()
    # What start-up made (modules, configuration, compiled templates, the pool) lives as long as
    # the process: frozen out of the collector's sight, a full collection scans only what
    # requests made, instead of pausing every request for tens of milliseconds (p99, issue 13).
    gc.collect()
    gc.freeze()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port, backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(describe_listen_error(host, port, exc)) from None
        bound = _bound_port(runner, port)
        log.info("listening on http://%s:%d (pid %d)", host, bound, os.getpid())
        if settings.demo:
            who = (
                "sign in as demo / demo"
                if is_loopback_host(host)
                else "sign in with a user of yours (demo / demo exists on loopback listeners only)"
            )
            log.info("demo: open %s/ and %s", settings.public_issuer(), who)
        if started is not None:
            started(bound)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        if on_reload is not None:
            loop.add_signal_handler(signal.SIGHUP, on_reload)
        await stop.wait()
        log.info("shutting down: finishing in-flight requests")
    finally:
        await runner.cleanup()
        if sink is not None:
            sink.close()  # the last access lines before the last line
        log.info("stopped")


def _bound_port(runner: web.AppRunner, default: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return default


def file_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run_single(holder: ConfigHolder, database_url: str, host: str, port: int) -> None:
    """Serve in this process (``--workers 1``)."""
    log.info("open-file limit: %d", raise_file_limit())
    app = create_app(holder, database_url=database_url)
    uvloop.run(
        serve_app(
            app,
            host,
            port,
            access_log=holder.current.gateway.logging.access_log,
            on_reload=holder.reload,
        )
    )


def _worker_main(config_path: str, overrides: Mapping[str, Any], database_url: str) -> None:
    config = load_config(Path(config_path), overrides=overrides)
    configure_logging(config.gateway.logging.level)
    raise_file_limit()
    holder = ConfigHolder(config)
    app = create_app(holder, database_url=database_url)
    listen = config.gateway.listen
    uvloop.run(
        serve_app(
            app,
            listen.host,
            listen.port,
            reuse_port=True,
            access_log=config.gateway.logging.access_log,
            on_reload=holder.reload,
        )
    )


def run_workers(workers: int, config: Config, database_url: str) -> int:
    """Supervise ``workers`` processes bound to one port; restart one that dies unexpectedly."""
    ctx = multiprocessing.get_context("spawn")
    args = (str(config.path.resolve()), dict(config.overrides), database_url)
    port = config.gateway.listen.port
    stopping = threading.Event()

    def start() -> BaseProcess:
        process = ctx.Process(target=_worker_main, args=args, daemon=False)
        process.start()
        return process

    def forward(signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping.set()
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM if signum == signal.SIGINT else signum)

    processes = [start() for _ in range(workers)]
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    log.info("started %d workers on port %d", workers, port)
    while not stopping.wait(0.5):
        for i, process in enumerate(processes):
            if not process.is_alive() and not stopping.is_set():
                log.error("worker %s exited with %s; restarting", process.pid, process.exitcode)
                time.sleep(RESTART_BACKOFF)
                processes[i] = start()
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT + 5
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            log.error("worker %s did not stop in time; killing it", process.pid)
            process.kill()
            process.join(5)
    return 0
