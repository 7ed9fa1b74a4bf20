"""Memory of one gateway worker (issue 13 item 4, first part): one command, one table.

    .venv/bin/python -m tests.perf.bench_memory [--connections 9500]

It starts ``gateway serve`` (default configuration, one worker) against ``GATEWAY_DATABASE_URL``
(else an embedded PostgreSQL) and prints its resident memory (RSS, from /proc) idle after start,
after one signed-in request, and while ``--connections`` keep-alive connections are open, each
having made one request through the proxy (so each is a served, idle keep-alive connection).
The default stays under the default ``limits.max_connections`` (10,000), which the open-file
limit lowers further ((limit - reserve) / 2: about 9,990 with 20,000 descriptors); beyond the cap
the gateway refuses connections by design.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=9_500)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = args.connections + 200
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="gw-bench-mem-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
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
        print("\nRSS of one gateway worker (default configuration)")
        print(f"{'state':<40}{'RSS MiB':>10}")
        for name, value in rows:
            print(f"{name:<40}{value:>10.1f}")
        per = (with_connections - rows[1][1]) * 1024 / max(count, 1)
        print(f"\nper open keep-alive connection: {per:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
