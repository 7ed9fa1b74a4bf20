"""What every ``gateway`` command shares: exit codes, the one-line error, loading the
configuration, finding and connecting to the database, printing a table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from gateway.config.loader import DEFAULT_CONFIG, Config, config_path_from_env, load_config
from gateway.errors import ConfigError, StoreError
from gateway.store.migrate import migrate
from gateway.store.pool import Connection, DatabaseLocation, connect, locate_database

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A readable failure of a command: printed as ``error: ...`` with its exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def load(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Config:
    explicit = getattr(args, "config", None)
    path = config_path_from_env(explicit)
    if not path.is_file():
        source = (
            "given with --config"
            if explicit
            else "from GATEWAY_CONFIG"
            if os.environ.get("GATEWAY_CONFIG")
            else f"the default ./{DEFAULT_CONFIG} of the working directory {Path.cwd()}"
        )
        raise CommandError(
            f"no configuration file at {path.absolute()} ({source}); run the command where "
            "conf/ is, or name the file with --config PATH or GATEWAY_CONFIG",
            EXIT_USAGE,
        )
    try:
        return load_config(path, overrides=overrides)
    except ConfigError as exc:
        raise CommandError(
            "the configuration is invalid:\n  " + "\n  ".join(str(i) for i in exc.issues),
            EXIT_USAGE,
        ) from exc


@contextlib.asynccontextmanager
async def connected(config: Config, dsn: str) -> AsyncIterator[Connection]:
    """One database connection for a command, closed however the command ends."""
    conn = await connect(dsn, config.gateway.database)
    try:
        yield conn
    finally:
        await conn.close()


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def run_on_database(
    args: argparse.Namespace, work: Callable[[Config, Connection], Awaitable[T]]
) -> T:
    """``work(config, conn)`` on the configured database, migrated first (a command's one
    connection; the embedded PostgreSQL, if started for it, stopped after)."""
    config = load(args)
    location = locate(config)

    async def go() -> T:
        async with connected(config, location.dsn) as conn:
            await migrate(conn)
            return await work(config, conn)

    try:
        return asyncio.run(go())
    finally:
        location.close()


def iso(moment: datetime | None) -> str | None:
    """A time in JSON output."""
    return moment.isoformat() if moment is not None else None


def printable(cell: str) -> str:
    """A cell as text a terminal only shows: control characters (escape sequences included,
    as an attacker can put in a user name, a user agent or a failed login) as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", cell)


def print_table(rows: Sequence[tuple[str, ...]]) -> None:
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def locate(config: Config) -> DatabaseLocation:
    try:
        return locate_database(config.gateway.database, Path.cwd())
    except StoreError as exc:
        raise CommandError(str(exc)) from exc


class Parser(argparse.ArgumentParser):
    """Usage errors as one line that says what to do (exit code 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see: {self.prog} --help)\n")
