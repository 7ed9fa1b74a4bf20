"""`gateway serve` as a real process: readiness, graceful stop, embedded PostgreSQL, workers."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tests.support import (
    ROOT,
    TEST_MASTER_KEY,
    ServeProcess,
    committed_sample,
    free_port,
    gateway_env,
    run_gateway,
    wait_http,
)


def log_lines(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and any(str(pgdata) in part for part in cmdline):
            found.append(proc)
    return found


def test_serve_becomes_ready_and_stops_gracefully_on_sigterm(
    database_url: str, conf_path: Path, started: list[ServeProcess]
) -> None:
    port = free_port()
    env = gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(conf_path))
    gateway = ServeProcess(["--port", str(port)], env, ROOT)
    started.append(gateway)
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
    code, stderr = gateway.terminate()
    assert code == 0, stderr
    messages = [line["msg"] for line in log_lines(stderr)]
    assert "shutting down: finishing in-flight requests" in messages
    assert messages[-1] == "stopped"
    assert "Traceback" not in stderr


def test_embedded_postgres_starts_on_a_bare_machine_and_keeps_its_data(
    tmp_path: Path, started: list[ServeProcess]
) -> None:
    """DESIGN 5: without GATEWAY_DATABASE_URL the gateway runs its own PostgreSQL under
    var/pgdata, stops it on exit and reuses the data on the next start."""
    workdir = tmp_path / "site"
    committed_sample(workdir / "conf")
    env = gateway_env()
    port = free_port()
    gateway = ServeProcess(["--port", str(port)], env, workdir)
    started.append(gateway)
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)  # raises after 60 s
    pgdata = workdir / "var" / "pgdata"
    assert (pgdata / "PG_VERSION").exists()
    assert postgres_processes(pgdata), "the embedded PostgreSQL is not running"

    # A command beside the running server shares its database.
    added = run_gateway(
        "user", "add", "alice", "--password-stdin", env=env, cwd=workdir, stdin="pw1"
    )
    assert added.returncode == 0, added.stderr

    code, stderr = gateway.terminate()
    assert code == 0, stderr
    deadline = time.monotonic() + 15
    while postgres_processes(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not postgres_processes(pgdata), "the embedded PostgreSQL outlived the gateway"

    # Second start: the same data directory, the same user.
    port = free_port()
    again = ServeProcess(["--port", str(port)], env, workdir)
    started.append(again)
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
    exists = run_gateway(
        "user", "add", "alice", "--password-stdin", env=env, cwd=workdir, stdin="x"
    )
    assert exists.returncode == 1
    assert "already exists" in exists.stderr
    code, stderr = again.terminate()
    assert code == 0, stderr
    assert "applied 0001_schema" not in stderr  # nothing to migrate on the second start


def test_workers_share_one_port_and_all_stop(
    database_url: str, conf_path: Path, started: list[ServeProcess]
) -> None:
    port = free_port()
    env = gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(conf_path))
    gateway = ServeProcess(["--port", str(port), "--workers", "2"], env, ROOT)
    started.append(gateway)
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
    master = psutil.Process(gateway.process.pid)
    deadline = time.monotonic() + 20
    listening: set[int] = set()
    while time.monotonic() < deadline and len(listening) < 2:
        listening = {
            child.pid
            for child in master.children(recursive=True)
            if any(c.laddr and c.laddr.port == port for c in child.net_connections("tcp"))
        }
        time.sleep(0.2)
    assert len(listening) == 2, "expected two worker processes listening on the port"
    children = master.children(recursive=True)
    code, stderr = gateway.terminate()
    assert code == 0, stderr
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive


SLOW_UPSTREAM = """
import asyncio, sys
from aiohttp import web
async def slow(request):
    await asyncio.sleep(float(request.query.get("s", "2")))
    return web.json_response({"slow": True})
app = web.Application()
app.router.add_get("/{tail:.*}", slow)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def test_in_flight_requests_finish_after_sigterm(
    database_url: str, tmp_path: Path, started: list[ServeProcess]
) -> None:
    """Issue 2 item 5: on SIGTERM the listener closes and requests in flight still complete."""
    import threading
    import urllib.request

    from tests.support import write_conf

    upstream_port, port = free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, "-c", SLOW_UPSTREAM, str(upstream_port)])
    try:
        conf = write_conf(
            tmp_path / "conf",
            gateway={
                "routes": [
                    {
                        "prefix": "/slow/",
                        "upstream": f"http://127.0.0.1:{upstream_port}",
                        "auth": "none",
                    }
                ]
            },
        )
        env = gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(conf))
        gateway = ServeProcess(["--port", str(port)], env, ROOT)
        started.append(gateway)
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
        outcome: dict[str, object] = {}

        def call() -> None:
            url = f"http://127.0.0.1:{port}/slow/x?s=3"
            with urllib.request.urlopen(url, timeout=30) as response:
                outcome["status"] = response.status
                outcome["body"] = json.loads(response.read())

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1.0)  # the request is now waiting on the upstream
        code, stderr = gateway.terminate()
        caller.join(30)
        assert outcome == {"status": 200, "body": {"slow": True}}
        assert code == 0, stderr
    finally:
        upstream.terminate()
        upstream.wait(10)


def test_sighup_reloads_the_configuration(
    database_url: str, tmp_path: Path, started: list[ServeProcess]
) -> None:
    """Issue 4 item 8: SIGHUP applies a configuration change at once, without a restart.

    The file watcher compares size and mtime, so the edit keeps both (a placeholder origin of the
    same length is replaced, the mtime restored): only the signal can make the gateway see it."""
    import os
    import urllib.request

    from tests.support import write_conf

    placeholder, late = "https://xxxx.example.test", "https://late.example.test"
    assert len(placeholder) == len(late)
    conf = write_conf(tmp_path / "conf")
    clients_file = tmp_path / "conf" / "oauth2" / "default.json"
    clients = json.loads(clients_file.read_text())
    clients["web"]["javascript_origins"].append(placeholder)
    clients_file.write_text(json.dumps(clients))
    port = free_port()
    env = gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(conf))
    gateway = ServeProcess(["--port", str(port)], env, ROOT)
    started.append(gateway)
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)

    def preflight() -> str | None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/oauth2/token",
            method="OPTIONS",
            headers={
                "Origin": "https://late.example.test",
                "Access-Control-Request-Method": "POST",
            },
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            allowed: str | None = response.headers.get("Access-Control-Allow-Origin")
            return allowed

    assert preflight() is None
    before = clients_file.stat()
    clients_file.write_text(clients_file.read_text().replace(placeholder, late))
    os.utime(clients_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert clients_file.stat().st_size == before.st_size
    time.sleep(2.5)  # two polls of the watcher: it must not notice
    assert preflight() is None
    gateway.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while preflight() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert preflight() == "https://late.example.test"
    assert gateway.process.poll() is None
    code, stderr = gateway.terminate()
    assert code == 0, stderr
    assert "configuration reloaded" in stderr


@dataclass
class Page:
    status: int
    url: str
    text: str


class Browser:
    """Follows redirects and keeps cookies, as a browser does on a loopback address."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}

    def _send(self, method: str, url: str, body: bytes | None) -> Page:
        import urllib.error
        import urllib.request

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect)
        for _ in range(10):
            headers = {"Origin": self.base}
            if self.cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            request = urllib.request.Request(url, data=body, headers=headers, method=method)
            try:
                response = opener.open(request, timeout=10)
            except urllib.error.HTTPError as exc:
                response = exc
            for line in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = line.partition("=")
                value = rest.split(";", 1)[0]
                if "Max-Age=0" in line:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = value
            if response.status in (301, 302, 303):
                url, method, body = response.headers["Location"], "GET", None
                if url.startswith("/"):
                    url = self.base + url
                continue
            return Page(response.status, url, response.read().decode())
        raise AssertionError("too many redirects")

    def get(self, path: str) -> Page:
        return self._send("GET", self.base + path, None)

    def post(self, path: str, form: dict[str, str]) -> Page:
        import urllib.parse

        return self._send("POST", self.base + path, urllib.parse.urlencode(form).encode())


def test_the_sample_follows_the_port_it_is_given(
    tmp_path: Path, database_url: str, started: list[ServeProcess]
) -> None:
    """Issue 8 item 4: ``serve --port P`` with the sample configuration, as ./scripts/serve
    runs it: the log says which URL to open, the issuer is that address, and the demo signs in
    from it and reaches its API through the token handler (a route to the gateway itself)."""
    import urllib.request

    workdir = tmp_path / "site"
    committed_sample(workdir / "conf")
    port = free_port()
    # The module's database holds keys sealed with the tests' master key.
    env = gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_MASTER_KEY=TEST_MASTER_KEY)
    gateway = ServeProcess(["--port", str(port)], env, workdir)
    started.append(gateway)
    wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60)
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{base}/.well-known/openid-configuration", timeout=5) as r:
        assert json.load(r)["issuer"] == base
    # The demo's sign-in: /login/start, the login page, the callback, as a browser follows
    # them (cookies kept by hand: urllib's jar would not send Secure cookies over http).
    browser = Browser(base)
    page = browser.get("/login/start?return_to=/")
    assert page.status == 200
    flow = re.search(r'name="flow" value="([^"]+)"', page.text)
    assert flow is not None
    done = browser.post(
        "/oauth2/login", {"flow": flow.group(1), "username": "demo", "password": "demo"}
    )
    assert done.url == f"{base}/"
    assert '<script src="/demo/demo.js">' in done.text
    whoami = browser.get("/api/whoami")
    assert json.loads(whoami.text)["user"] == "demo"
    code, stderr = gateway.terminate()
    assert code == 0, stderr
    messages = [str(line["msg"]) for line in log_lines(stderr)]
    assert f"listening on http://127.0.0.1:{port} (pid {gateway.process.pid})" in messages
    assert f"demo: open {base}/ and sign in as demo / demo" in messages
