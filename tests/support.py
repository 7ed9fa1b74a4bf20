"""Shared test support: database cloning, config directories, subprocess helpers.

Every test talks to a real PostgreSQL: the server in ``GATEWAY_TEST_DATABASE_URL`` when set, else an
embedded one under ``var/test-pgdata``. A template database is migrated once per schema checksum and
cloned for each test module (``CREATE DATABASE ... TEMPLATE``), which takes milliseconds.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner

if TYPE_CHECKING:
    from bs4 import Tag

    from gateway.clock import Clock
    from gateway.passwords import Passwords

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_LOCK = 0x6777_7465_7374  # "gwtest"
KEEP_OTHER_TEMPLATES = 3
# Users of the HTTP and browser tests (carol is locked by the `users` fixture).
USERS = {
    "alice": ("Correct-Horse-9", "alice@example.test", "Alice Liddell"),
    "bob": ("B0b-Passw0rd!", "bob@example.test", "Bob"),
    "carol": ("Carol-Passw0rd", "carol@example.test", "Carol"),
}
TEST_MASTER_KEY = "test-master-key-0123456789abcdefghijklmnop"
# The tests' password hashing cost (``passwords`` in gateway.json): argon2id all the same, at the
# lowest cost the configuration accepts, so a sign-in costs 4 ms instead of 160. The default cost
# is tested where the committed sample is used (tests/e2e/test_password_cost.py).
LIGHT_HASHING: dict[str, Any] = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}

# The aiohttp test client of a gateway application (a ``TestServer``, never a raw server): what
# ``TestClient(GatewayTestServer(app))`` and ``aiohttp_client(app)`` give.
Client = TestClient[web.Request, web.Application]


def dsn_with_database(dsn: str, database: str) -> str:
    """The same server, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


async def _admin(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, timeout=10)


async def ensure_template(admin_dsn: str, name: str) -> None:
    from gateway.store.migrate import migrate

    conn = await _admin(admin_dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", TEMPLATE_LOCK)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                building = f"{name}_build"
                await conn.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
                await conn.execute(f'CREATE DATABASE "{building}"')
                db = await asyncpg.connect(dsn_with_database(admin_dsn, building), timeout=10)
                try:
                    await migrate(db)
                finally:
                    await db.close()
                await conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            # Templates of other schemas: the newest few stay, since another checkout (a
            # branch with other migrations) may be running its tests on this server right now.
            stale = await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'gw\\_tmpl\\_%' "
                "AND datname <> $1 AND datname NOT LIKE '%\\_build' "
                "ORDER BY oid DESC OFFSET $2",
                name,
                KEEP_OTHER_TEMPLATES,
            )
            for row in stale:
                await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", TEMPLATE_LOCK)
    finally:
        await conn.close()


