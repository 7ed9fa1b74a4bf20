"""A third-party web application that uses the gateway for single sign-on, the way a team chat or
a CRM portal does: its own origin, its own back end, authlib as its OAuth client.

``/login`` sends the browser to the gateway's authorization endpoint (code flow, PKCE S256, a
fresh ``state`` and ``nonce``); ``/cb`` checks the state, redeems the code from the back end,
verifies the ID token (against the gateway's JWKS, or with the client secret for an HS256
client, as the reference's own apps are configured) and shows who signed in; ``/logout`` starts
RP-initiated logout with ``id_token_hint``; ``/bye`` is its post-logout page; ``/backchannel``
is its ``backchannel_logout_uri`` (OpenID Connect Back-Channel Logout 1.0): it verifies each
logout token exactly as the spec's section 2.6 says, with pyjwt against the gateway's JWKS
fetched over HTTP (never with the gateway's own code), and answers 200, or 400 to a bad token.
"""

from __future__ import annotations

import asyncio
import secrets
import warnings
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # authlib announces a rename of its httpx module on import
    from authlib.integrations.httpx_client import AsyncOAuth2Client

TIMEOUT = httpx.Timeout(20.0)
# Back-Channel Logout 1.0 section 2.4: the member of the events claim.
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# Section 2.6 leaves the clock skew to the RP; 5 minutes as pyjwt users commonly allow.
LEEWAY = 300


class LogoutTokenRefused(Exception):  # noqa: N818 - reads as "raise LogoutTokenRefused(why)"
    """Section 2.6: the logout token fails a check; the RP answers 400."""


@dataclass
class SignedIn:
    """One completed sign-in as the application saw it."""

    state: str
    claims: dict[str, Any]
    tokens: dict[str, Any]


