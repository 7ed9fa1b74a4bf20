"""Fault figures (issue 9): one command, one table, measured against a private PostgreSQL that
this script starts and freezes (SIGSTOP), never a shared one.

    .venv/bin/python -m tests.perf.faults [--stall 25]

With the default configuration (``database.request_timeout`` 3 s, ``limits.head_timeout`` 15 s):

1. how long each thing that needs the database takes to answer while the database hangs: a
   transparent refresh, a password sign-in, a refresh-token grant, a sign-out, ``/readyz``;
2. how long a half-sent request head keeps its connection;
3. descriptors of a ``gateway serve`` process holding ``limits.max_connections`` (here 1000)
   connections, and what the connections beyond the cap get;
4. how long after a ``--stall`` seconds freeze a revocation reaches the token handler.

Only 127.0.0.1 is used; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from gateway.connections import raise_file_limit
from tests.faults import private_postgres
from tests.http.proxy_support import RT, SID, Gateway, running_gateway, send
from tests.support import TEST_MASTER_KEY, free_port, gateway_env, wait_http, write_conf

Rows = list[tuple[str, str]]


async def timed(coro: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = await asyncio.wait_for(coro, timeout=120)
    return result, time.monotonic() - started


async def hung_database(gw: Gateway, private: Any, rows: Rows) -> None:
    signed = await gw.sign_in(client_id="spab")
    private.stall()
    try:
        answer, took = await timed(
            send(gw, "/api/orders/1", cookies=signed.cookie_header((RT, SID)))
        )
        rows.append(("hung database: transparent refresh", f"{answer.status} in {took:.2f} s"))
        sign_in, took = await timed(gw.sign_in(expect=None))
        rows.append(("hung database: password sign-in", f"{sign_in.status} in {took:.2f} s"))

        async def grant() -> int:
            async with gw.bare().post(
                gw.url("/oauth2/token"),
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": signed.body["refresh_token"],
                    "client_id": "spab",
                },
                headers={"Origin": "https://app.example.test"},
            ) as response:
                return response.status

        status, took = await timed(grant())
        rows.append(("hung database: refresh_token grant", f"{status} in {took:.2f} s"))
        out, took = await timed(
            send(gw, "/oauth2/logout", method="POST", cookies=signed.cookie_header())
        )
        rows.append(("hung database: sign-out", f"{out.status} in {took:.2f} s"))

        async def ready() -> int:
            async with gw.bare().get(gw.url("/readyz")) as response:
                return response.status

        status, took = await timed(ready())
        rows.append(("hung database: /readyz", f"{status} in {took:.2f} s"))
        valid, took = await timed(send(gw, "/api/orders/1", cookies=signed.cookie_header()))
        rows.append(
            ("hung database: valid access token", f"{valid.status} in {took * 1000:.1f} ms")
        )
    finally:
        private.resume()


async def half_sent_head(gw: Gateway, rows: Rows) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
    await writer.drain()
    data, took = await timed(reader.read())
    writer.close()
    rows.append(("half-sent head closed after", f"{took:.2f} s ({data[:12].decode()}...)"))


async def stalled_revocation(gw: Gateway, private: Any, stall: float, rows: Rows) -> None:
    signed = await gw.sign_in()
    cookies = signed.cookie_header()
    assert (await send(gw, "/api/orders/1", cookies=cookies)).status == 200
    private.stall()
    await asyncio.sleep(stall)
    private.resume()
    conn = await asyncpg.connect(private.dsn, timeout=30)
    try:
        await conn.execute(
            "SELECT daemon.session_revoke($1::uuid, 'bench')", signed.body["session"]
        )
    finally:
        await conn.close()
    started = time.monotonic()
    for _ in range(600):
        if (await send(gw, "/api/orders/1", cookies=cookies)).status == 401:
            break
        await asyncio.sleep(0.1)
    took = time.monotonic() - started
    rows.append(
        (f"revocation seen after a {stall:.0f} s stall", f"{took:.2f} s after the revocation")
    )


def descriptors_at_the_cap(dsn: str, directory: Path, rows: Rows) -> None:
    cap = 1000
    port = free_port()
    conf = write_conf(
        directory / "cap-conf",
        gateway={"listen": {"port": port}, "limits": {"max_connections": cap}},
    )
    env = gateway_env(
        GATEWAY_DATABASE_URL=dsn, GATEWAY_CONFIG=str(conf), GATEWAY_MASTER_KEY=TEST_MASTER_KEY
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        env=env,
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
        server = psutil.Process(process.pid)
        idle = server.num_fds()

        async def hold() -> tuple[int, int]:
            held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(cap)]
            await asyncio.sleep(0.5)
            at_cap = server.num_fds()
            refused = 0
            for _ in range(50):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                answer = await asyncio.wait_for(reader.read(), timeout=5)
                refused += answer.startswith(b"HTTP/1.1 503")
                writer.close()
            for _, writer in held:
                writer.close()
            return at_cap, refused

        at_cap, refused = asyncio.run(hold())
        rows.append(("descriptors: idle process", str(idle)))
        rows.append((f"descriptors: at the cap ({cap} connections)", str(at_cap)))
        rows.append(("connections beyond the cap", f"{refused} of 50 got 503 and a close"))
    finally:
        process.terminate()
        process.wait(30)


async def in_process(dsn: str, directory: Path, private: Any, stall: float) -> Rows:
    rows: Rows = []
    async with running_gateway(
        directory / "conf", dsn, database={"pool_min": 1, "pool_max": 10}
    ) as gw:
        await hung_database(gw, private, rows)
        await half_sent_head(gw, rows)
        await stalled_revocation(gw, private, stall, rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stall", type=float, default=25.0, help="seconds the database freezes")
    args = parser.parse_args()
    raise_file_limit()  # this process holds the client ends of the connections
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        with private_postgres(directory / "private") as private:
            rows = asyncio.run(in_process(private.dsn, directory, private, args.stall))
            descriptors_at_the_cap(private.dsn, directory, rows)
    width = max(len(name) for name, _ in rows)
    print(f"gateway fault figures at commit {_commit()}")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
