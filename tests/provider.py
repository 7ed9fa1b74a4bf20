"""An external OpenID provider for the tests, served on 127.0.0.1: discovery-free endpoints
(``/authorize`` with its own small sign-in page, ``/token``, ``/jwks``), real RS256 ID tokens,
and checks of what a client sends (client secret, PKCE verifier, redirect URI)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

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
    # As a token handler's provider (login.provider): refresh tokens (rotated at each use),
    # opaque access tokens, revocation, discovery, a slow token endpoint, key rotation.
    kid: str = "fake-1"
    expires_in: int = 60
    refresh_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh_requests: list[str] = field(default_factory=list)
    refuse_refresh: bool = False
    revoked: list[str] = field(default_factory=list)
    delay: float = 0.0
    access_tokens: list[str] = field(default_factory=list)
    # JWT access tokens (RFC 9068) instead of opaque ones; signed by ``access_signer`` when set.
    jwt_access: bool = False
    access_signer: rsa.RSAPrivateKey | None = None
    access_lifetime: int | None = None  # a JWT access token's own exp, if not expires_in
    access_sub: str | None = None
    rotate_refresh: bool = True  # False: one refresh token for the whole session (Google's way)
    access_token_size: int = 0  # opaque access tokens padded to this many characters
    jwks_down: bool = False  # a JWT access token for someone other than the ID token's

    def rotate_key(self) -> None:
        """Sign with a new key from now on; the key set publishes only the new one."""
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = f"fake-{int(self.kid.rsplit('-', 1)[1]) + 1}"

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
        if self.jwks_down:
            return web.json_response({"error": "unavailable"}, status=503)
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, alg="RS256", use="sig")
        return web.json_response({"keys": [jwk]})

    def _client_form(self, request: web.Request, form: dict[str, Any]) -> dict[str, Any]:
        """The form with HTTP Basic client credentials folded in (RFC 6749 section 2.3.1)."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            client_id, _, secret = base64.b64decode(value).decode().partition(":")
            return {
                **form,
                "client_id": unquote_plus(client_id),
                "client_secret": unquote_plus(secret),
            }
        return form

    async def _token(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        form = self._client_form(request, dict(await request.post()))
        self.token_requests.append({k: str(v) for k, v in form.items()})
        if self.fail_with:
            return web.json_response({"error": "server_error"}, status=self.fail_with)
        if form.get("grant_type") == "refresh_token":
            return self._refresh(form)
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
                claims, self.sign_with or self.key, algorithm="RS256", headers={"kid": self.kid}
            )
        refresh = secrets.token_urlsafe(24)
        self.refresh_tokens[refresh] = grant.claims
        return web.json_response(
            {
                "access_token": self._access_token(str(claims.get("sub", ""))),
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "id_token": id_token,
                "refresh_token": refresh,
            }
        )

    def _access_token(self, sub: str = "") -> str:
        if self.jwt_access:
            now = int(time.time())
            claims = {"iss": self.issuer, "sub": self.access_sub or sub, "aud": "api", "iat": now}
            lifetime = self.access_lifetime or self.expires_in
            claims.update(exp=now + lifetime, client_id=self.client_id)
            key = self.access_signer or self.key
            headers = {"kid": self.kid, "typ": "at+jwt"}
            token = jwt.encode(claims, key, algorithm="RS256", headers=headers)
        else:
            token = "at-" + secrets.token_urlsafe(16)
            token += "x" * max(self.access_token_size - len(token), 0)
        self.access_tokens.append(token)
        return token

    def _refresh(self, form: dict[str, Any]) -> web.Response:
        token = str(form.get("refresh_token", ""))
        self.refresh_requests.append(token)
        claims = self.refresh_tokens.pop(token, None)
        authenticated = (
            form.get("client_id") == self.client_id
            and form.get("client_secret") == self.client_secret
        )
        if claims is None or not authenticated or self.refuse_refresh:
            return web.json_response({"error": "invalid_grant"}, status=400)
        answer = {
            "access_token": self._access_token(str(claims.get("sub", ""))),
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        if self.rotate_refresh:
            rotated = secrets.token_urlsafe(24)
            self.refresh_tokens[rotated] = claims
            answer["refresh_token"] = rotated
        else:
            self.refresh_tokens[token] = claims
        return web.json_response(answer)

    async def _revoke(self, request: web.Request) -> web.Response:
        form = self._client_form(request, dict(await request.post()))
        if form.get("client_secret") != self.client_secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = str(form.get("token", ""))
        self.revoked.append(token)
        self.refresh_tokens.pop(token, None)
        return web.Response(status=200)

    async def _discovery(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "revocation_endpoint": f"{self.issuer}/revoke",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    def _hostile(self, claims: dict[str, Any]) -> str:
        """SECURITY-CHECKLIST item 133 in an ID token: validly signed, hostile JSON."""
        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
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
        app.router.add_post("/revoke", self._revoke)
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()


def _segment(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