async def create_database(admin_dsn: str, template: str | None) -> str:
    name = f"gw_test_{uuid.uuid4().hex[:16]}"
    conn = await _admin(admin_dsn)
    try:
        if template:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await _admin(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def run_sync(coro: Any) -> Any:
    return asyncio.run(coro)


class RecordedAccessLog:
    """The access log of a test server: the lines ``AccessLogger`` makes, kept in memory
    (``gateway serve`` writes them to stderr through ``gateway.logs.AccessLog``)."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def emit(self, line: bytes) -> None:
        self.lines.append(line)

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


class GatewayTestServer(TestServer):
    """The gateway application served as ``gateway serve`` serves it: ``GatewayRunner`` with
    the runner options of its own configuration (JSON access log, head and idle timeouts, the
    connection cap). ``TestServer`` would drop options given to its constructor."""

    access_log: RecordedAccessLog

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        from gateway.connections import GatewayRunner
        from gateway.keys import CONFIG
        from gateway.server import runner_options

        settings = self.app[CONFIG].current.gateway
        self.access_log = RecordedAccessLog()
        options = runner_options(settings, access_log=self.access_log)
        return GatewayRunner(self.app, **{**options, **kwargs})


def sample_server(directory: Path, database_url: str) -> GatewayTestServer:
    """The committed sample configuration served as ``./scripts/serve --port P`` serves it: on
    a port of its own (bound now), its issuer and demo route derived from that port."""
    from gateway.app import create_app
    from gateway.config import ConfigHolder, load_config

    sock = bound_socket()
    config = load_config(
        committed_sample(directory),
        environ={"GATEWAY_MASTER_KEY": TEST_MASTER_KEY},
        overrides={"listen": {"port": sock.getsockname()[1]}},
    )
    return GatewayTestServer(
        create_app(ConfigHolder(config), database_url=database_url),
        socket_factory=lambda *_: sock,
    )


def bound_socket() -> socket.socket:
    """A listening-ready socket on a free port of 127.0.0.1, bound now, so no other server can
    take the port between choosing it and serving on it (TestServer(socket_factory=...))."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@functools.cache
def _committed_sample() -> dict[str, bytes]:
    """The files of ``conf/`` as committed at HEAD: relative path -> content.

    Tests never read the working tree's ``conf/``: ops and developers edit it, and a stray comma
    there must not change a test result. The committed sample is what every clone starts with,
    so it is what the tests check (commit a change to ``conf/`` to test it)."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD", "conf"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(
            "the tests read the sample configuration from git (HEAD:conf/); run them in a clone"
        ) from exc
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is not None:
                files[member.name] = extracted.read()
    return files


def sample_json(name: str) -> Any:
    """A file of the committed sample configuration, parsed (``name``: e.g. gateway.json)."""
    return json.loads(_committed_sample()[f"conf/{name}"])


def committed_sample(directory: Path) -> Path:
    """The committed sample configuration written to ``directory`` (its ``conf/`` layout);
    the path of its gateway.json."""
    for name, content in _committed_sample().items():
        target = directory / name.removeprefix("conf/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return directory / "gateway.json"


def write_conf(
    directory: Path,
    *,
    gateway: Mapping[str, Any] | None = None,
    clients: Mapping[str, Any] | None = None,
    sites: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write a configuration directory; defaults are the committed sample's files."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "oauth2").mkdir(exist_ok=True)
    (directory / "sites").mkdir(exist_ok=True)
    base = sample_json("gateway.json")
    base["keys"] = {"master_key": TEST_MASTER_KEY}
    base["passwords"] = LIGHT_HASHING
    # The sample's demo, its /api/ route and its sign-in client are for newcomers, not for tests.
    base["demo"] = False
    base["routes"] = []
    base.pop("login", None)
    # Mail written as files goes to the test's own directory, never the working tree's var/.
    base["mail"] = {**base.get("mail", {}), "dir": str(directory.parent / "mail")}
    base.update(gateway or {})
    (directory / "gateway.json").write_text(json.dumps(base, indent=2))
    default_clients = sample_json("oauth2/default.json")
    (directory / "oauth2" / "default.json").write_text(
        json.dumps(clients if clients is not None else default_clients, indent=2)
    )
    for name, site in (sites or {"default": {"hosts": ["localhost"]}}).items():
        (directory / "sites" / f"{name}.json").write_text(json.dumps(site))
    return directory / "gateway.json"


def light_passwords() -> Passwords:
    """Hashes for the users tests create, at the cost ``write_conf`` configures."""
    from argon2 import PasswordHasher

    from gateway.passwords import Passwords

    return Passwords(PasswordHasher(**LIGHT_HASHING))


def gateway_env(**extra: str) -> dict[str, str]:
    """The environment for a ``gateway`` subprocess: no inherited database or config settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(extra)
    return env


def run_gateway(
    *args: str,
    env: Mapping[str, str],
    stdin: str = "",
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd or ROOT,
        timeout=timeout,
        check=False,
    )


class ServeProcess:
    """A `gateway serve` process; stopped with SIGTERM (then killed) at the end of the test."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def terminate(self, timeout: float = 40) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
            raise
        return self.process.returncode, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def clock_of(client: Client) -> Clock:
    """The gateway's clock: ``advance`` moves the application's time, and the database functions'
    ``daemon.now()`` with it (tests never sleep for an expiry)."""
    from gateway.keys import CLOCK

    return client.app[CLOCK]


def named_input(parent: Tag, name: str) -> Tag:
    """The ``<input name="...">`` under ``parent`` (a form or a whole page); there must be one."""
    found = parent.find("input", attrs={"name": name})
    assert found is not None, f"no input named {name!r}"
    return found


def wait_http(url: str, *, timeout: float, status: int = 200) -> float:
    """Poll ``url`` until it answers ``status``; return the seconds it took."""
    import urllib.error
    import urllib.request

    start = time.monotonic()
    deadline = start + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == status:
                    return time.monotonic() - start
                last = response.status
        except urllib.error.HTTPError as exc:
            last = exc.code
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s (last: {last})")
