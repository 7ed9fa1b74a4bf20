"""Running the application: one process, or N worker processes sharing the port (SO_REUSEPORT).

Shutdown on SIGTERM/SIGINT is graceful: the listening socket closes, in-flight requests finish
(up to ``SHUTDOWN_TIMEOUT``), ``cleanup_ctx`` closes the pool, and the caller then stops the
embedded PostgreSQL. SIGHUP reloads the configuration (every worker, when there are several).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

from gateway.app import create_app
from gateway.config.holder import ConfigHolder
from gateway.config.loader import load_config
from gateway.logs import AccessLogger, configure_logging

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 30.0
MAX_HEADER = 32768
RESTART_BACKOFF = 1.0


def runner_options(*, access_log: bool = True) -> dict[str, Any]:
    """Options of the ``AppRunner``: JSON access log, graceful-shutdown timeout."""
    return {
        "shutdown_timeout": SHUTDOWN_TIMEOUT,
        # Long enough for real cookies and tokens, so oversized credentials reach the
        # application and get its JSON answer; beyond this, aiohttp refuses the request.
        "max_line_size": MAX_HEADER,
        "max_field_size": MAX_HEADER,
        "access_log_class": AccessLogger,
        "access_log": logging.getLogger("gateway.access") if access_log else None,
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
    runner = web.AppRunner(app, handle_signals=False, **runner_options(access_log=access_log))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port, backlog=1024)
        await site.start()
        bound = _bound_port(runner, port)
        log.info("listening on http://%s:%d (pid %d)", host, bound, os.getpid())
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
        log.info("stopped")


def _bound_port(runner: web.AppRunner, default: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return default


def run_single(holder: ConfigHolder, database_url: str, host: str, port: int) -> None:
    """Serve in this process (``--workers 1``)."""
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


def _worker_main(config_path: str, database_url: str, host: str, port: int) -> None:
    config = load_config(Path(config_path))
    configure_logging(config.gateway.logging.level)
    holder = ConfigHolder(config)
    app = create_app(holder, database_url=database_url)
    uvloop.run(
        serve_app(
            app,
            host,
            port,
            reuse_port=True,
            access_log=config.gateway.logging.access_log,
            on_reload=holder.reload,
        )
    )


def run_workers(workers: int, config_path: Path, database_url: str, host: str, port: int) -> int:
    """Supervise ``workers`` processes bound to one port; restart one that dies unexpectedly."""
    ctx = multiprocessing.get_context("spawn")
    args = (str(config_path.resolve()), database_url, host, port)
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
