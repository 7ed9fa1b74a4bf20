"""Token endpoint benchmark (issue 13 item 3): one command, one table.

    .venv/bin/python -m tests.perf.bench_token [--duration 5] [--connections 16] [--rounds 3]
                                               [--baseline REF]

It starts ``gateway serve`` (default configuration: INFO, access log on) twice, signing with
RS256 and with ES256, against ``GATEWAY_DATABASE_URL`` (else an embedded PostgreSQL), and drives
``POST /oauth2/token`` with wrk (Lua scripts for the form and HTTP Basic client authentication):

- client_credentials;
- refresh_token: every request rotates a refresh token and the next request on that connection
  uses the new one (a pool of sessions made by the password grant beforehand);
- password, argon2id at its configured (default) cost, 16 users taking turns.

Each row shows requests/s, p50/p99, the server's CPU per request (its database calls count only
as client time), requests per CPU-second, and for the one-signature grants the ratio to the
signing floor: what this process can sign per second of CPU with the same key and nothing else.
``--baseline REF`` also runs the gateway of git revision REF (a temporary worktree, its own
database) beside it, interleaved round by round, so before and after come from one run.
Servers are pinned to core 0 and wrk to core 1 where the machine has two cores. Only 127.0.0.1
is used; every run is bounded in time.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tests.perf import bench_proxy as bench

SERVICE = ("svc", "svc-secret-0123456789abcdef")
PASSWORD = "bench-token-password"
# Users signing in at once: each account sees at most a couple of attempts in flight, as with
# real users (one account's parallel attempts would trip its brute-force lock, by design).
USERS = [f"bench-token-user-{i}" for i in range(16)]
SESSIONS = 32  # refresh tokens in the pool: twice the connections, so none waits


def write_config(directory: Path, port: int, alg: str) -> Path:
    (directory / "oauth2").mkdir(parents=True)
    (directory / "sites").mkdir()
    gateway = {
        "listen": {"host": "127.0.0.1", "port": port},
        "issuer": f"http://localhost:{port}",
        "keys": {"master_key": "bench-master-key-0123456789abcdefghijklmn"},
        "tokens": {"signing_alg": alg},
        "limits": {"login_failures_per_ip": 1_000_000, "client_failures_per_ip": 1_000_000},
    }
    (directory / "gateway.json").write_text(json.dumps(gateway))
    clients = {
        "svc": {
            "client_id": SERVICE[0],
            "client_secret": SERVICE[1],
            "scopes": ["orders.read", "offline_access"],
            "grant_types": ["client_credentials", "password", "refresh_token"],
        }
    }
    (directory / "oauth2" / "default.json").write_text(json.dumps(clients))
    return directory / "gateway.json"


def _basic() -> str:
    return base64.b64encode(f"{SERVICE[0]}:{SERVICE[1]}".encode()).decode()


def lua(directory: Path, body: str) -> Path:
    script = directory / f"post-{abs(hash(body))}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{body}"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["Authorization"] = "Basic {_basic()}"\n'
    )
    return script


def password_lua(directory: Path) -> Path:
    """wrk script: password grants of the bench users in turn."""
    script = directory / "password.lua"
    names = ", ".join(f'"{name}"' for name in USERS)
    script.write_text(
        f"""
local users = {{{names}}}
local next_user = 0
local headers = {{
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Authorization"] = "Basic {_basic()}",
}}
request = function()
  next_user = next_user % #users + 1
  local body = "grant_type=password&username=" .. users[next_user] .. "&password={PASSWORD}"
  return wrk.format("POST", nil, headers, body)
end
"""
    )
    return script


def refresh_lua(directory: Path, tokens: list[str]) -> Path:
    """wrk script: each request takes a refresh token from the pool, each answer puts the
    rotated one back (wrk runs one thread here, so the pool is shared by its connections)."""
    pool = directory / f"refresh-{abs(hash(tuple(tokens)))}.txt"
    pool.write_text("\n".join(tokens) + "\n")
    script = directory / f"refresh-{abs(hash(tuple(tokens)))}.lua"
    script.write_text(
        f"""