@dataclass
class RelyingParty:
    gateway: str  # the gateway's issuer, e.g. http://localhost:PORT
    client_id: str
    client_secret: str | None
    scope: str = "openid profile email"
    algorithm: str = "RS256"  # of the ID tokens; HS256 is verified with the client secret
    server: TestServer | None = None
    pending: dict[str, tuple[str, str]] = field(default_factory=dict)  # state -> verifier, nonce
    sign_ins: list[SignedIn] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    goodbyes: list[dict[str, str]] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)  # authorization URLs the browser was sent to
    initiated: list[dict[str, str]] = field(default_factory=list)  # /login queries
    # Back-channel logout: the verified logout tokens' claims (and their headers), the refused
    # ones' reasons, the statuses to answer next instead of 200 (to play a failing app), and
    # every request's headers and content type.
    logouts: list[dict[str, Any]] = field(default_factory=list)
    logout_headers: list[dict[str, Any]] = field(default_factory=list)
    refused_logouts: list[str] = field(default_factory=list)
    logout_answers: list[int] = field(default_factory=list)
    logout_requests: list[dict[str, str]] = field(default_factory=list)

    @property
    def origin(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    @property
    def redirect_uri(self) -> str:
        return f"{self.origin}/cb"

    @property
    def post_logout_uri(self) -> str:
        return f"{self.origin}/bye"

    @property
    def backchannel_logout_uri(self) -> str:
        return f"{self.origin}/backchannel"

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_endpoint_auth_method="client_secret_basic" if self.client_secret else "none",
            scope=self.scope,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            timeout=TIMEOUT,
        )

    async def _login(self, request: web.Request) -> web.Response:
        """Also the app's ``initiate_login_uri`` (OpenID Connect Core 4): a sign-in someone
        else started names the provider in ``iss``, which must be the one this app trusts."""
        if "iss" in request.query and request.query["iss"] != self.gateway:
            return _page("Refused", '<p id="error">unknown issuer</p>', 400)
        self.initiated.append(dict(request.query))
        verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
        extra = {k: v for k, v in request.query.items() if k in ("prompt", "login_hint")}
        async with self._client() as client:
            url, state = client.create_authorization_url(
                f"{self.gateway}/oauth2/authorize", code_verifier=verifier, nonce=nonce, **extra
            )
        self.pending[state] = (verifier, nonce)
        self.sent.append(url)
        raise web.HTTPFound(url)

    async def _callback(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        state = query.get("state", "")
        if state not in self.pending:
            return _page("Refused", '<p id="error">unknown state</p>', 400)
        verifier, nonce = self.pending.pop(state)
        if "error" in query:
            self.errors.append(query)
            return _page("Not signed in", f'<p id="error">{escape(query["error"])}</p>')
        async with self._client() as client:
            tokens = await client.fetch_token(
                f"{self.gateway}/oauth2/token",
                authorization_response=str(request.url),
                code_verifier=verifier,
            )
        claims = await self.verify_id_token(tokens["id_token"])
        if claims.get("nonce") != nonce:
            return _page("Refused", '<p id="error">wrong nonce</p>', 400)
        self.sign_ins.append(SignedIn(state, claims, dict(tokens)))
        name = escape(str(claims.get("preferred_username") or claims["sub"]))
        organizations = escape(" ".join(claims.get("organization", [])))
        return _page(
            "Signed in",
            f'<p>Signed in as <span id="user">{name}</span></p>'
            f'<p>Organisations: <span id="organizations">{organizations}</span></p>',
        )

    async def verify_id_token(self, token: str) -> dict[str, Any]:
        """The ID token verified as a careful relying party does: signature, iss, aud, exp."""
        if self.algorithm == "HS256":
            assert self.client_secret is not None
            key: Any = self.client_secret
        else:
            jwks = jwt.PyJWKClient(f"{self.gateway}/oauth2/jwks", cache_keys=False)
            key = (await asyncio.to_thread(jwks.get_signing_key_from_jwt, token)).key
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[self.algorithm],
            audience=self.client_id,
            issuer=self.gateway,
            options={"require": ["exp", "iat", "sub"]},
        )
        return claims

    async def verify_logout_token(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Back-Channel Logout 1.0 section 2.6, step by step; (header, claims)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise LogoutTokenRefused(f"not a JWT: {exc}") from None
        # Section 2.4 (errata 1): typ logout+jwt, so that no other JWT passes for one.
        if header.get("typ") != "logout+jwt":
            raise LogoutTokenRefused(f"typ is {header.get('typ')!r}")
        # Step 2: signature, iss, aud, iat and exp as for an ID token (Core 3.1.3.7).
        if self.algorithm == "HS256":
            assert self.client_secret is not None
            key: Any = self.client_secret
        else:
            jwks = jwt.PyJWKClient(f"{self.gateway}/oauth2/jwks", cache_keys=False)
            try:
                key = (await asyncio.to_thread(jwks.get_signing_key_from_jwt, token)).key
            except jwt.PyJWTError as exc:
                raise LogoutTokenRefused(f"no key: {exc}") from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self.client_id,
                issuer=self.gateway,
                leeway=LEEWAY,
                options={"require": ["iss", "aud", "iat", "exp", "jti", "events"]},
            )
        except jwt.PyJWTError as exc:
            raise LogoutTokenRefused(f"invalid: {exc}") from None
        # Step 3: sub, sid or both.
        if not isinstance(claims.get("sub"), str) and not isinstance(claims.get("sid"), str):
            raise LogoutTokenRefused("neither sub nor sid")
        # Step 4: the events claim with the back-channel logout member, a JSON object.
        events = claims["events"]
        if not isinstance(events, dict) or not isinstance(
            events.get(BACKCHANNEL_LOGOUT_EVENT), dict
        ):
            raise LogoutTokenRefused("no back-channel logout event")
        # Step 5: no nonce.
        if "nonce" in claims:
            raise LogoutTokenRefused("a nonce")
        # Step 6 (optional): a jti seen before is a replay.
        if any(seen["jti"] == claims["jti"] for seen in self.logouts):
            raise LogoutTokenRefused("jti seen before")
        return header, claims

    async def _backchannel(self, request: web.Request) -> web.Response:
        self.logout_requests.append(
            {
                "content_type": request.content_type,
                "cache_control": request.headers.get("Cache-Control", ""),
            }
        )
        form = await request.post()
        token = form.get("logout_token")
        try:
            if not isinstance(token, str):
                raise LogoutTokenRefused("no logout_token")
            header, claims = await self.verify_logout_token(token)
        except LogoutTokenRefused as refused:
            self.refused_logouts.append(str(refused))
            return web.json_response({"error": "invalid_request"}, status=400)
        if self.logout_answers:  # playing an application that fails
            return web.Response(status=self.logout_answers.pop(0))
        self.logouts.append(claims)
        self.logout_headers.append(header)
        return web.Response(status=200, headers={"Cache-Control": "no-store"})

    async def _logout(self, request: web.Request) -> web.Response:
        hint = self.sign_ins[-1].tokens["id_token"]
        query = httpx.QueryParams(
            id_token_hint=hint, post_logout_redirect_uri=self.post_logout_uri, state="bye-state"
        )
        raise web.HTTPFound(f"{self.gateway}/oauth2/logout?{query}")

    async def _bye(self, request: web.Request) -> web.Response:
        self.goodbyes.append(dict(request.query))
        return _page("Signed out", '<p id="bye">You left the application.</p>')

    async def start(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        app = web.Application()
        app.router.add_post("/backchannel", self._backchannel)
        app.router.add_get("/login", self._login)
        app.router.add_get("/cb", self._callback)
        app.router.add_get("/logout", self._logout)
        app.router.add_get("/bye", self._bye)
        self.server = TestServer(app, host=host, port=port)
        await self.server.start_server()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=f"<!doctype html><title>{title}</title>{body}",
        status=status,
        content_type="text/html",
    )


# --- what a person does on the gateway's pages -------------------------------------------------


async def sign_in_on_the_login_page(page: Any, username: str, password: str) -> None:
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("form[action='/oauth2/login'] button[type=submit]")
    await page.wait_for_load_state()


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
