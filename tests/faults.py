"""Faults that a test causes on purpose: a private PostgreSQL of the test's own (the pgserver
binaries, as the embedded database uses), stalled with SIGSTOP and resumed with SIGCONT. Never a
shared server: other tests and other sessions keep theirs."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

from gateway.store.embedded import EmbeddedPostgres, start_embedded
from gateway.store.migrate import migrate
from gateway.store.users import user_add
from tests.support import USERS, light_passwords, run_sync


@dataclass
class PrivatePostgres:
    """A PostgreSQL server that only this test uses."""

    server: EmbeddedPostgres
    stalled: list[psutil.Process]

    @property
    def dsn(self) -> str:
        return self.server.dsn

    def processes(self) -> list[psutil.Process]:
        """The postmaster and every backend it has forked."""
        pid = int((self.server.pgdata / "postmaster.pid").read_text().split()[0])
        postmaster = psutil.Process(pid)
        return [postmaster, *postmaster.children(recursive=True)]

    def stall(self) -> None:
        """Freeze the server: connections stay open, nothing answers (a hung host)."""
        for process in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGSTOP)
                self.stalled.append(process)

    def resume(self) -> None:
        while self.stalled:
            with contextlib.suppress(psutil.NoSuchProcess):
                self.stalled.pop().send_signal(signal.SIGCONT)


async def prepare(dsn: str) -> None:
    """Migrate the private database and add the tests' users."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await migrate(conn)
        passwords = light_passwords()
        for name, (password, email, display) in USERS.items():
            await user_add(conn, name, passwords.hash(password), email, display)
    finally:
        await conn.close()


@contextlib.contextmanager
def private_postgres(directory: Path) -> Iterator[PrivatePostgres]:
    """A migrated private server under ``directory``; resumed and stopped however the test
    ends."""
    private = PrivatePostgres(start_embedded(directory / "pgdata"), [])
    try:
        run_sync(prepare(private.dsn))
        yield private
    finally:
        private.resume()
        private.server.stop()