local pool = {{}}
for line in io.lines("{pool}") do pool[#pool + 1] = line end
local headers = {{
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Authorization"] = "Basic {_basic()}",
}}
request = function()
  local token = table.remove(pool)
  if token == nil then token = "pool-empty" end
  return wrk.format("POST", nil, headers, "grant_type=refresh_token&refresh_token=" .. token)
end
response = function(status, headers, body)
  local token = string.match(body, '"refresh_token"%s*:%s*"([^"]+)"')
  if token then pool[#pool + 1] = token end
end
"""
    )
    return script


def refresh_tokens(port: int, count: int) -> list[str]:
    """``count`` sessions of the bench users (password grant, offline access): their refresh
    tokens."""
    tokens = []
    for index in range(count):
        form = urllib.parse.urlencode(
            {
                "grant_type": "password",
                "username": USERS[index % len(USERS)],
                "password": PASSWORD,
                "scope": "orders.read offline_access",
            }
        ).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/oauth2/token",
            data=form,
            headers={"Authorization": f"Basic {_basic()}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                tokens.append(json.loads(response.read())["refresh_token"])
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"sign-in for the refresh pool: {exc.code} {exc.read()!r}") from exc
    return tokens


def signing_floor(alg: str, seconds: float = 3.0) -> float:
    """Signatures per second of CPU of one process with a key like the gateway's, claims like
    an access token's: the ceiling of a token endpoint that signs every answer."""
    from gateway.tokens.jwt import ACCESS_TOKEN_TYP, mint
    from gateway.tokens.keys import generate_signing_key

    key = generate_signing_key(alg)
    claims = {
        "iss": "http://localhost:8080",
        "sub": "client:svc",
        "aud": "http://localhost:8080",
        "exp": 2_000_000_000,
        "iat": 1_700_000_000,
        "jti": "0123456789abcdef0123456789abcdef",
        "client_id": "svc",
        "scope": "orders.read",
    }
    start = time.process_time()
    count = 0
    while time.process_time() - start < seconds and count < 1_000_000:
        mint(claims, key, ACCESS_TOKEN_TYP)
        count += 1
    return count / (time.process_time() - start)


def settle(meter: bench.CpuMeter, limit: float = 60.0) -> None:
    """Wait until the server is idle (at most ``limit`` seconds): work queued by the previous
    scenario is not charged to the next one."""
    deadline = time.monotonic() + limit
    before = meter.seconds()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = meter.seconds()
        if now - before < 0.02:
            return
        before = now


@dataclass
class Server:
    label: str  # "" for this checkout, "baseline <ref>" for the other
    alg: str
    port: int
    meter: bench.CpuMeter


def start_servers(
    stack: ExitStack, work: Path, env: dict[str, str], label: str, code: Path
) -> list[Server]:
    servers: list[Server] = []
    run_env = {**env, "PYTHONPATH": str(code)}
    for alg in ("RS256", "ES256"):
        port = bench.free_port()
        directory = work / f"{label or 'current'}-{alg}".replace(" ", "-")
        conf = write_config(directory, port, alg)
        run_env["GATEWAY_CONFIG"] = str(conf)
        for name in USERS if not servers else ():
            subprocess.run(
                [bench.PYTHON, "-m", "gateway", "user", "add", name, "--password-stdin"],
                input=PASSWORD,
                text=True,
                env=run_env,
                cwd=directory,
                timeout=300,
                check=False,  # exists already in a reused database
                capture_output=True,
            )
        process = bench.spawn(
            stack,
            [bench.PYTHON, "-m", "gateway", "serve"],
            dict(run_env),
            directory,
            cores=bench.SERVER_CORES,
            log=directory / "gateway.log",
        )
        bench.wait_ready(f"http://127.0.0.1:{port}/readyz")
        servers.append(Server(label, alg, port, bench.CpuMeter(process)))
    return servers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", metavar="REF", help="also run git revision REF, interleaved")
    parser.add_argument("--no-password", action="store_true", help="skip the argon2 scenario")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2:
        bench.SERVER_CORES, bench.LOAD_CORES = {cores[0]}, {cores[1]}
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="gw-bench-token-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        url = os.environ.get("GATEWAY_DATABASE_URL")
        if url:
            env["GATEWAY_DATABASE_URL"] = url
        servers = start_servers(stack, work, env, "", bench.ROOT)
        if args.baseline:
            code = bench.baseline_checkout(stack, work, args.baseline)
            other = dict(env)
            if url:
                other["GATEWAY_DATABASE_URL"] = bench.baseline_database(url)
            servers += start_servers(stack, work, other, f"baseline {args.baseline}", code)
        cc = lua(work, "grant_type=client_credentials&scope=orders.read")
        pw = password_lua(work)
        warm = argparse.Namespace(duration=2, connections=args.connections)
        rounds: dict[tuple[str, str, str], list[bench.Result]] = {}
        for server in servers:
            bench.wrk("warm-up", f"http://127.0.0.1:{server.port}/oauth2/token", warm, script=cc)
        for _ in range(max(1, args.rounds)):
            for server in servers:
                url_token = f"http://127.0.0.1:{server.port}/oauth2/token"
                rt = refresh_lua(work, refresh_tokens(server.port, SESSIONS))
                settle(server.meter)
                for grant, script in (("client_credentials", cc), ("refresh_token", rt)):
                    result = bench.wrk(
                        f"{grant}, {server.alg}", url_token, args, meter=server.meter, script=script
                    )
                    rounds.setdefault((grant, server.alg, server.label), []).append(result)
            for server in servers if not args.no_password else ():
                url_token = f"http://127.0.0.1:{server.port}/oauth2/token"
                result = bench.wrk(
                    f"password, {server.alg}", url_token, args, meter=server.meter, script=pw
                )
                rounds.setdefault(("password", server.alg, server.label), []).append(result)
                settle(server.meter)  # argon2 answers still queued must not load the next run
        floors = {alg: signing_floor(alg) for alg in ("RS256", "ES256")}
        print(
            "\nPOST /oauth2/token with wrk (gateway defaults: INFO, access log on, argon2id at its"
            " default cost)"
        )
        print(
            f"{'scenario':<46}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}"
            f"{'req/CPU-s':>11}{'floor/s':>9}{'x floor':>9}{'errors':>8}  note"
        )
        for (grant, alg, label), results in sorted(
            rounds.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] != "")
        ):
            r = bench.median_round(results)
            name = f"{grant}, {alg}" + (f" ({label})" if label else "")
            floor = floors[alg] if grant != "password" else None
            cpu = f"{r.cpu_us:.0f}" if r.cpu_us is not None else "-"
            cpu_rps = 1e6 / r.cpu_us if r.cpu_us else 0.0
            ratio = f"{floor / cpu_rps:.2f}" if floor and cpu_rps else "-"
            shown = f"{floor:.0f}" if floor else "-"
            print(
                f"{name:<46}{r.rps:>8.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{cpu:>12}"
                f"{cpu_rps:>11.0f}{shown:>9}{ratio:>9}{r.errors:>8}  {r.note}"
            )
        print(
            "\nreq/CPU-s: requests per second of the server's CPU (what one gateway core would"
            " serve). x floor: signing floor / req/CPU-s (1.00 would mean a request costs only its"
            " signature; goal 1.3 with RS256). Servers on core 0, wrk on core 1 where there are two"
            " cores; the database shares core 1."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
