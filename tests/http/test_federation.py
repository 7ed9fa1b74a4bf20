"""Signing in with an external OpenID provider from the login page (``/oauth2/external/<p>``,
``/oauth2/code/<p>``), against a real provider served here on 127.0.0.1: it checks what the
gateway sends (client secret, PKCE verifier, redirect URI) and signs real ID tokens."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import jwt
import pytest
from aiohttp import ClientResponse
from bs4 import BeautifulSoup
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.passwords import Passwords
from gateway.store import users
from tests.http.conftest import CLIENTS, ISSUER, RELAXED_LIMITS, V, authz_params, location_params
from tests.provider import FakeProvider
from tests.support import Client, named_input, write_conf

CALLBACK = f"{ISSUER}/oauth2/code/fake"
CLIENT_ID = "gateway-at-fake"
CLIENT_SECRET = "fake-provider-secret"


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider(CLIENT_ID, CLIENT_SECRET, CALLBACK)
    await fake.start()
    yield fake
    assert fake.server is not None
    await fake.server.close()


@pytest.fixture
def as_conf_path(tmp_path: Path, provider: FakeProvider) -> Path:
    """The checklist clients, and ``conf/oauth2/fake.json`` describing the provider."""
    conf = write_conf(
        tmp_path / "conf", gateway={"issuer": ISSUER, "limits": RELAXED_LIMITS}, clients=CLIENTS
    )
    (conf.parent / "oauth2" / "fake.json").write_text(
        json.dumps(
            {
                "web": {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "auth_uri": f"{provider.issuer}/authorize",
                    "token_uri": f"{provider.issuer}/token",
                    "jwks_uri": f"{provider.issuer}/jwks",
                    "issuers": [provider.issuer],
                }
            }
        )
    )
    return conf


def provider_form(html: str) -> dict[str, str]:
    """The login page's "Sign in with Fake" form: its action and hidden fields."""
    soup = BeautifulSoup(html, "html.parser")
    form = soup.find("form", action="/oauth2/external/fake")
    assert form is not None, "no provider button on the login page"
    assert "Sign in with Fake" in form.get_text()
    fields = {str(i["name"]): str(i["value"]) for i in form.find_all("input", type="hidden")}
    return {"action": str(form["action"]), **fields}


async def start_external(client: Client, **extra: str) -> str:
    """Open the login page for ``conf`` and press the provider button: the provider URL."""
    params = authz_params("conf", **extra)
    page = await client.get("/oauth2/authorize", params=params, allow_redirects=False)
    assert page.status == 200, await page.text()
    form = provider_form(await page.text())
    resp = await client.post(form.pop("action"), data=form, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    return resp.headers["Location"]


def alice_claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "fake-alice-1", "email": "Alice@Example.test", "email_verified": True, **extra}


async def callback(client: Client, back: dict[str, str]) -> ClientResponse:
    return await client.get("/oauth2/code/fake", params=back, allow_redirects=False)


def form_flow(html: str) -> str:
    """The sealed flow of the page's password form."""
    soup = BeautifulSoup(html, "html.parser")
    form = soup.find("form", action="/oauth2/login")
    assert form is not None, html
    return str(named_input(form, "flow")["value"])


async def password_sign_in(
    client: Client, html: str, username: str, password: str
) -> ClientResponse:
    return await client.post(
        "/oauth2/login",
        data={"flow": form_flow(html), "username": username, "password": password},
        allow_redirects=False,
    )


LINKS = "SELECT user_id FROM auth.identity WHERE issuer = $1 AND subject = $2"


