"""Token-handler benchmark: one command, one table, every figure measured in the same run.

    .venv/bin/python -m tests.perf.bench_proxy [--duration 10] [--connections 32] [--rounds 3]

It starts an upstream (aiohttp on uvloop, its own process), a minimal aiohttp pass-through proxy
written here as a floor (its own process), and ``gateway serve`` (1 worker, then 2) against
``GATEWAY_DATABASE_URL`` (else an embedded PostgreSQL in a temporary directory). It measures:

1. with wrk (Debian's package): the upstream direct; the minimal proxy; the gateway with a valid
   cookie; the gateway with 2 workers;
2. with a Python load generator (wrk cannot keep a cookie jar per connection): the upstream direct,
   the minimal proxy, the gateway with a valid cookie, and the gateway refreshing on a share of
   requests (64 sessions whose access tokens live 1 s, each with its own cookie jar);
3. with wrk again, 1 and 2 workers with every worker capped at ``--worker-cpu`` of a core (a
   cgroup cpu quota, when the cgroup filesystem is writable, e.g. as root): on a small machine the
   uncapped 2-worker figure shows the machine's limit, the capped one the gateway's scaling.

Each row shows requests/s, p50 and p99 latency, the server's CPU time per request (all its
processes, workers included) and the ratios to the direct upstream and to the minimal proxy of the
same tool. The wrk scenarios run ``--rounds`` times, interleaved so that a noisy neighbour hits them
alike, and each row is the round with the median throughput. CPU per request is the figure that
noise on a shared machine moves least. Only 127.0.0.1 is used; every run is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
USER = f"bench-{os.getpid()}"  # its own user, so a reused database does not stop the run
BODY = json.dumps({"id": 1, "name": "order", "items": list(range(20))})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the servers --------------------------------------------------------------------------------

UPSTREAM = f"""
import uvloop
from aiohttp import web
BODY = {BODY!r}.encode()
async def handle(request):
    await request.read()
    return web.Response(body=BODY, content_type="application/json")
app = web.Application()
app.router.add_route("*", "/{{tail:.*}}", handle)
web.run_app(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), access_log=None,
            print=None, loop=uvloop.new_event_loop())
"""

MINIMAL_PROXY = """
import sys
import aiohttp
import uvloop
from aiohttp import web
UPSTREAM = sys.argv[2]
HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}
async def session_ctx(app):
    app["s"] = aiohttp.ClientSession(auto_decompress=False,
                                     connector=aiohttp.TCPConnector(limit=1000))
    yield
    await app["s"].close()
async def handle(request):
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    body = await request.read()
    async with request.app["s"].request(request.method, UPSTREAM + request.path_qs,
                                        headers=headers, data=body or None,
                                        allow_redirects=False) as up:
        data = await up.read()
        out = {k: v for k, v in up.headers.items() if k.lower() not in HOP}
        return web.Response(status=up.status, body=data, headers=out)
app = web.Application()
app.cleanup_ctx.append(session_ctx)
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
            loop=uvloop.new_event_loop())
