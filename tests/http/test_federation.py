"""Signing in with an external OpenID provider from the login page (``/oauth2/external/<p>``,
``/oauth2/code/<p>``), against a real provider served here on 127.0.0.1: it checks what the
gateway sends (client secret, PKCE verifier, redirect URI) and signs real ID tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from bs4 import BeautifulSoup
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.http.conftest import CLIENTS, ISSUER, RELAXED_LIMITS, V, authz_params, location_params
from tests.support import write_conf

Client = TestClient  # type: ignore[type-arg]
CALLBACK = f"{ISSUER}/oauth2/code/fake"
CLIENT_ID = "gateway-at-fake"
CLIENT_SECRET = "fake-provider-secret"


@dataclass
class Grant:
    """One code the provider handed out, and what its ID token will say."""

    challenge: str
    redirect_uri: str
    nonce: str
    claims: dict[str, Any]


@dataclass
class FakeProvider:
    """An OpenID provider: JWKS, a token endpoint that checks client auth and PKCE, ID tokens."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    grants: dict[str, Grant] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    tamper: dict[str, Any] = field(default_factory=dict)  # claims to override in the next token
    fail_with: int | None = None
    sign_with: rsa.RSAPrivateKey | None = None
    server: TestServer | None = None

    @property
    def issuer(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def authorize(self, location: str, claims: dict[str, Any]) -> dict[str, str]:
        """What the provider's login would do: check the request, issue a code; the callback
        query the browser is sent back with."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert location.startswith(f"{self.issuer}/authorize?")
        assert query["client_id"] == CLIENT_ID
        assert query["redirect_uri"] == CALLBACK
        assert query["response_type"] == "code"
        assert query["code_challenge_method"] == "S256"
        assert "openid" in query["scope"].split()
        code = secrets.token_urlsafe(16)
        self.grants[code] = Grant(
            query["code_challenge"], query["redirect_uri"], query["nonce"], claims
        )
        return {"code": code, "state": query["state"]}

    async def _jwks(self, _request: web.Request) -> web.Response:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid="fake-1", alg="RS256", use="sig")
        return web.json_response({"keys": [jwk]})

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({k: str(v) for k, v in form.items()})
        if self.fail_with:
            return web.json_response({"error": "server_error"}, status=self.fail_with)
        grant = self.grants.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if (
            grant is None
            or form.get("client_id") != CLIENT_ID
            or form.get("client_secret") != CLIENT_SECRET
            or form.get("redirect_uri") != grant.redirect_uri
            or challenge != grant.challenge
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            **grant.claims,
            **self.tamper,
        }
        id_token = jwt.encode(
            claims, self.sign_with or self.key, algorithm="RS256", headers={"kid": "fake-1"}
        )
        return web.json_response(
            {"access_token": "at", "token_type": "Bearer", "id_token": id_token}
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/jwks", self._jwks)
        app.router.add_post("/token", self._token)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider()
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
    fields = {i["name"]: i["value"] for i in form.find_all("input", type="hidden")}
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


async def test_sign_in_with_a_provider_completes_the_code_flow(
    as_client: Client, provider: FakeProvider, db: asyncpg.Connection
) -> None:
    """The whole flow: login page button -> provider (PKCE, nonce, our redirect URI) -> callback
    -> the client gets its code and state, redeems it for alice's tokens; the provider got the
    client secret and the PKCE verifier; the identity is linked by the verified email."""
    location = await start_external(as_client)
    back = provider.authorize(location, alice_claims())
    resp = await as_client.get("/oauth2/code/fake", params=back, allow_redirects=False)
    assert resp.status == 302, await resp.text()
    query, _ = location_params(resp.headers["Location"])
    assert resp.headers["Location"].startswith("https://rp.example.test/cb?")
    assert query["state"] == "st-conf"
    assert "SID" in {c.key for c in as_client.session.cookie_jar}
    (sent,) = provider.token_requests
    assert sent["client_secret"] == CLIENT_SECRET
    assert sent["redirect_uri"] == CALLBACK
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
    link = await db.fetchrow("SELECT * FROM auth.identity WHERE provider = 'fake'")
    assert link["subject"] == "fake-alice-1"
    assert link["user_id"] == await db.fetchval(
        "SELECT id FROM auth.users WHERE username = 'alice'"
    )

    # A later sign-in follows the link even though the provider now reports another, unverified
    # email; and with a live session, prompt=none answers silently.
    location = await start_external(as_client, prompt="login")
    back = provider.authorize(location, alice_claims(email="new@else.test", email_verified=False))
    again = await as_client.get("/oauth2/code/fake", params=back, allow_redirects=False)
    assert again.status == 302, await again.text()
    silent = await as_client.get(
        "/oauth2/authorize", params=authz_params("conf", prompt="none"), allow_redirects=False
    )
    assert "code" in location_params(silent.headers["Location"])[0]


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param(alice_claims(sub="u1", email_verified=False), id="unverified-email"),
        pytest.param(alice_claims(sub="u2", email_verified="false"), id="unverified-string"),
        pytest.param(alice_claims(sub="u3", email="nobody@example.test"), id="unknown-email"),
        pytest.param(alice_claims(sub="u4", email="carol@example.test"), id="locked-user"),
        pytest.param({"sub": "u5"}, id="no-email"),
    ],
)
async def test_no_local_user_means_no_sign_in(
    as_client: Client, provider: FakeProvider, db: asyncpg.Connection, claims: dict[str, Any]
) -> None:
    """An identity no local user can be linked to is refused with the login page (403), no
    session cookie and no link; an unverified email never links (it could be anyone's)."""
    location = await start_external(as_client)
    back = provider.authorize(location, claims)
    resp = await as_client.get("/oauth2/code/fake", params=back, allow_redirects=False)
    assert resp.status == 403, await resp.text()
    assert "No account here is linked to this Fake account." in await resp.text()
    assert 'name="password"' in await resp.text()
    assert "SID" not in {c.key for c in as_client.session.cookie_jar}
    links = "SELECT count(*) FROM auth.identity WHERE provider = 'fake' AND subject = $1"
    assert await db.fetchval(links, claims["sub"]) == 0


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"tamper": {"nonce": "another-nonce"}}, id="nonce-mismatch"),
        pytest.param({"tamper": {"aud": "someone-else"}}, id="wrong-audience"),
        pytest.param({"tamper": {"iss": "https://evil.test"}}, id="wrong-issuer"),
        pytest.param({"tamper": {"exp": int(time.time()) - 3600}}, id="expired"),
        pytest.param({"tamper": {"aud": [CLIENT_ID, "other"], "azp": "other"}}, id="wrong-azp"),
        pytest.param(
            {"sign_with": rsa.generate_private_key(public_exponent=65537, key_size=2048)},
            id="unknown-signing-key",
        ),
        pytest.param({"fail_with": 500}, id="token-endpoint-500"),
    ],
)
async def test_a_bad_provider_answer_signs_nobody_in(
    as_client: Client, provider: FakeProvider, change: dict[str, Any]
) -> None:
    """OIDC Core 3.1.3.7: an ID token with another nonce, audience, issuer or key, or expired,
    and a failing token endpoint, all end on the login page with a message; nobody signs in."""
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
    back = provider.authorize(location, alice_claims())
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
    # The rightful browser can still finish.
    ok = await as_client.get("/oauth2/code/fake", params=back, allow_redirects=False)
    assert ok.status == 302, await ok.text()


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
    flow = BeautifulSoup(html, "html.parser").find("input", attrs={"name": "flow"})["value"]
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
