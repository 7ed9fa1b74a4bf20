"""Token endpoint benchmark (issue 13 item 3): one command, one table.

    .venv/bin/python -m tests.perf.bench_token [--duration 5] [--connections 16] [--rounds 3]

It starts ``gateway serve`` (default configuration: INFO, access log on) twice, signing with
RS256 and with ES256, against ``GATEWAY_DATABASE_URL`` (else an embedded PostgreSQL), and drives
``POST /oauth2/token`` with wrk (a Lua script for the form and HTTP Basic client authentication):
client_credentials, and password (argon2id at the configured cost). Each row shows requests/s,
p50/p99, the server's CPU per request (its database calls count only as client time) and, for
client_credentials, the ratio to the signing floor: what this process can sign per second of CPU
with the same key and nothing else. Servers are pinned to core 0 and wrk to core 1 where the
machine has two cores. Only 127.0.0.1 is used; every run is bounded in time.
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
from contextlib import ExitStack
from pathlib import Path

from tests.perf import bench_proxy as bench

SERVICE = ("svc", "svc-secret-0123456789abcdef")
USER, PASSWORD = "bench-token-user", "bench-token-password"


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
            "scopes": ["orders.read"],
            "grant_types": ["client_credentials", "password"],
        }
    }
    (directory / "oauth2" / "default.json").write_text(json.dumps(clients))
    return directory / "gateway.json"


def lua(directory: Path, body: str) -> Path:
    basic = base64.b64encode(f"{SERVICE[0]}:{SERVICE[1]}".encode()).decode()
    script = directory / f"post-{abs(hash(body))}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{body}"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["Authorization"] = "Basic {basic}"\n'
    )
    return script


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
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
        if os.environ.get("GATEWAY_DATABASE_URL"):
            env["GATEWAY_DATABASE_URL"] = os.environ["GATEWAY_DATABASE_URL"]
        servers: dict[str, tuple[int, bench.CpuMeter]] = {}
        for alg in ("RS256", "ES256"):
            port = bench.free_port()
            conf = write_config(work / alg, port, alg)
            run_env = {**env, "GATEWAY_CONFIG": str(conf)}
            if not servers:
                subprocess.run(
                    [bench.PYTHON, "-m", "gateway", "user", "add", USER, "--password-stdin"],
                    input=PASSWORD,
                    text=True,
                    env=run_env,
                    cwd=work,
                    timeout=120,
                    check=False,  # exists already in a reused database
                    capture_output=True,
                )
            process = bench.spawn(
                stack,
                [bench.PYTHON, "-m", "gateway", "serve"],
                run_env,
                work,
                cores=bench.SERVER_CORES,
                log=work / f"{alg}.log",
            )
            bench.wait_ready(f"http://127.0.0.1:{port}/readyz")
            servers[alg] = (port, bench.CpuMeter(process))
        cc = lua(work, "grant_type=client_credentials&scope=orders.read")
        pw = lua(work, f"grant_type=password&username={USER}&password={PASSWORD}")
        warm = argparse.Namespace(duration=2, connections=args.connections)
        rounds: dict[str, list[bench.Result]] = {}
        for port, _meter in servers.values():
            bench.wrk("warm-up", f"http://127.0.0.1:{port}/oauth2/token", warm, script=cc)
        for _ in range(max(1, args.rounds)):
            for alg, (port, meter) in servers.items():
                url = f"http://127.0.0.1:{port}/oauth2/token"
                for name, script in ((f"client_credentials, {alg}", cc), (f"password, {alg}", pw)):
                    result = bench.wrk(name, url, args, meter=meter, script=script)
                    rounds.setdefault(name, []).append(result)
        floors = {alg: signing_floor(alg) for alg in servers}
        print(
            "\nPOST /oauth2/token with wrk (gateway defaults: INFO, access log on, argon2id at its"
            " default cost)"
        )
        print(
            f"{'scenario':<30}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}"
            f"{'floor/s':>10}{'x floor':>9}{'errors':>8}  note"
        )
        for name, results in rounds.items():
            r = bench.median_round(results)
            alg = name.rsplit(", ", 1)[1]
            floor = floors[alg] if name.startswith("client_credentials") else None
            cpu = f"{r.cpu_us:.0f}" if r.cpu_us is not None else "-"
            cpu_rps = 1e6 / r.cpu_us if r.cpu_us else 0.0
            ratio = f"{floor / cpu_rps:.2f}" if floor and cpu_rps else "-"
            shown = f"{floor:.0f}" if floor else "-"
            print(
                f"{name:<30}{r.rps:>9.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{cpu:>12}"
                f"{shown:>10}{ratio:>9}{r.errors:>8}  {r.note}"
            )
        print(
            "\nx floor: signing floor / requests per second of the server's CPU (1.00 would mean"
            " a request costs only its signature). Servers on core 0, wrk on core 1 where there"
            " are two cores."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
