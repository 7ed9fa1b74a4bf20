"""Faults that a test causes on purpose: a private PostgreSQL of the test's own (the pgserver
binaries, as the embedded database uses), stalled with SIGSTOP and resumed with SIGCONT; a
private Redis, stalled, killed and started again. Never a shared server: other tests and other
sessions keep theirs."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

from gateway.store.embedded import EmbeddedPostgres, start_embedded
from gateway.store.migrate import migrate
from gateway.store.users import user_add
from tests.support import USERS, free_port, light_passwords, run_sync


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


# --- Redis ------------------------------------------------------------------------------------

REDIS_SERVER = Path("/usr/bin/redis-server")


@dataclass
class PrivateRedis:
    """A ``redis-server`` that only this test uses, on a port of its own, without persistence:
    stalled (SIGSTOP), killed, and started again on the same port, empty."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        assert self.process is None, "already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.process = subprocess.Popen(
            [str(REDIS_SERVER), *arguments, "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def stall(self) -> None:
        """Freeze the server: connections are accepted by the kernel, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        """Down: the process is gone (a stalled one too), connections are refused."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def private_redis(directory: Path) -> Iterator[PrivateRedis]:
    """A private Redis, started; killed however the test ends (never the shared one)."""
    if not REDIS_SERVER.exists():
        raise AssertionError("redis-server is not installed: apt-get install redis-server")
    server = PrivateRedis(directory, free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()