"""


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def wait_ready(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


# Where the machine has two cores or more: the servers measured (the minimal proxy, each
# gateway and its workers) on core 0, the upstream and the load generator on core 1, so that
# they do not take the measured server's CPU.
SERVER_CORES: set[int] | None = None
LOAD_CORES: set[int] | None = None


def pin(pid: int, cores: set[int] | None) -> None:
    if cores is not None:
        with suppress(OSError):
            os.sched_setaffinity(pid, cores)


def spawn(
    stack: ExitStack,
    args: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    *,
    cores: set[int] | None = None,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """A server process, pinned to ``cores``; its stderr (the gateway's log, the access log
    included) to the file ``log``, as a service manager would take it, else discarded."""
    err = stack.enter_context(log.open("wb")) if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(
        args,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=err,
        preexec_fn=(lambda: pin(0, cores)) if cores is not None else None,
    )

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    stack.callback(stop)
    return process


def baseline_checkout(stack: ExitStack, work: Path, ref: str) -> Path:
    """A worktree of ``ref`` (removed at the end): the code the baseline gateway runs."""
    tree = work / "baseline"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref],
        check=True,
        capture_output=True,
        timeout=120,
    )
    stack.callback(
        subprocess.run,
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    return tree


def baseline_database(url: str) -> str:
    """The same server, a database of the baseline's own (its SQL functions differ)."""
    import asyncpg
    import uvloop

    parts = urllib.parse.urlsplit(url)
    name = (parts.path.lstrip("/") or "postgres") + "_baseline"

    async def create() -> None:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    uvloop.run(create())
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def write_config(
    directory: Path, port: int, upstream: str, access_ttl: int, *, access_log: bool = True
) -> Path:
    """The gateway as users run it: the default logging (INFO, JSON access log on) unless
    ``access_log`` is false (the tuned variant)."""
    (directory / "oauth2").mkdir(parents=True)
    (directory / "sites").mkdir()
    gateway = {
        "listen": {"host": "127.0.0.1", "port": port},
        "issuer": f"http://localhost:{port}",
        "keys": {"master_key": "bench-master-key-0123456789abcdefghijklmn"},
        "limits": {"login_failures_per_ip": 100000},
        "routes": [{"prefix": "/api/", "upstream": upstream, "strip_prefix": True}],
    }
    if not access_log:
        gateway["logging"] = {"access_log": False}
    (directory / "gateway.json").write_text(json.dumps(gateway))
    clients = {
        "spa": {
            "client_id": "spa",
            "javascript_origins": [f"http://localhost:{port}"],
            "redirect_uris": [f"http://localhost:{port}/"],
            "scopes": ["openid", "offline_access"],
            "grant_types": ["authorization_code", "refresh_token", "password"],
            "token_delivery": "cookies",
            "access_ttl": access_ttl,
        }
    }
    (directory / "oauth2" / "default.json").write_text(json.dumps(clients))
    return directory / "gateway.json"


