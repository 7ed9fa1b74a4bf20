"""Memory of one gateway worker (issue 13 item 4, first part): one command, one table.

    .venv/bin/python -m tests.perf.bench_memory [--connections 9500]

It starts ``gateway serve`` (default configuration, one worker) against ``GATEWAY_DATABASE_URL``
(else an embedded PostgreSQL) and prints its resident memory (RSS, from /proc) idle after start,
after one signed-in request, and while ``--connections`` keep-alive connections are open, each
having made one request through the proxy (so each is a served, idle keep-alive connection).
The default stays under the default ``limits.max_connections`` (10,000), which the open-file
limit lowers further ((limit - reserve) / 2: about 9,990 with 20,000 descriptors); beyond the cap
the gateway refuses connections by design. Then ``--sessions`` distinct sessions (100,000 by
default) each make one request, so the token handler's cache of verified tokens holds them all,
and the RSS is read again. Their cookies are made here with the gateway's own keys (read from
the database with the benchmark's master key) rather than by 100,000 sign-ins.
Only 127.0.0.1 is used; every step is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil

from tests.perf import bench_proxy as bench


def rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


async def hold_connections(port: int, count: int, cookie: str) -> list[asyncio.StreamWriter]:
    """``count`` connections, each with one request answered, left open (keep-alive)."""
    request = (
        f"GET /api/orders/1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n"
    ).encode()
    writers: list[asyncio.StreamWriter] = []
    semaphore = asyncio.Semaphore(200)

    async def one() -> None:
        async with semaphore:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await asyncio.wait_for(reader.readexactly(length), 10)
            writers.append(writer)

    await asyncio.gather(*(one() for _ in range(count)))
    return writers


def session_cookies(conf: Path, count: int) -> list[str]:
    """``count`` ``__Secure-AT`` cookies of distinct sessions, signed and sealed as the gateway
    does (its signing key from the database, its cookie key from the master key)."""
    import uuid

    import asyncpg

    from gateway.authority import build_master, ensure_signing_keys
    from gateway.config.loader import load_config
    from gateway.grants.context import COOKIE_KEY_INFO
    from gateway.http.cookies import ACCESS
    from gateway.store.pool import locate_database
    from gateway.tokens.jwt import ACCESS_TOKEN_TYP, mint
    from gateway.tokens.seal import Sealer, derive_key

    config = load_config(conf)
    secret, master = build_master(config, conf.parent)

    async def ring() -> Any:
        conn = await asyncpg.connect(locate_database(config.gateway.database).dsn, timeout=10)
        try:
            return await ensure_signing_keys(conn, config, master)
        finally:
            await conn.close()

    signing = asyncio.run(ring()).signing
    sealer = Sealer([("m", derive_key(secret, COOKIE_KEY_INFO))])
    issuer = config.gateway.public_issuer()
    now = int(time.time())
    cookies = []
    for _ in range(count):
        claims = {
            "iss": issuer,
            "sub": str(uuid.uuid4()),
            "aud": config.gateway.tokens.audience or issuer,
            "exp": now + 3600,
            "iat": now,
            "nbf": now,
            "jti": uuid.uuid4().hex,
            "client_id": "spa",
            "scope": "openid offline_access",
            "sid": str(uuid.uuid4()),
            "gid": str(uuid.uuid4()),
            "preferred_username": "bench-user",
        }
        token = mint(claims, signing, ACCESS_TOKEN_TYP)
        cookies.append(f"{ACCESS}={sealer.seal(token.encode(), purpose=f'cookie:{ACCESS}')}")
    return cookies


async def one_request_each(port: int, cookies: list[str], connections: int = 32) -> int:
    """One request per cookie, over ``connections`` keep-alive connections; the 200s."""
    queue = list(reversed(cookies))
    ok = 0

    async def client() -> None:
        nonlocal ok
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        try:
            while queue:
                cookie = queue.pop()
                writer.write(
                    f"GET /api/orders/1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Cookie: {cookie}\r\n\r\n".encode()
                )
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await asyncio.wait_for(reader.readexactly(length), 30)
                ok += head.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=9_500)
    parser.add_argument("--sessions", type=int, default=100_000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = args.connections + 200
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="gw-bench-mem-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env["PYTHONPATH"] = str(bench.ROOT)  # the gateway of this checkout
        if os.environ.get("GATEWAY_DATABASE_URL"):
            env["GATEWAY_DATABASE_URL"] = os.environ["GATEWAY_DATABASE_URL"]
        up_port, gw_port = bench.free_port(), bench.free_port()
        bench.spawn(stack, [bench.PYTHON, "-c", bench.UPSTREAM, str(up_port)])
        bench.wait_port(up_port)
        conf = bench.write_config(work / "gw", gw_port, f"http://127.0.0.1:{up_port}", 3600)
        run_env = {**env, "GATEWAY_CONFIG": str(conf)}
        subprocess.run(
            [bench.PYTHON, "-m", "gateway", "user", "add", bench.USER, "--password-stdin"],
            input="bench-password",
            text=True,
            env=run_env,
            cwd=work,
            check=True,
            timeout=60,
        )
        process = bench.spawn(
            stack, [bench.PYTHON, "-m", "gateway", "serve"], run_env, work, log=work / "gw.log"
        )
        bench.wait_ready(f"http://127.0.0.1:{gw_port}/readyz")
        time.sleep(2)
        rows = [("idle after start", rss_mib(process.pid))]
        cookie = bench.sign_in(gw_port)
        asyncio.run(hold_connections(gw_port, 1, cookie))
        rows.append(("after one signed-in request", rss_mib(process.pid)))

        async def held() -> tuple[int, float]:
            writers = await hold_connections(gw_port, args.connections, cookie)
            await asyncio.sleep(1)
            measured = rss_mib(process.pid)
            for writer in writers:
                writer.close()
            return len(writers), measured

        count, with_connections = asyncio.run(held())
        rows.append((f"{count} keep-alive connections open", with_connections))
        time.sleep(2)
        before_sessions = rss_mib(process.pid)
        rows.append(("connections closed", before_sessions))
        cookies = session_cookies(conf, args.sessions)
        served = asyncio.run(one_request_each(gw_port, cookies))
        time.sleep(1)
        with_sessions = rss_mib(process.pid)
        rows.append((f"{args.sessions} sessions cached ({served} answered 200)", with_sessions))
        print("\nRSS of one gateway worker (default configuration)")
        print(f"{'state':<40}{'RSS MiB':>10}")
        for name, value in rows:
            print(f"{name:<40}{value:>10.1f}")
        per = (with_connections - rows[1][1]) * 1024 / max(count, 1)
        print(f"\nper open keep-alive connection: {per:.1f} KiB")
        per_session = (with_sessions - before_sessions) * 1024 / max(args.sessions, 1)
        print(f"per cached session: {per_session:.2f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
