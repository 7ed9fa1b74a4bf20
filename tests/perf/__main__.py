"""Every benchmark, one command (issue 13): the token handler (throughput against the direct
upstream and a minimal proxy, paced latency, workers), the token endpoint (with ``--baseline REF``:
the gateway of another revision beside this one) and memory, each printing its table.

    .venv/bin/python -m tests.perf [--quick] [--baseline REF]

``GATEWAY_DATABASE_URL`` chooses the database (else each benchmark starts an embedded
PostgreSQL). ``--quick``: shorter runs (3 s scenarios, 1 round, 2,000 connections, 20,000
sessions) to check that everything works; the figures to quote come from a run without it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--baseline", metavar="REF", help="also run the gateway of git revision REF: before/after"
    )
    args = parser.parse_args()
    short = ["--duration", "3", "--rounds", "1"] if args.quick else []
    runs = [
        [
            "tests.perf.bench_proxy",
            *short,
            *(["--quick"] if args.quick else []),
            *(["--baseline", args.baseline] if args.baseline else []),
        ],
        [
            "tests.perf.bench_token",
            *short,
            *(["--baseline", args.baseline] if args.baseline else []),
        ],
        [
            "tests.perf.bench_memory",
            *(["--connections", "2000", "--sessions", "20000"] if args.quick else []),
        ],
    ]
    failed = 0
    for run in runs:
        started = time.monotonic()
        print(f"\n=== {' '.join(run)}", flush=True)
        done = subprocess.run([sys.executable, "-m", *run], check=False, timeout=3600)
        print(
            f"=== {run[0]}: exit {done.returncode}, {time.monotonic() - started:.0f} s", flush=True
        )
        failed += done.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