async def test_first_sign_in_links_after_the_password_then_follows_the_link(
    as_client: Client, provider: FakeProvider, db: asyncpg.Connection
) -> None:
    """Login page button -> provider (PKCE, nonce, our redirect URI) -> callback. The identity is
    linked to nobody, so the login page asks for the local password once (a verified email alone
    links nothing); after it the client gets its code and state and the link (iss, sub) exists.
    A later sign-in follows the link straight to the client, whatever email the provider now
    reports; the code redeems for alice's tokens; the provider got our secret and verifier."""
    location = await start_external(as_client)
    first = await callback(as_client, provider.authorize(location, alice_claims()))
    assert first.status == 200, await first.text()
    html = await first.text()
    assert "link your Fake account (Alice@Example.test)" in html
    assert "/oauth2/external/" not in html
    assert "SID" not in {c.key for c in as_client.session.cookie_jar}
    assert await db.fetchval(LINKS, provider.issuer, "fake-alice-1") is None
    wrong = await password_sign_in(as_client, html, "alice", "not-her-password")
    assert wrong.status == 401
    assert "The user name or password is wrong." in await wrong.text()
    assert "link your Fake account (Alice@Example.test)" in await wrong.text()  # still shown
    assert "/oauth2/external/" not in await wrong.text()
    linked = await password_sign_in(as_client, await wrong.text(), "alice", "Correct-Horse-9")
    assert linked.status == 303, await linked.text()
    assert location_params(linked.headers["Location"])[0]["state"] == "st-conf"
    alice = await db.fetchval("SELECT id FROM auth.users WHERE username = 'alice'")
    assert await db.fetchval(LINKS, provider.issuer, "fake-alice-1") == alice
    (sent,) = provider.token_requests
    assert sent["client_secret"] == CLIENT_SECRET
    assert sent["redirect_uri"] == CALLBACK

    # prompt=login: the provider is asked for a fresh sign-in and must say when it happened.
    location = await start_external(as_client, prompt="login")
    assert parse_qs(urlsplit(location).query)["prompt"] == ["login"]
    stale = alice_claims(auth_time=int(time.time()) - 3600)
    refused = await callback(as_client, provider.authorize(location, stale))
    assert refused.status == 400
    location = await start_external(as_client, prompt="login")
    claims = alice_claims(email="new@else.test", email_verified=False, auth_time=int(time.time()))
    again = await callback(as_client, provider.authorize(location, claims))
    assert again.status == 302, await again.text()
    assert again.headers["Location"].startswith("https://rp.example.test/cb?")
    query, _ = location_params(again.headers["Location"])
    assert query["state"] == "st-conf"
    tokens = await as_client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": "https://rp.example.test/cb",
            "client_id": "conf",
            "client_secret": "s3cr3t",
            "code_verifier": V,
        },
    )
    assert tokens.status == 200, await tokens.text()
    access = (await tokens.json())["access_token"]
    info = await as_client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert (await info.json())["preferred_username"] == "alice"
    silent = await as_client.get(
        "/oauth2/authorize", params=authz_params("conf", prompt="none"), allow_redirects=False
    )
    assert "code" in location_params(silent.headers["Location"])[0]
    # The callback cannot be replayed, not even with the state spelled differently.
    for suffix in ("", "=="):
        back = provider.authorize(location, claims)
        replayed = await callback(as_client, {**back, "state": back["state"] + suffix})
        assert replayed.status == 400
    assert len(provider.token_requests) == 3


async def test_an_email_never_links_by_itself(
    as_client: Client, provider: FakeProvider, db: asyncpg.Connection
) -> None:
    """Someone whose provider account carries alice's verified address gets the login page, not
    alice's account; signing in there with their own password (bob) links it to bob."""
    location = await start_external(as_client)
    claims = alice_claims(sub="mallory-1")
    page = await callback(as_client, provider.authorize(location, claims))
    assert page.status == 200
    assert "SID" not in {c.key for c in as_client.session.cookie_jar}
    signed = await password_sign_in(as_client, await page.text(), "bob", "B0b-Passw0rd!")
    assert signed.status == 303
    bob = await db.fetchval("SELECT id FROM auth.users WHERE username = 'bob'")
    assert await db.fetchval(LINKS, provider.issuer, "mallory-1") == bob


async def test_an_unverified_email_is_not_shown_as_the_account(
    as_client: Client, provider: FakeProvider
) -> None:
    """The link notice names the provider account by its email only when the provider verified
    it; an unverified one could claim to be anybody's, so the subject is shown instead."""
    location = await start_external(as_client)
    claims = {"sub": "unverified-9", "email": "victim@example.test", "email_verified": False}
    page = await callback(as_client, provider.authorize(location, claims))
    assert page.status == 200
    html = await page.text()
    assert "link your Fake account (unverified-9)" in html
    assert "victim@example.test" not in html


