"""A real OpenID provider for the tests: panva's oidc-provider (tests/op/provider.mjs) run with
the machine's Node.js on 127.0.0.1. ``./scripts/test`` installs it (npm ci in tests/op)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, free_port, wait_http

OP_DIR = ROOT / "tests" / "op"


@contextlib.contextmanager
def oidc_provider(
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    access_ttl: int = 600,
    jwt_access_tokens: bool = False,
) -> Iterator[str]:
    """The provider's issuer URL while it runs."""
    node = shutil.which("node")
    if node is None or not (OP_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the test provider is not installed: run ./scripts/test (npm ci in tests/op)")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(Path.home())),
        "OP_PORT": str(port),
        "OP_CLIENT_ID": client_id,
        "OP_CLIENT_SECRET": client_secret,
        "OP_REDIRECT_URI": redirect_uri,
        "OP_AT_TTL": str(access_ttl),
        "OP_JWT_ACCESS_TOKENS": "1" if jwt_access_tokens else "0",
    }
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        [node, "provider.mjs"], cwd=OP_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    issuer = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{issuer}/.well-known/openid-configuration", timeout=30)
        except AssertionError:
            log.seek(0)
            pytest.fail(f"the test provider did not start:\n{log.read()[-2000:]}")
        yield issuer
    finally:
        log.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