def sign_in(port: int) -> str:
    """A Cookie header for one fresh session of the benchmark user."""
    data = (
        b"grant_type=password&client_id=spa&username=" + USER.encode() + b"&password=bench-password"
        b"&scope=openid%20offline_access"
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/oauth2/token",
        data=data,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        cookies = response.headers.get_all("Set-Cookie") or []
    return "; ".join(c.split(";", 1)[0] for c in cookies)


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    note: str = ""
    cpu_us: float | None = None


class CpuMeter:
    """CPU seconds used by a server process and its children (the workers of ``--workers N``)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = psutil.Process(process.pid)

    def seconds(self) -> float:
        total = 0.0
        for proc in [self.process, *self.process.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total


class CpuCap:
    """A CPU quota per worker through the cgroup ``cpu`` controller (v1 or v2), when writable.

    Two workers on a 2-core machine that also runs wrk and the upstream cannot show how the
    gateway scales: the machine runs out first. Capping every worker at the same share of a core
    leaves CPU to spare for the load generator and the upstream, so what 2 workers add over 1 is
    the gateway's own scaling (kernel connection balancing, no shared lock or database call).
    """

    def __init__(self, share: float) -> None:
        self.share = share
        self.groups: list[Path] = []
        self.root: Path | None = None
        v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")
        if (v1 / "cpu.cfs_quota_us").exists() and os.access(v1, os.W_OK):
            self.root, self.v2 = v1, False
        elif "cpu" in _read(v2 / "cgroup.controllers").split() and os.access(v2, os.W_OK):
            self.root, self.v2 = v2, True

    @property
    def available(self) -> bool:
        return self.root is not None and self.share > 0

    def confine(self, pid: int) -> None:
        """Put one process (all its threads) in a group of its own with the quota."""
        assert self.root is not None
        group = self.root / f"gw-bench-{os.getpid()}-{len(self.groups)}"
        group.mkdir()
        self.groups.append(group)
        period = 100_000
        quota = int(period * self.share)
        if self.v2:
            (group / "cpu.max").write_text(f"{quota} {period}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(period))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        (group / "cgroup.procs").write_text(str(pid))

    def release(self) -> None:
        assert self.root is not None
        for group in self.groups:
            for pid in _read(group / "cgroup.procs").split():
                with suppress(OSError):  # the process ended meanwhile
                    (self.root / "cgroup.procs").write_text(pid)
            with suppress(OSError):
                group.rmdir()
        self.groups.clear()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def listening_workers(meter: CpuMeter, port: int) -> list[int]:
    """The processes of a gateway that accept on ``port``: the workers, not the supervisor."""
    pids = []
    for proc in [meter.process, *meter.process.children(recursive=True)]:
        try:
            sockets = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in sockets):
            pids.append(proc.pid)
    return pids


_WRK_LATENCY = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_ERRORS = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)|Socket errors:.*?(\d+)")


def wrk(
    name: str,
    url: str,
    args: argparse.Namespace,
    cookie: str | None = None,
    meter: CpuMeter | None = None,
    script: Path | None = None,
) -> Result:
    command = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    command += ["--timeout", "10s", url]  # a slow answer is a latency, not a socket error
    if script is not None:
        command[-1:-1] = ["-s", str(script)]
    if LOAD_CORES is not None:
        command[:0] = ["taskset", "-c", ",".join(str(c) for c in sorted(LOAD_CORES))]
    if cookie:
        command[-1:-1] = ["-H", f"Cookie: {cookie}"]
    cpu_before = meter.seconds() if meter else 0.0
    output = subprocess.run(
        command, capture_output=True, text=True, timeout=args.duration + 60, check=True
    ).stdout
    cpu = meter.seconds() - cpu_before if meter else None
    latencies = {}
    for percent, value, unit in _WRK_LATENCY.findall(output):
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        latencies[percent] = float(value) * scale
    errors = sum(int(a or b or 0) for a, b in _WRK_ERRORS.findall(output))
    rps_match = _WRK_RPS.search(output)
    assert rps_match is not None, output
    rps = float(rps_match.group(1))
    cpu_us = cpu / (rps * args.duration) * 1e6 if cpu is not None and rps else None
    return Result(name, rps, latencies["50"], latencies["99"], errors, cpu_us=cpu_us)


PACED_CONNECTIONS = 40


def paced_script(directory: Path, rate: int) -> Path:
    """wrk paced to about ``rate`` requests/s in all: each of the ``PACED_CONNECTIONS`` waits a
    random 0..2x its share of the interval before each request, so they do not march in step.
    wrk times each request from its send (the wait excluded); at a rate well below the server's
    capacity that is the latency a client sees."""
    interval_ms = PACED_CONNECTIONS * 1000 / rate
    script = directory / f"paced-{rate}.lua"
    script.write_text(
        f"""
math.randomseed(os.time())
delay = function()
  return math.random() * {2 * interval_ms:.3f}
end
"""
    )
    return script


def paced(
    name: str,
    url: str,
    args: argparse.Namespace,
    script: Path,
    cookie: str | None = None,
    meter: CpuMeter | None = None,
) -> Result:
    load = argparse.Namespace(duration=args.duration, connections=PACED_CONNECTIONS)
    return wrk(name, url, load, cookie, meter, script)


def paced_table(
    rate: int, direct: Result, minimal: Result, gateway: Result, *others: Result
) -> str:
    lines = [
        f"wrk paced at about {rate} req/s ({PACED_CONNECTIONS} connections, random waits):"
        " latency the gateway adds",
        f"{'scenario':<38}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}"
        f"{'+p50 vs min':>13}{'+p99 vs min':>13}{'+p99 vs direct':>16}",
    ]
    for r in (direct, minimal, gateway, *others):
        cpu = f"{r.cpu_us:.0f}" if r.cpu_us is not None else "-"
        lines.append(
            f"{r.name:<38}{r.rps:>8.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{cpu:>12}"
            f"{r.p50_ms - minimal.p50_ms:>13.2f}{r.p99_ms - minimal.p99_ms:>13.2f}"
            f"{r.p99_ms - direct.p99_ms:>16.2f}"
        )
    return "\n".join(lines)


def access_log_cost(directory: Path, lines: int = 100_000) -> float:
    """CPU microseconds per access line, all of it: ``AccessLogger.log`` on the request path, the
    writer thread and its writes to a file, measured in this process (the A/B rows above differ
    by more than this between runs of one configuration on a shared machine)."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from gateway.logs import AccessLog, AccessLogger

    fd = os.open(directory / "access-cost.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    sink = AccessLog(fd)
    request = make_mocked_request("GET", "/api/orders/1", headers={"Host": "127.0.0.1"})
    response = web.Response(body=b"x" * 100)
    logger = AccessLogger(sink, "")
    started = time.process_time()
    for i in range(lines):
        logger.log(request, response, 0.00123)
        if i % 1000 == 999:
            time.sleep(0.001)  # the writer keeps up, as between a server's requests
    sink.close(10)
    os.close(fd)
    return (time.process_time() - started) / lines * 1e6


def median_round(rounds: list[Result]) -> Result:
    """The round with the median throughput, so its latencies and CPU belong to the same run."""
    ordered = sorted(rounds, key=lambda r: r.rps)
    chosen = ordered[len(ordered) // 2]
    if len(rounds) > 1:
        chosen.note = f"median of {len(rounds)}: {ordered[0].rps:.0f}..{ordered[-1].rps:.0f}"
    return chosen


async def _python_load(
    url: str, cookies: list[str], duration: float, connections: int, *, track: bool
) -> tuple[int, list[float], int, int]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    refreshes = 0
    deadline = time.monotonic() + duration

    async def user(index: int) -> None:
        nonlocal errors, refreshes
        jar = {}
        for part in cookies[index % len(cookies)].split("; ") if cookies else []:
            name, _, value = part.partition("=")
            jar[name] = value
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            while time.monotonic() < deadline:
                header = "; ".join(f"{k}={v}" for k, v in jar.items())
                started = time.perf_counter()
                async with session.get(url, headers={"Cookie": header} if header else {}) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                    if track:
                        set_cookies = r.headers.getall("Set-Cookie", [])
                        if set_cookies:
                            refreshes += 1
                        for line in set_cookies:
                            name, _, rest = line.partition("=")
                            jar[name] = rest.split(";", 1)[0]
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(user(i) for i in range(connections)))
    return len(latencies), latencies, errors, refreshes


def python_load(
    name: str,
    url: str,
    args: argparse.Namespace,
    cookies: list[str],
    *,
    track: bool = False,
    meter: CpuMeter | None = None,
) -> Result:
    import uvloop

    cpu_before = meter.seconds() if meter else 0.0
    count, latencies, errors, refreshes = uvloop.run(
        _python_load(url, cookies, args.duration, args.connections, track=track)
    )
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0.0
    cpu_us = (meter.seconds() - cpu_before) / count * 1e6 if meter and count else None
    note = f"{refreshes / count:.1%} of requests refreshed" if track and count else ""
    return Result(
        name,
        count / args.duration,
        statistics.median(latencies) * 1000 if latencies else 0.0,
        p99 * 1000,
        errors,
        note,
        cpu_us,
    )


def table(title: str, results: list[Result], direct: Result, floor: Result) -> str:
    lines = [
        title,
        f"{'scenario':<38}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}"
        f"{'x direct':>10}{'x minimal':>11}{'errors':>8}  note",
    ]
    for r in results:
        cpu = f"{r.cpu_us:.0f}" if r.cpu_us is not None else "-"
        lines.append(
            f"{r.name:<38}{r.rps:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{cpu:>12}"
            f"{r.rps / direct.rps:>10.2f}{r.rps / floor.rps:>11.2f}{r.errors:>8}  {r.note}"
        )
    return "\n".join(lines)


def capped_scaling(
    args: argparse.Namespace,
    gateways: list[tuple[CpuMeter, int, str]],
    path: str,
    stack: ExitStack,
) -> str:
    """wrk against 1 and 2 workers, each worker capped at ``--worker-cpu`` of a core."""
    title = f"wrk, every gateway worker capped at {args.worker_cpu:g} of a core (cgroup cpu quota)"
    cap = CpuCap(args.worker_cpu)
    if not cap.available:
        return f"{title}\nnot measured: no writable cgroup cpu controller here (or --worker-cpu 0)"
    stack.callback(cap.release)
    for meter, port, _cookie in gateways:
        for pid in listening_workers(meter, port):
            cap.confine(pid)
    rounds: dict[int, list[Result]] = {}
    for _ in range(max(1, args.rounds)):
        for workers, (meter, port, cookie) in enumerate(gateways, start=1):
            name = f"gateway, {workers} worker{'s' * (workers > 1)}, capped"
            url = f"http://127.0.0.1:{port}{path}"
            rounds.setdefault(workers, []).append(wrk(name, url, args, cookie, meter))
    cap.release()
    one, two = (median_round(r) for r in rounds.values())
    lines = [
        title,
        f"{'scenario':<38}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}"
        f"{'x 1 worker':>12}{'errors':>8}  note",
    ]
    for r in (one, two):
        lines.append(
            f"{r.name:<38}{r.rps:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.cpu_us or 0:>12.0f}"
            f"{r.rps / one.rps:>12.2f}{r.errors:>8}  {r.note}"
        )
    return "\n".join(lines)


# --- the run ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved repetitions of the wrk scenarios"
    )
    parser.add_argument(
        "--worker-cpu",
        type=float,
        default=0.4,
        help="share of a core each worker gets in the CPU-capped scaling scenario (0: skip it)",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin servers and load to separate cores"
    )
    parser.add_argument(
        "--quick", action="store_true", help="wrk scenarios only (no Python load generator)"
    )
    parser.add_argument(
        "--paced-rate", type=int, default=2000, help="req/s of the paced latency scenario"
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run the gateway of git revision REF (defaults), interleaved: before and after",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env["PYTHONPATH"] = str(ROOT)  # the gateway of this checkout, whatever is installed
        if os.environ.get("GATEWAY_DATABASE_URL"):
            env["GATEWAY_DATABASE_URL"] = os.environ["GATEWAY_DATABASE_URL"]
        global SERVER_CORES, LOAD_CORES
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) >= 2 and not args.no_pin:
            SERVER_CORES, LOAD_CORES = {cores[0]}, {cores[1]}
        up_port, min_port, gw_port, gw2_port, gwr_port, gwq_port = (free_port() for _ in range(6))
        up_meter = CpuMeter(spawn(stack, [PYTHON, "-c", UPSTREAM, str(up_port)], cores=LOAD_CORES))
        wait_port(up_port)
        upstream = f"http://127.0.0.1:{up_port}"
        min_meter = CpuMeter(
            spawn(
                stack,
                [PYTHON, "-c", MINIMAL_PROXY, str(min_port), upstream],
                cores=SERVER_CORES,
            )
        )
        wait_port(min_port)

        def gateway(
            port: int,
            workers: int,
            access_ttl: int,
            name: str,
            *,
            access_log: bool = True,
            other: dict[str, str] | None = None,
        ) -> CpuMeter:
            conf = write_config(work / name, port, upstream, access_ttl, access_log=access_log)
            run_env = {**(other or env), "GATEWAY_CONFIG": str(conf)}
            gateway_cmd = [PYTHON, "-m", "gateway"]
            process = spawn(
                stack,
                [*gateway_cmd, "serve", "--workers", str(workers)],
                run_env,
                work,
                cores=SERVER_CORES if workers == 1 else None,
                log=work / f"{name}.log",
            )
            wait_ready(f"http://127.0.0.1:{port}/readyz")
            return CpuMeter(process)

        gw_meter = gateway(gw_port, 1, 3600, "one")
        conf_env = {**env, "GATEWAY_CONFIG": str(work / "one" / "gateway.json")}
        subprocess.run(
            [PYTHON, "-m", "gateway", "user", "add", USER, "--password-stdin"],
            input="bench-password",
            text=True,
            env=conf_env,
            cwd=work,
            check=True,
            timeout=60,
        )
        baseline: tuple[str, CpuMeter, int, str] | None = None
        if args.baseline:
            code = baseline_checkout(stack, work, args.baseline)
            other = {**env, "PYTHONPATH": str(code)}
            if env.get("GATEWAY_DATABASE_URL"):
                other["GATEWAY_DATABASE_URL"] = baseline_database(env["GATEWAY_DATABASE_URL"])
            gwb_port = free_port()
            subprocess.run(
                [PYTHON, "-m", "gateway", "user", "add", USER, "--password-stdin"],
                input="bench-password",
                text=True,
                env={**other, "GATEWAY_CONFIG": str(conf_env["GATEWAY_CONFIG"])},
                cwd=work,
                check=False,  # exists already in a reused database
                capture_output=True,
                timeout=120,
            )
            gwb_meter = gateway(gwb_port, 1, 3600, "baseline", other=other)
            baseline = (args.baseline, gwb_meter, gwb_port, sign_in(gwb_port))
        gw2_meter = gateway(gw2_port, 2, 3600, "two")
        gwq_meter = gateway(gwq_port, 1, 3600, "quiet", access_log=False)
        gwr_meter = gateway(gwr_port, 1, 1, "refresh")
        cookie = sign_in(gw_port)
        cookie2 = sign_in(gw2_port)
        cookie_q = sign_in(gwq_port)
        sessions = [sign_in(gwr_port) for _ in range(64)]
        path = "/api/orders/1"

        print(
            f"warming up; {args.rounds} rounds of {args.duration}s scenarios, "
            f"{args.connections} connections...",
            file=sys.stderr,
        )
        warm = argparse.Namespace(duration=2, connections=args.connections)
        wrk("warm-up", f"http://127.0.0.1:{gw_port}{path}", warm, cookie)
        wrk("warm-up", f"http://127.0.0.1:{gw2_port}{path}", warm, cookie2)
        rounds: dict[str, list[Result]] = {}
        for _ in range(max(1, args.rounds)):
            if baseline is not None:
                ref, b_meter, b_port, b_cookie = baseline
                result = wrk(
                    f"gateway, defaults, at {ref}",
                    f"http://127.0.0.1:{b_port}{path}",
                    args,
                    b_cookie,
                    b_meter,
                )
                rounds.setdefault(result.name, []).append(result)
            for result in (
                wrk("upstream direct", f"{upstream}{path}", args, meter=up_meter),
                wrk(
                    "minimal aiohttp proxy",
                    f"http://127.0.0.1:{min_port}{path}",
                    args,
                    meter=min_meter,
                ),
                wrk(
                    "gateway, valid cookie (defaults)",
                    f"http://127.0.0.1:{gw_port}{path}",
                    args,
                    cookie,
                    gw_meter,
                ),
                wrk(
                    "gateway, access log off",
                    f"http://127.0.0.1:{gwq_port}{path}",
                    args,
                    cookie_q,
                    gwq_meter,
                ),
                wrk(
                    "gateway, valid cookie, 2 workers",
                    f"http://127.0.0.1:{gw2_port}{path}",
                    args,
                    cookie2,
                    gw2_meter,
                ),
            ):
                rounds.setdefault(result.name, []).append(result)
        medians = {name: median_round(r) for name, r in rounds.items()}
        w_before = [medians.pop(n) for n in list(medians) if n.startswith("gateway, defaults, at")]
        w_direct, w_min, w_gw, w_quiet, w_gw2 = medians.values()
        w_gw2.note = "; ".join(
            filter(None, [w_gw2.note, f"{w_gw2.rps / w_gw.rps:.2f}x one worker"])
        )
        wrk_table = table(
            "wrk (C load generator, 1 thread)",
            [w_direct, w_min, w_gw, *w_before, w_quiet, w_gw2],
            w_direct,
            w_min,
        )
        line_us = access_log_cost(work)
        share = f", {line_us / w_gw.cpu_us:.1%} of the defaults row's CPU" if w_gw.cpu_us else ""
        wrk_table += (
            f"\naccess log: {line_us:.1f} us of CPU per line (the logger, the writer thread and its"
            f" writes; 100,000 lines in this process){share}"
        )
        script = paced_script(work, args.paced_rate)
        paced_rounds: dict[str, list[Result]] = {}
        for _ in range(max(1, args.rounds)):
            for result in (
                paced("upstream direct", f"{upstream}{path}", args, script, meter=up_meter),
                paced(
                    "minimal aiohttp proxy",
                    f"http://127.0.0.1:{min_port}{path}",
                    args,
                    script,
                    meter=min_meter,
                ),
                paced(
                    "gateway, valid cookie (defaults)",
                    f"http://127.0.0.1:{gw_port}{path}",
                    args,
                    script,
                    cookie,
                    gw_meter,
                ),
            ):
                paced_rounds.setdefault(result.name, []).append(result)
            if baseline is not None:
                ref, b_meter, b_port, b_cookie = baseline
                result = paced(
                    f"gateway, defaults, at {ref}",
                    f"http://127.0.0.1:{b_port}{path}",
                    args,
                    script,
                    b_cookie,
                    b_meter,
                )
                paced_rounds.setdefault(result.name, []).append(result)
        paced_text = paced_table(args.paced_rate, *(median_round(r) for r in paced_rounds.values()))
        if args.quick:
            print(f"\n{wrk_table}\n\n{paced_text}")
            return 0
        capped = capped_scaling(
            args,
            [(gw_meter, gw_port, cookie), (gw2_meter, gw2_port, cookie2)],
            path,
            stack,
        )

        p_direct = python_load("upstream direct", f"{upstream}{path}", args, [], meter=up_meter)
        p_min = python_load(
            "minimal aiohttp proxy", f"http://127.0.0.1:{min_port}{path}", args, [], meter=min_meter
        )
        p_gw = python_load(
            "gateway, valid cookie",
            f"http://127.0.0.1:{gw_port}{path}",
            args,
            [cookie],
            meter=gw_meter,
        )
        p_ref = python_load(
            "gateway, 1 s tokens, 64 sessions",
            f"http://127.0.0.1:{gwr_port}{path}",
            args,
            sessions,
            track=True,
            meter=gwr_meter,
        )

        print(f"\n{wrk_table}")
        print()
        print(paced_text)
        print()
        print(
            table(
                "Python load generator (per-connection cookie jars)",
                [p_direct, p_min, p_gw, p_ref],
                p_direct,
                p_min,
            )
        )
        print()
        print(capped)
        pinning = (
            f"servers measured on core {sorted(SERVER_CORES)}, upstream and wrk on core"
            f" {sorted(LOAD_CORES)} (2 workers: unpinned)"
            if SERVER_CORES and LOAD_CORES
            else "nothing pinned"
        )
        print(
            f"\nmachine: {os.cpu_count()} cores; {pinning}; gateways log to a file each (stderr),"
            " as a service manager would take it; the gateway's database calls are in its CPU"
            " only as client time"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
