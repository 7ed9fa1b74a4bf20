"""Connection pool and database location (URL from the environment or config, else embedded)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from gateway.clock import Budget, Clock
from gateway.config.model import Database
from gateway.errors import StoreError
from gateway.store.embedded import EmbeddedPostgres, start_embedded
from gateway.store.errors import UNREACHABLE, describe, redact_dsn

T = TypeVar("T")
_SET_OFFSET = "SELECT set_config('gateway.clock_offset', $1, false)"
_RESET_OFFSET = "RESET gateway.clock_offset"
Pool = asyncpg.Pool
Connection = asyncpg.Connection


class BoundedPool:
    """The pool requests use: the database work of one request answers within ``budget``
    seconds in all, however the database misbehaves, or raises ``StoreError`` (503 with
    ``Retry-After``, the session kept).

    asyncpg bounds a statement (``command_timeout``) but not what follows a timeout on a server
    that does not answer: the cancel request and the connection reset wait for the same frozen
    server, and a request waited 13 to 20 s in all. So each statement runs as a task of its own,
    and the request waits for it at most what is left of its ``Budget`` (``within(budget)``: one
    budget for every statement of a request, so a slow database cannot take N times it). A
    statement whose connection comes only after that is never sent, and one that is sent gets
    the rest as its own timeout (asyncpg then cancels it on the server); a late task finishes in
    the background, holding at most one pool connection.
    """

    def __init__(
        self,
        pool: Pool,
        seconds: float,
        budget: Budget | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.pool = pool
        self.seconds = seconds
        self.budget = budget  # None: ``seconds`` for each statement on its own
        self.clock = clock

    def within(self, budget: Budget) -> BoundedPool:
        """This pool, every statement drawing on one request's ``budget``."""
        return BoundedPool(self.pool, self.seconds, budget, clock=self.clock)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run(lambda con, left: con.fetch(query, *args, timeout=left))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._run(lambda con, left: con.fetchrow(query, *args, timeout=left))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._run(lambda con, left: con.fetchval(query, *args, timeout=left))

    async def execute(self, query: str, *args: Any) -> str:
        return await self._run(lambda con, left: con.execute(query, *args, timeout=left))

    async def _run(self, statement: Callable[[Any, float], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        allowed = self.budget.left if self.budget is not None else self.seconds
        if allowed <= 0:
            raise self._late()
        started = loop.time()
        # The statement runs as a task of its own that this request waits for at most
        # ``allowed`` (one future and one timer: what shield + wait_for did, for less).
        waiting = _Waiting(loop)
        task = loop.create_task(self._on_connection(statement, started + allowed, waiting))
        task.add_done_callback(waiting.wake)
        timer = loop.call_later(allowed, waiting.wake, None)
        try:
            await waiting.future
        except BaseException:  # the request was cancelled: the statement's outcome is nobody's
            task.add_done_callback(_forget)
            raise
        finally:
            timer.cancel()
            if self.budget is not None:
                self.budget.left -= loop.time() - started
        if not task.done():
            if not waiting.connected:
                task.cancel()  # still queued for a connection: nothing was sent
            task.add_done_callback(_forget)
            raise self._late()
        return task.result()

    async def _on_connection(
        self, statement: Callable[[Any, float], Awaitable[T]], deadline: float, waiting: _Waiting
    ) -> T:
        loop = asyncio.get_running_loop()
        # No acquire timeout of its own (asyncpg would wrap the wait in one more task): the
        # request stops waiting at the deadline and cancels a task still queued here.
        async with self.pool.acquire() as con:
            waiting.connected = True
            left = deadline - loop.time()
            if left <= 0:  # the request has answered already: never send it
                raise self._late()
            offset = self.clock.offset if self.clock is not None else 0.0
            if not offset:
                return await statement(con, left)
            # A test moved the application's clock: daemon.now() moves with it, for this
            # statement only (the pool does not reset session state, see _no_session_state).
            await con.execute(_SET_OFFSET, f"{offset} seconds", timeout=left)
            try:
                return await statement(con, deadline - loop.time())
            finally:
                await con.execute(_RESET_OFFSET, timeout=max(deadline - loop.time(), 0.5))

    def _late(self) -> StoreError:
        return StoreError(f"the database did not answer within {self.seconds:g} s")


class _Waiting:
    """A request waiting for its statement's task: woken by the task's end or by its timer."""

    __slots__ = ("connected", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[None] = loop.create_future()
        self.connected = False  # the task holds a connection (it may have sent the statement)

    def wake(self, _: object) -> None:
        if not self.future.done():
            self.future.set_result(None)


def _forget(task: asyncio.Future[Any]) -> None:
    """A statement the request stopped waiting for: its outcome is nobody's any more."""
    if not task.cancelled():
        task.exception()


Executor = asyncpg.Pool | asyncpg.Connection | BoundedPool


@dataclass
class DatabaseLocation:
    """Where the database is: a URL, and the embedded server when this process started one."""

    dsn: str
    embedded: EmbeddedPostgres | None = None

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


def locate_database(settings: Database, workdir: Path | None = None) -> DatabaseLocation:
    """``GATEWAY_DATABASE_URL``, else ``database.url``, else the embedded PostgreSQL."""
    url = os.environ.get("GATEWAY_DATABASE_URL") or (
        settings.url.get_secret_value() if settings.url else None
    )
    if url:
        return DatabaseLocation(url)
    pgdata = Path(settings.embedded_dir)
    if not pgdata.is_absolute():
        pgdata = (workdir or Path.cwd()) / pgdata
    embedded = start_embedded(pgdata)
    return DatabaseLocation(embedded.dsn, embedded)


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_session_state(conn: Connection) -> None:
    """The pool's reset of a released connection, after asyncpg's own (a transaction left open
    is rolled back, listener callbacks dropped): nothing more. The gateway sets no session
    state on pool connections (advisory locks are transaction-scoped, LISTEN has connections
    of its own, the tests' clock offset is undone by the statement that set it), and asyncpg's
    default (CLOSE ALL, UNLISTEN *, RESET ALL, advisory unlock) costs a round trip on every
    release (issue 13)."""


async def create_pool(dsn: str, settings: Database) -> Pool:
    """An asyncpg pool; ``StoreError`` with a readable reason when the database is unreachable."""
    try:
        pool: Pool = await asyncpg.create_pool(
            dsn,
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            timeout=settings.connect_timeout,
            command_timeout=settings.command_timeout,
            init=_init_connection,
            reset=_no_session_state,
        )
    except (*UNREACHABLE, asyncpg.PostgresError) as exc:
        raise StoreError(
            f"cannot connect to the database at {redact_dsn(dsn)}: {describe(exc)}"
        ) from exc
    return pool


async def connect(dsn: str, settings: Database) -> Connection:
    """One connection, for commands (migrate, user add)."""
    try:
        conn: Connection = await asyncpg.connect(
            dsn, timeout=settings.connect_timeout, command_timeout=settings.command_timeout
        )
    except (*UNREACHABLE, asyncpg.PostgresError) as exc:
        raise StoreError(
            f"cannot connect to the database at {redact_dsn(dsn)}: {describe(exc)}"
        ) from exc
    await _init_connection(conn)
    return conn


async def database_answers(pool: Pool, within: float) -> bool:
    """Whether the database answers a trivial statement within ``within`` seconds."""
    try:
        await BoundedPool(pool, within).fetchval("SELECT 1")
    except (*UNREACHABLE, asyncpg.PostgresError, StoreError):
        return False
    return True