async def test_locked_and_reset_accounts(
    as_client: Client, provider: FakeProvider, db: asyncpg.Connection
) -> None:
    """A linked identity of a locked user is refused (403, no session); a new local password
    removes the user's links, so the identity must be linked again with the new password."""
    location = await start_external(as_client)
    page = await callback(as_client, provider.authorize(location, alice_claims(sub="bob-ext")))
    linked = await password_sign_in(as_client, await page.text(), "bob", "B0b-Passw0rd!")
    assert linked.status == 303
    await db.execute("UPDATE auth.users SET locked = true WHERE username = 'bob'")
    try:
        location = await start_external(as_client, prompt="login")
        fresh = alice_claims(sub="bob-ext", auth_time=int(time.time()))
        refused = await callback(as_client, provider.authorize(location, fresh))
        assert refused.status == 403, await refused.text()
        assert "This Fake account cannot be used to sign in here." in await refused.text()
    finally:
        await db.execute("UPDATE auth.users SET locked = false WHERE username = 'bob'")
    await users.user_update(db, "bob", Passwords().hash("B0b-Passw0rd!"), None)
    assert await db.fetchval(LINKS, provider.issuer, "bob-ext") is None
    location = await start_external(as_client, prompt="login")
    fresh = alice_claims(sub="bob-ext", auth_time=int(time.time()))
    page = await callback(as_client, provider.authorize(location, fresh))
    assert page.status == 200
    assert "link your Fake account" in await page.text()


async def test_a_sign_in_provider_is_not_an_assertion_issuer(
    as_client: Client, provider: FakeProvider
) -> None:
    """A JWT the provider signs for us with ``sub`` = a local user name is not a JWT bearer grant
    (RFC 7523): sign-in providers mint no grants unless their file says ``assertions: true``."""
    now = int(time.time())
    assertion = jwt.encode(
        {"iss": provider.issuer, "sub": "alice", "aud": ISSUER, "iat": now, "exp": now + 60},
        provider.key,
        algorithm="RS256",
        headers={"kid": "fake-1"},
    )
    resp = await as_client.post(
        "/oauth2/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": assertion,
            "client_id": "conf",
            "client_secret": "s3cr3t",
        },
    )
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"tamper": {"nonce": "another-nonce"}}, id="nonce-mismatch"),
        pytest.param({"tamper": {"aud": "someone-else"}}, id="wrong-audience"),
        pytest.param({"tamper": {"iss": "https://evil.test"}}, id="wrong-issuer"),
        pytest.param({"tamper": {"exp": int(time.time()) - 3600}}, id="expired"),
        pytest.param({"tamper": {"aud": [CLIENT_ID, "other"], "azp": "other"}}, id="wrong-azp"),
        pytest.param({"tamper": {"azp": "other"}}, id="azp-with-one-audience"),
        pytest.param({"tamper": {"aud": [CLIENT_ID, "other"]}}, id="extra-audience"),
        pytest.param({"tamper": {"iat": None}}, id="no-iat"),
        pytest.param({"tamper": {"sub": "s" * 256}}, id="sub-too-long"),
        pytest.param(
            {"sign_with": rsa.generate_private_key(public_exponent=65537, key_size=2048)},
            id="unknown-signing-key",
        ),
        pytest.param({"fail_with": 500}, id="token-endpoint-500"),
        pytest.param({"jose": "crit"}, id="133a-crit"),
        pytest.param({"jose": "two alg"}, id="133b-two-alg"),
        pytest.param({"jose": "two sub"}, id="133c-two-sub"),
    ],
)
async def test_a_bad_provider_answer_signs_nobody_in(
    as_client: Client, provider: FakeProvider, change: dict[str, Any]
) -> None:
    """OIDC Core 3.1.3.7: an ID token with another nonce, audience (or an extra one), azp,
    issuer or key, expired, without iat or with an over-long sub, and a failing token endpoint,
    all end on the login page with a message; nobody signs in."""
    location = await start_external(as_client)
    back = provider.authorize(location, alice_claims())
    for name, value in change.items():
        setattr(provider, name, value)
    resp = await as_client.get("/oauth2/code/fake", params=back, allow_redirects=False)
    assert resp.status == 400, await resp.text()
    assert "Signing in with Fake did not work." in await resp.text()
    assert "SID" not in {c.key for c in as_client.session.cookie_jar}


