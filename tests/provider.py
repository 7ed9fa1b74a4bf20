"""An external OpenID provider for the tests, served on 127.0.0.1: discovery-free endpoints
(``/authorize`` with its own small sign-in page, ``/token``, ``/jwks``), real RS256 ID tokens,
and checks of what a client sends (client secret, PKCE verifier, redirect URI)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


@dataclass
class Grant:
    """One code the provider handed out, and what its ID token will say."""

    challenge: str
    redirect_uri: str
    nonce: str
    claims: dict[str, Any]


@dataclass
class FakeProvider:
    """An OpenID provider: JWKS, a token endpoint that checks client auth and PKCE, ID tokens;
    ``accounts`` are the people who can sign in on its own page (name -> ID token claims)."""

    client_id: str
    client_secret: str
    callback: str
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    grants: dict[str, Grant] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    tamper: dict[str, Any] = field(default_factory=dict)  # claims to override in the next token
    fail_with: int | None = None
    sign_with: rsa.RSAPrivateKey | None = None
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # "crit", "two alg" or "two sub": the next ID token is validly signed but hostile JOSE.
    jose: str | None = None
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
        assert query["client_id"] == self.client_id
        assert query["redirect_uri"] == self.callback
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
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
            or form.get("redirect_uri") != grant.redirect_uri
            or challenge != grant.challenge
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            **grant.claims,
            **self.tamper,
        }
        if self.jose is not None:
            id_token = self._hostile(claims)
        else:
            id_token = jwt.encode(
                claims, self.sign_with or self.key, algorithm="RS256", headers={"kid": "fake-1"}
            )
        return web.json_response(
            {"access_token": "at", "token_type": "Bearer", "id_token": id_token}
        )

    def _hostile(self, claims: dict[str, Any]) -> str:
        """SECURITY-CHECKLIST item 133 in an ID token: validly signed, hostile JSON."""
        header = {"alg": "RS256", "kid": "fake-1", "typ": "JWT"}
        head, body = json.dumps(header), json.dumps(claims)
        if self.jose == "crit":
            head = json.dumps({**header, "crit": ["exp2"], "exp2": 1})
        elif self.jose == "two alg":
            head = head[:-1] + ', "alg": "RS256"}'
        else:
            body = (
                json.dumps({**claims, "sub": "someone-else"})[:-1] + f', "sub": "{claims["sub"]}"}}'
            )
        signing_input = f"{_segment(head.encode())}.{_segment(body.encode())}".encode()
        signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(signing_input, self.key)
        return f"{signing_input.decode()}.{_segment(signature)}"

    async def _sign_in_page(self, request: web.Request) -> web.Response:
        """The provider's own sign-in page: one field, the account name."""
        hidden = f'<input type="hidden" name="q" value="{escape(request.query_string)}">'
        return web.Response(
            text=(
                "<!doctype html><title>Fake provider</title><h1>Fake provider</h1>"
                f'<form method="post" action="/authorize">{hidden}'
                '<label for="account">Account</label><input id="account" name="account">'
                '<button type="submit">Continue</button></form>'
            ),
            content_type="text/html",
        )

    async def _sign_in(self, request: web.Request) -> web.Response:
        form = await request.post()
        claims = self.accounts.get(str(form.get("account", "")))
        if claims is None:
            return web.Response(status=403, text="no such account")
        location = f"{self.issuer}/authorize?{form.get('q', '')}"
        back = self.authorize(location, {**claims, "auth_time": int(time.time())})
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        raise web.HTTPFound(f"{query['redirect_uri']}?{urlencode(back)}")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/jwks", self._jwks)
        app.router.add_post("/token", self._token)
        app.router.add_get("/authorize", self._sign_in_page)
        app.router.add_post("/authorize", self._sign_in)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()


def _segment(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
