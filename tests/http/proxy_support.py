"""Shared harness for the token-handler (reverse proxy) tests: a recording upstream, the real
gateway on a free port with a configuration of its own, and browser-like clients.

Everything is real HTTP on 127.0.0.1 against a real PostgreSQL. The upstream records every request
it receives (method, raw path and query, raw header lines, body) so a test can check what reached
it, and that nothing did.

Upstream behaviours are chosen by the last path segment of the request:

* ``slow``: sleeps ``?sleep=`` seconds (default 3, at most 10) before answering;
* ``always401``: answers 401 with a Bearer challenge;
* ``download``: streams ``?n=`` deterministic bytes (at most 64 MiB);
* ``evil-headers``: answers with reserved cookies, CORS, hop-by-hop and version headers;
* ``ws``: a WebSocket echo endpoint;
* anything else: 200 JSON naming the method and path, the body's SHA-256 in a header.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import CookieJar, DummyCookieJar, WSMsgType, web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from yarl import URL

from gateway.app import create_app
from gateway.clock import Clock
from gateway.config import ConfigHolder, load_config
from gateway.keys import CLOCK
from gateway.store.users import user_add
from tests.http.conftest import CLIENTS, ISSUER, RELAXED_LIMITS
from tests.support import USERS, GatewayTestServer, free_port, light_passwords, write_conf

APP = "https://app.example.test"
EVIL = "https://evil.example"
PARTNER = "https://partner.example.test"
SPA_SCOPE = "openid profile email offline_access orders.read"
AT, RT, SID = "__Secure-AT", "__Secure-RT", "SID"
SESSION_COOKIES = (AT, RT, SID)
CHALLENGE_PREFIX = "Bearer"
BROWSER = {"Origin": APP, "Sec-Fetch-Site": "same-site"}

# Public clients a SPA signs in with (DESIGN.md section 7): ``spa`` keeps every token in cookies;
# ``spab`` also returns them in the body, so tests can learn raw token values.
SPA_CLIENT: dict[str, Any] = {
    "client_id": "spa",
    "javascript_origins": [APP],
    "redirect_uris": [f"{APP}/cb"],
    "scopes": SPA_SCOPE.split(),
    "grant_types": ["authorization_code", "refresh_token", "password"],
    "token_delivery": "cookies",
}
PROXY_CLIENTS: dict[str, Any] = {
    **CLIENTS,
    "spa": SPA_CLIENT,
    "spab": {**SPA_CLIENT, "client_id": "spab", "token_delivery": "body+cookies"},
}
TOKENS: dict[str, Any] = {
    "access_ttl": 3600,
    "service_access_ttl": 86400,
    "refresh_ttl": 5184000,
    "code_ttl": 60,
    "refresh_grace": 1,
    "signing_alg": "RS256",
}
MAX_SLEEP = 10.0
MAX_DOWNLOAD = 64 * 1048576
PATTERN = bytes(range(256)) * 256  # 64 KiB


def download_bytes(n: int) -> bytes:
    """What the upstream's ``download`` endpoint sends for ``?n=``."""
    whole, rest = divmod(n, len(PATTERN))
    return PATTERN * whole + PATTERN[:rest]


# --- the upstream -------------------------------------------------------------------------------


@dataclass
class Recorded:
    """One request as the upstream received it."""

    method: str
    path_qs: str
    raw_headers: list[tuple[str, str]]
    body: bytes = b""
    complete: bool = False

    def values(self, name: str) -> list[str]:
        lowered = name.lower()
        return [v for k, v in self.raw_headers if k.lower() == lowered]

    def header(self, name: str) -> str | None:
        values = self.values(name)
        assert len(values) <= 1, f"{name} arrived {len(values)} times: {values}"
        return values[0] if values else None

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.raw_headers}

    @property
    def bearer(self) -> str | None:
        value = self.header("Authorization")
        if value is None:
            return None
        assert value.startswith("Bearer "), value
        return value[len("Bearer ") :]