async def test_the_callback_belongs_to_the_browser_that_started(
    as_client: Client, provider: FakeProvider, as_conf_path: Path, database_url: str
) -> None:
    """Login CSRF (RFC 6749 10.12): a callback carried to another browser, a forged state, or
    a state replayed on another provider's path is refused before the code is redeemed."""
    location = await start_external(as_client)
    back = provider.authorize(location, alice_claims(sub="csrf-1"))
    from tests.http.checklist import serving

    async with serving(as_conf_path, database_url) as other_browser:
        stolen = await other_browser.get("/oauth2/code/fake", params=back, allow_redirects=False)
        assert stolen.status == 403, await stolen.text()
    forged = await as_client.get(
        "/oauth2/code/fake", params={**back, "state": back["state"][:-4] + "AAAA"}
    )
    assert forged.status == 403
    elsewhere = await as_client.get("/oauth2/code/other", params=back, allow_redirects=False)
    assert elsewhere.status == 403
    assert provider.token_requests == []
    # The rightful browser can still go on (to the page that links the new identity).
    ok = await as_client.get("/oauth2/code/fake", params=back, allow_redirects=False)
    assert ok.status == 200, await ok.text()
    assert "link your Fake account" in await ok.text()


async def test_provider_refusal_returns_to_the_login_page(
    as_client: Client, provider: FakeProvider
) -> None:
    """The user cancels at the provider (``error=access_denied``): back on our login page, which
    still carries the application's request, so a password sign-in can finish it."""
    location = await start_external(as_client)
    state = parse_qs(urlsplit(location).query)["state"][0]
    resp = await as_client.get(
        "/oauth2/code/fake", params={"error": "access_denied", "state": state}
    )
    assert resp.status == 400
    html = await resp.text()
    assert "Signing in with Fake did not work." in html
    flow = named_input(BeautifulSoup(html, "html.parser"), "flow")["value"]
    login = await as_client.post(
        "/oauth2/login",
        data={"flow": flow, "username": "alice", "password": "Correct-Horse-9"},
        allow_redirects=False,
    )
    assert login.status == 303
    assert location_params(login.headers["Location"])[0]["state"] == "st-conf"
    assert provider.token_requests == []


async def test_unknown_provider_and_no_providers(as_client: Client) -> None:
    """A button for a provider that is not configured gets 404; the callback of an unknown
    provider with no valid state gets 403."""
    page = await as_client.get("/oauth2/authorize", params=authz_params("conf"))
    form = provider_form(await page.text())
    form.pop("action")
    missing = await as_client.post("/oauth2/external/nope", data=form, allow_redirects=False)
    assert missing.status == 404
    assert (await as_client.get("/oauth2/code/nope?code=x&state=y")).status == 403


async def test_a_pending_link_does_not_outlive_its_deadline(
    as_client: Client, provider: FakeProvider, db: asyncpg.Connection, monkeypatch: Any
) -> None:
    """The pending link carries a fixed deadline (10 minutes; here already past): a password
    sign-in after it links nothing and signs nobody in."""
    monkeypatch.setattr("gateway.grants.federation.LINK_TTL", -1)
    location = await start_external(as_client)
    page = await callback(as_client, provider.authorize(location, alice_claims(sub="late-1")))
    assert page.status == 200
    late = await password_sign_in(as_client, await page.text(), "alice", "Correct-Horse-9")
    assert late.status == 400
    assert await db.fetchval(LINKS, provider.issuer, "late-1") is None
    assert "SID" not in {c.key for c in as_client.session.cookie_jar}
