"""The reference server's own configuration format (DESIGN.md section 4): a client file shaped like
the reference project's ``conf/oauth2/default.json`` (``issuers``, ``scopes``, ``client_id``,
``client_secret``, ``algorithm``, ``auth_uri``/``token_uri`` as paths, ``redirect_uris``,
``javascript_origins``) passes ``gateway config check``, runs under ``gateway serve``, and a
person signs in with it in Chromium. Issue 8 item 3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.relying_party import RelyingParty, query_of, sign_in_on_the_login_page
from tests.support import (
    TEST_MASTER_KEY,
    USERS,
    ServeProcess,
    free_port,
    gateway_env,
    run_gateway,
    wait_http,
)

pytestmark = pytest.mark.browser

WEB_SECRET = "reference-web-secret-0123456789abcdef"


def reference_clients(redirect_uri: str) -> dict[str, Any]:
    """Three apps as the reference writes them: no grant_types, pkce or consent keys."""
    common = {
        "issuers": ["accounts.example.test"],
        "auth_uri": "/oauth2/authorize",
        "token_uri": "/oauth2/token",
    }
    return {
        "web": {
            **common,
            "scopes": ["openid", "profile", "email", "api"],
            "client_id": "web-example.test",
            "client_secret": WEB_SECRET,
            "algorithm": "HS256",
            "redirect_uris": [redirect_uri],
            "javascript_origins": ["http://localhost:3000"],
        },
        "service": {
            **common,
            "scopes": ["api"],
            "client_id": "service-example.test",
            "client_secret": "reference-service-secret-0123456789ab",
            "algorithm": "HS256",
        },
        "android": {
            **common,
            "scopes": ["openid", "api"],
            "client_id": "android-example.test",
            "redirect_uris": ["com.example.app:/oauth2redirect"],
        },
    }


async def test_a_reference_client_file_checks_serves_and_signs_in(
    tmp_path: Path,
    database_url: str,
    users: dict[str, str],
    browser: Any,
    started: list[ServeProcess],
) -> None:
    port = free_port()
    gateway_url = f"http://127.0.0.1:{port}"
    rp = RelyingParty(
        gateway_url, "web-example.test", WEB_SECRET, scope="openid profile", algorithm="HS256"
    )
    await rp.start(host="localhost")
    try:
        conf = tmp_path / "conf"
        (conf / "oauth2").mkdir(parents=True)
        (conf / "gateway.json").write_text(
            json.dumps({"listen": {"port": port}, "keys": {"master_key": TEST_MASTER_KEY}})
        )
        (conf / "oauth2" / "default.json").write_text(
            json.dumps(reference_clients(rp.redirect_uri), indent=4)
        )
        env = gateway_env(
            GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(conf / "gateway.json")
        )

        check = run_gateway("config", "check", env=env)
        assert check.returncode == 0, check.stderr
        assert "OK (3 clients" in check.stdout
        listing = run_gateway("client", "list", env=env)
        rows = {line.split()[0]: line.split() for line in listing.stdout.splitlines()[1:]}
        assert rows["android-example.test"][2] == "public"
        assert rows["web-example.test"][2] == "confidential"

        gateway = ServeProcess([], env, tmp_path)
        started.append(gateway)
        wait_http(f"{gateway_url}/readyz", timeout=60)

        page = await (await browser.new_context()).new_page()
        await page.goto(f"{rp.origin}/login")
        assert page.url.startswith(f"{gateway_url}/oauth2/authorize?")
        await sign_in_on_the_login_page(page, "alice", USERS["alice"][0])
        assert await page.inner_text("#user") == "alice"
        (signed,) = rp.sign_ins
        assert signed.claims["aud"] == "web-example.test"  # verified with the HS256 secret
        assert query_of(page.url)["state"] == signed.state
        code, stderr = gateway.terminate()
        assert code == 0, stderr
    finally:
        await rp.close()