class Upstream:
    """A recording HTTP and WebSocket server on a free 127.0.0.1 port."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.refused_first: dict[str, str] = {}
        self.ws_messages: list[str] = []
        self.ws_closed: list[int | None] = []
        self.app = web.Application(client_max_size=MAX_DOWNLOAD)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(self.app, host="127.0.0.1")

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def start(self) -> None:
        await self.server.start_server()

    async def close(self) -> None:
        await self.server.close()

    def clear(self) -> None:
        self.requests.clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = Recorded(
            request.method,
            request.raw_path,
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
        )
        self.requests.append(record)
        last = request.path.rstrip("/").rsplit("/", 1)[-1]
        if last == "ws" and request.headers.get("Upgrade", "").lower() == "websocket":
            record.complete = True
            return await self._websocket(request)
        digest = hashlib.sha256()
        length = 0
        async for chunk in request.content.iter_chunked(65536):
            digest.update(chunk)
            length += len(chunk)
            if length <= 8 * 1048576:
                record.body += chunk
        record.complete = True
        headers = {"X-Body-Sha256": digest.hexdigest(), "X-Body-Length": str(length)}
        if last == "slow":
            await asyncio.sleep(min(float(request.query.get("sleep", "3")), MAX_SLEEP))
        if last == "refuse-first":
            # Refuses the first token it sees (as if it had been revoked there), takes others.
            first = self.refused_first.setdefault(request.path, record.bearer or "")
            if record.bearer == first:
                return web.json_response(
                    {"error": "invalid_token"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"', **headers},
                )
        if last == "always401":
            return web.json_response(
                {"error": "invalid_token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"', **headers},
            )
        if last == "download":
            return await self._download(request, min(int(request.query["n"]), MAX_DOWNLOAD))
        if last == "evil-headers":
            response = web.json_response({"evil": True}, headers=headers)
            response.headers.add("Set-Cookie", "__Secure-AT=evil; Secure; Path=/")
            response.headers.add("Set-Cookie", "__Secure-RT=evil; Secure; Path=/")
            response.headers.add("Set-Cookie", "SID=evil")
            response.headers.add("Set-Cookie", "__Host-GW-CSRF=evil; Path=/")
            response.headers.add("Set-Cookie", "app_pref=dark; Path=/")
            response.headers["Access-Control-Allow-Origin"] = "*"
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Allow-Methods"] = "*"
            response.headers["Connection"] = "X-Internal"
            response.headers["X-Internal"] = "secret"
            response.headers["Keep-Alive"] = "timeout=99"
            response.headers["Server"] = "internal/1.2.3"
            response.headers["X-Powered-By"] = "internal-framework/4.5"
            return response
        return web.json_response(
            {"method": request.method, "path": request.raw_path}, headers=headers
        )

    async def _download(self, request: web.Request, n: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        data = download_bytes(n)
        for offset in range(0, n, 65536):
            await response.write(data[offset : offset + 65536])
        await response.write_eof()
        return response

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=("chat",))
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                self.ws_messages.append(message.data)
                await ws.send_str("echo:" + message.data)
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        self.ws_closed.append(ws.close_code)
        return ws


# --- configuration ------------------------------------------------------------------------------


def route(prefix: str, upstream: str, **options: Any) -> dict[str, Any]:
    return {"prefix": prefix, "upstream": upstream, **options}


def default_routes(upstream: str) -> list[dict[str, Any]]:
    """The routes most tests use; ``upstream`` is the recording server's root URL."""
    base = f"{upstream}/v1"
    closed = f"http://127.0.0.1:{free_port()}/v1"
    return [
        route("/api/orders/", base),
        route("/api/csrf/", base, csrf_header="X-CSRF-Token"),
        route("/api/ro/", base, methods=["GET", "HEAD"]),
        route("/api/strip/", base, strip_prefix=True),
        route("/api/slow/", base, timeout=1),
        route("/api/small/", base, max_body=1000),
        route("/api/down/", closed, timeout=2),
        route("/api/partner/", base, origins=[PARTNER]),
        route(
            "/legacy/",
            base,
            identity_headers={
                "X-User-Id": "sub",
                "X-User-Name": "preferred_username",
                "X-Scopes": "scope",
            },
        ),
        route("/public/", base, auth="none"),
        route("/opt/", base, auth="optional"),
        route("/ws/", base, websocket=True),
    ]


def write_proxy_conf(
    directory: Path,
    routes: Sequence[Mapping[str, Any]],
    *,
    tokens: Mapping[str, Any] | None = None,
    clients: Mapping[str, Any] | None = None,
    **gateway: Any,
) -> Path:
    settings: dict[str, Any] = {
        "issuer": ISSUER,
        "limits": RELAXED_LIMITS,
        "tokens": {**TOKENS, **(tokens or {})},
        "database": {"pool_min": 1, "pool_max": 20, "connect_timeout": 2, "command_timeout": 5},
        "routes": list(routes),
    }
    settings.update(gateway)
    return write_conf(directory, gateway=settings, clients=clients or PROXY_CLIENTS)


async def add_users(database_url: str) -> dict[str, str]:
    """alice and bob in the database at ``database_url`` (idempotent): name -> user id."""
    conn = await asyncpg.connect(database_url)
    passwords = light_passwords()
    ids: dict[str, str] = {}
    try:
        for name in ("alice", "bob"):
            password, email, display = USERS[name]
            existing = await conn.fetchval("SELECT id FROM auth.users WHERE username = $1", name)
            ids[name] = str(
                existing or await user_add(conn, name, passwords.hash(password), email, display)
            )
    finally:
        await conn.close()
    return ids


# --- the gateway and its clients ----------------------------------------------------------------


@dataclass
class SignIn:
    """What a SPA's sign-in through ``POST /oauth2/token`` gave: status, body and cookies."""

    status: int
    headers: CIMultiDict[str]
    text: str
    set_cookies: list[str]
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def body(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.text)
        return result

    def cookie_header(
        self, names: Sequence[str] = SESSION_COOKIES, changes: Mapping[str, str] | None = None
    ) -> str:
        """A ``Cookie`` header with the named session cookies, some values replaced."""
        values = {n: self.cookies[n] for n in names}
        values.update(changes or {})
        return cookie_header(values)


def cookie_header(values: Mapping[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in values.items())


def parse_set_cookies(lines: Sequence[str]) -> dict[str, SimpleCookie]:
    """Each ``Set-Cookie`` line parsed on its own: cookie name -> the parsed line."""
    parsed: dict[str, SimpleCookie] = {}
    for line in lines:
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(line)
        for name in cookie:
            parsed[name] = cookie
    return parsed


def cleared(lines: Sequence[str]) -> set[str]:
    """Names of cookies that the ``Set-Cookie`` lines delete (empty value, Max-Age=0)."""
    names = set()
    for name, cookie in parse_set_cookies(lines).items():
        morsel = cookie[name]
        if morsel.value in ("", '""') and morsel["max-age"] in ("0", 0):
            names.add(name)
    return names


def renewed(lines: Sequence[str]) -> dict[str, str]:
    """Cookies that the ``Set-Cookie`` lines set to a non-empty value: name -> value."""
    result = {}
    for name, cookie in parse_set_cookies(lines).items():
        value = cookie[name].value
        if value not in ("", '""'):
            result[name] = value
    return result


class Gateway:
    """The real gateway application on a free port, plus the recording upstream."""

    def __init__(self, server: TestServer, upstream: Upstream, database_url: str) -> None:
        self.server = server
        self.upstream = upstream
        self.database_url = database_url
        self._sessions: list[aiohttp.ClientSession] = []

    @property
    def root(self) -> str:
        return str(self.server.make_url("/"))

    @property
    def clock(self) -> Clock:
        """The gateway's clock (``advance`` instead of sleeping for an expiry)."""
        assert self.server.app is not None
        return self.server.app[CLOCK]

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def browser(self) -> aiohttp.ClientSession:
        """A client with a browser-like cookie jar (Secure cookies sent to this http origin)."""
        jar = CookieJar(unsafe=True, treat_as_secure_origin=[self.root])
        session = aiohttp.ClientSession(cookie_jar=jar)
        self._sessions.append(session)
        return session

    def bare(self) -> aiohttp.ClientSession:
        """A client without a cookie jar: cookies only as explicit ``Cookie`` headers."""
        session = aiohttp.ClientSession(cookie_jar=DummyCookieJar())
        self._sessions.append(session)
        return session

    async def sign_in(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        username: str = "alice",
        client_id: str = "spa",
        expect: int | None = 200,
    ) -> SignIn:
        """A SPA's password sign-in through ``POST /oauth2/token`` (DESIGN.md section 7);
        ``expect=None`` returns whatever the answer was."""
        session = session or self.bare()
        async with session.post(
            self.url("/oauth2/token"),
            data={
                "grant_type": "password",
                "client_id": client_id,
                "username": username,
                "password": USERS[username][0],
                "scope": SPA_SCOPE,
            },
            headers={"Origin": APP},
        ) as resp:
            text = await resp.text()
            lines = resp.headers.getall("Set-Cookie", [])
            result = SignIn(resp.status, CIMultiDict(resp.headers), text, list(lines))
        if expect is None:
            return result
        assert result.status == expect, text
        result.cookies = renewed(lines)
        assert set(SESSION_COOKIES) <= set(result.cookies), lines
        return result

    async def close(self) -> None:
        for session in self._sessions:
            await session.close()
        await self.server.close()


@contextlib.asynccontextmanager
async def running_gateway(
    directory: Path,
    database_url: str,
    *,
    routes: Sequence[Mapping[str, Any]] | None = None,
    tokens: Mapping[str, Any] | None = None,
    clients: Mapping[str, Any] | None = None,
    **gateway: Any,
) -> AsyncIterator[Gateway]:
    """Start the recording upstream and the gateway (configured with ``default_routes`` unless
    ``routes`` is given; ``{upstream}`` in an upstream URL is the recording server's root)."""
    upstream = Upstream()
    await upstream.start()
    try:
        chosen = [
            {**r, "upstream": str(r["upstream"]).replace("{upstream}", upstream.root)}
            for r in (routes if routes is not None else default_routes(upstream.root))
        ]
        conf = write_proxy_conf(directory, chosen, tokens=tokens, clients=clients, **gateway)
        holder = ConfigHolder(load_config(conf, environ={}))
        server = GatewayTestServer(create_app(holder, database_url=database_url), host="127.0.0.1")
        await server.start_server()
        gw = Gateway(server, upstream, database_url)
        try:
            await wait_listening(gw)
            yield gw
        finally:
            await gw.close()
    finally:
        await upstream.close()


async def wait_listening(gw: Gateway, timeout: float = 10.0) -> None:
    """Wait until the revocation listener has loaded (so a logout is seen at once)."""
    from gateway.proxy.exchange import PROXY

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gw.server.app is not None and gw.server.app[PROXY].revocations.listening:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the revocation listener did not start")


async def poll(condition: Any, *, timeout: float, interval: float = 0.1) -> Any:
    """Await ``condition()`` until it returns something truthy (bounded in time); that value."""
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(int(timeout / interval) + 2):
        last = await condition()
        if last or time.monotonic() >= deadline:
            break
        await asyncio.sleep(interval)
    return last


async def raw_http(port: int, request: bytes, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send raw bytes to 127.0.0.1:``port``; (status, whole response as read until close or
    timeout). The request should carry ``Connection: close``."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(request)
        await writer.drain()
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < 1048576:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(65536), remaining)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    status_line = data.split(b"\r\n", 1)[0]
    parts = status_line.split(b" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, data


async def family_rows(database_url: str, session_id: str) -> list[asyncpg.Record]:
    """The refresh tokens of every family of the session: generation, superseded, and the
    family's delivered generation."""
    conn = await asyncpg.connect(database_url)
    try:
        return list(
            await conn.fetch(
                "SELECT r.family_id, r.generation, r.superseded_at, f.delivered_generation "
                "FROM auth.refresh_token r "
                "JOIN auth.token_family f ON f.id = r.family_id "
                "WHERE f.session_id = $1::uuid ORDER BY r.generation",
                session_id,
            )
        )
    finally:
        await conn.close()


def json_of(text: str) -> dict[str, Any]:
    value = json.loads(text)
    assert isinstance(value, dict), text
    return value


@dataclass
class Answer:
    """A response as the client saw it."""

    status: int
    headers: CIMultiDict[str]
    body: bytes
    set_cookies: list[str]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> dict[str, Any]:
        return json_of(self.text)


async def send(
    gw: Gateway,
    path: str,
    *,
    method: str = "GET",
    cookies: str | None = None,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    data: Any = None,
    session: aiohttp.ClientSession | None = None,
    browser: bool = True,
) -> Answer:
    """One request to the gateway (raw path and query as given); ``browser`` adds the checklist's
    browser-like ``Origin`` and ``Sec-Fetch-Site`` unless ``headers`` names them."""
    all_headers: CIMultiDict[str] = CIMultiDict(BROWSER if browser else {})
    given: CIMultiDict[str] = CIMultiDict(headers or {})
    for name in set(given.keys()):
        all_headers.popall(name, None)
    all_headers.extend(given)
    if cookies is not None:
        all_headers["Cookie"] = cookies
    session = session or gw.bare()
    url = URL(gw.url(path), encoded=True)
    async with session.request(
        method, url, headers=all_headers, data=data, allow_redirects=False
    ) as resp:
        body = await resp.read()
        return Answer(
            resp.status, CIMultiDict(resp.headers), body, resp.headers.getall("Set-Cookie", [])
        )


def assert_th401(answer: Answer, upstream: Upstream | None = None) -> None:
    """SECURITY-CHECKLIST 0.4 ``TH401``: 401, JSON, a ``WWW-Authenticate`` challenge (item 91),
    and (when ``upstream`` is given) nothing reached the upstream."""
    assert answer.status == 401, (answer.status, answer.text)
    assert answer.headers.get("Content-Type", "").startswith("application/json"), answer.headers
    answer.json()
    challenge = answer.headers.get("WWW-Authenticate", "")
    assert challenge.startswith(CHALLENGE_PREFIX), answer.headers
    if upstream is not None:
        assert upstream.requests == [], [r.path_qs for r in upstream.requests]


def bearer_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT the upstream received (signature not checked: the test only reads)."""
    import jwt

    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims
