"""The authorization endpoint and its login/consent forms, black-box over HTTP.

SECURITY-CHECKLIST items 1-16 (authorization endpoint), 55 and 59-61(a) (PKCE at /authorize) and
62-67 (redirect URI validation, open redirects, injection). Item 68 is covered by the config tests.

Product decisions these tests hold the gateway to: PAGE400 is an HTML page with status 400 and no
``Location``; redirect errors are 302 from GET and 303 after a form POST; every redirect to the
client carries ``iss``; implicit/hybrid only for clients with the ``implicit`` grant (``imp``);
PKCE is S256 only and required for public clients.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import string
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import asyncpg
import jwt
import pytest
from aiohttp import CookieJar
from bs4 import BeautifulSoup
from yarl import URL

from tests.http.checklist import serving
from tests.http.conftest import (
    CLIENTS,
    ISSUER,
    RELAXED_LIMITS,
    C,
    V,
    authz_params,
    basic,
    location_params,
    sign_in,
)
from tests.support import USERS, Client, named_input, write_conf

RP_CB = "https://rp.example.test/cb"
APP_CB = "https://app.example.test/cb"
IMP_CB = "https://imp.example.test/cb"
CONS_CB = "https://cons.example.test/cb"
EVIL = "https://evil.example"
CLIENT_HOSTS = (
    "rp.example.test",
    "rp2.example.test",
    "app.example.test",
    "imp.example.test",
    "cons.example.test",
    "chat.example.test",
    "evil.example",
)


# --- helpers ----------------------------------------------------------------------------------


async def authorize(
    client: Client,
    params: Mapping[str, str] | Sequence[tuple[str, str]],
    headers: Mapping[str, str] | None = None,
) -> aiohttp.ClientResponse:
    """``GET /oauth2/authorize`` without following redirects."""
    return await client.get(
        "/oauth2/authorize", params=params, headers=headers, allow_redirects=False
    )


async def authorize_raw(client: Client, pairs: Sequence[tuple[str, str]]) -> aiohttp.ClientResponse:
    """``GET /oauth2/authorize`` with every value percent-encoded byte for byte as given (``+`` as
    ``%2B``, ``/`` as ``%2F``, ``=`` as ``%3D``), bypassing the client library's re-encoding."""
    query = urlencode(pairs, quote_via=quote, safe="")
    url = URL(f"{client.make_url('/oauth2/authorize')}?{query}", encoded=True)
    return await client.session.get(url, allow_redirects=False)


def _target(location: str) -> str:
    parts = urlsplit(location)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def redirect_query(
    response: aiohttp.ClientResponse, redirect_uri: str, statuses: tuple[int, ...] = (302,)
) -> dict[str, str]:
    """``RQ(...)``: a redirect to the registered URI with parameters in the query only."""
    assert response.status in statuses, (response.status, dict(response.headers))
    location = response.headers["Location"]
    assert _target(location) == redirect_uri, location
    query, fragment = location_params(location)
    assert not fragment, location
    assert "#" not in location, location
    return query


def redirect_fragment(
    response: aiohttp.ClientResponse, redirect_uri: str, statuses: tuple[int, ...] = (302,)
) -> dict[str, str]:
    """``RF(...)``: a redirect to the registered URI with parameters in the fragment only."""
    assert response.status in statuses, (response.status, dict(response.headers))
    location = response.headers["Location"]
    assert _target(location) == redirect_uri, location
    assert urlsplit(location).query == "", f"parameters leaked into the query: {location}"
    return location_params(location)[1]


async def minted(db: asyncpg.Connection) -> tuple[int, int]:
    """How many codes and token families exist: a PAGE400 must not change either."""
    codes = await db.fetchval("SELECT count(*) FROM auth.code")
    families = await db.fetchval("SELECT count(*) FROM auth.token_family")
    return int(codes), int(families)


def assert_no_navigation(html: str) -> None:
    """No meta refresh, script or form, and no link to a client or attacker host."""
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find("meta", attrs={"http-equiv": re.compile("^refresh$", re.I)}) is None
    assert soup.find("script") is None
    assert soup.find("form") is None
    for tag in soup.find_all(True):
        for attr in ("href", "src", "action", "formaction", "content", "data"):
            value = str(tag.get(attr) or "").lower()
            assert "javascript:" not in value, (tag.name, attr, value)
            assert not any(host in value for host in CLIENT_HOSTS), (tag.name, attr, value)


async def assert_page400(
    response: aiohttp.ClientResponse, db: asyncpg.Connection, before: tuple[int, int]
) -> str:
    """``PAGE400`` (product decision: an HTML page): 400, no Location, nothing minted."""
    body = await response.text()
    assert response.status == 400, (response.status, dict(response.headers), body[:300])
    assert "Location" not in response.headers
    assert "Refresh" not in response.headers
    assert response.content_type == "text/html", (response.content_type, body[:300])
    assert_no_navigation(body)
    assert await minted(db) == before
    return body


def page_form(html: str) -> tuple[str, str, dict[str, str]]:
    """(method, action, hidden fields) of the page's only form."""
    soup = BeautifulSoup(html, "html.parser")
    forms = soup.find_all("form")
    assert len(forms) == 1, html[:500]
    form = forms[0]
    hidden = {
        str(i["name"]): str(i.get("value", ""))
        for i in form.find_all("input", attrs={"type": "hidden"})
    }
    return str(form.get("method", "")).lower(), str(form.get("action", "")), hidden


async def login_page(client: Client, params: Mapping[str, str]) -> dict[str, str]:
    """Open the login page of an authorization request; its hidden fields."""
    page = await authorize(client, params)
    html = await page.text()
    assert page.status == 200, html[:300]
    method, action, hidden = page_form(html)
    assert (method, action) == ("post", "/oauth2/login")
    assert hidden.get("flow")
    return hidden


async def password_login(
    client: Client, hidden: Mapping[str, str], username: str = "alice", **kwargs: Any
) -> aiohttp.ClientResponse:
    return await client.post(
        "/oauth2/login",
        data={**hidden, "username": username, "password": USERS[username][0]},
        allow_redirects=False,
        **kwargs,
    )


async def signed_in(client: Client, username: str = "alice") -> None:
    """Give the browser an SSO session through the login form."""
    login = await sign_in(client, authz_params("conf", prompt="login"), username)
    assert login.status == 303, await login.text()


@contextlib.asynccontextmanager
async def other_browser(client: Client) -> AsyncIterator[aiohttp.ClientSession]:
    """A second browser (its own cookie jar) talking to the same server."""
    base = str(client.make_url("/"))
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[base])
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        yield session


@contextlib.asynccontextmanager
async def gateway(
    directory: Path, database_url: str, clients: Mapping[str, Any]
) -> AsyncIterator[Client]:
    """The gateway with its own client registrations (same issuer and limits as as_client)."""
    path = write_conf(
        directory, gateway={"issuer": ISSUER, "limits": RELAXED_LIMITS}, clients=clients
    )
    async with serving(path, database_url) as client:
        yield client


def half_hash(value: str) -> str:
    """OIDC Core 3.3.2.11: base64url of the left 128 bits of SHA-256, for RS256."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


async def verified_id_token(client: Client, token: str, audience: str) -> dict[str, Any]:
    """The ID token's claims after checking its signature against the server's JWKS."""
    jwks = jwt.PyJWKClient(str(client.make_url("/oauth2/jwks")))
    key = await asyncio.to_thread(jwks.get_signing_key_from_jwt, token)
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["RS256"], audience=audience, issuer=ISSUER
    )
    return claims


@pytest.fixture
async def alice(as_client: Client) -> Client:
    """A browser signed in as alice."""
    await signed_in(as_client)
    return as_client


@pytest.fixture
async def no_cons_consent(db: asyncpg.Connection) -> None:
    """Nobody has consented to client ``cons`` yet (the module shares one database)."""
    await db.execute("DELETE FROM auth.consent WHERE client_id = 'cons'")


# --- item 1: GET and POST, success encoding -----------------------------------------------------


async def test_get_authorize_redirects_code_state_and_iss_in_query(alice: Client) -> None:
    """Item 1: AUTHZ(conf) as GET gives RQ(code, state) with iss; nothing in the fragment."""
    response = await authorize(alice, authz_params("conf", state="s1"))
    query = redirect_query(response, RP_CB)
    assert query["state"] == "s1"
    assert query["iss"] == ISSUER
    assert set(query) == {"code", "state", "iss"}
    assert "iss=https%3A%2F%2Fas.example.test" in response.headers["Location"]


async def test_post_authorize_is_accepted_like_get(alice: Client) -> None:
    """Item 1: the same request as a form POST to /oauth2/authorize gives RQ(code, state, iss)."""
    response = await alice.post(
        "/oauth2/authorize",
        data={
            "response_type": "code",
            "client_id": "conf",
            "redirect_uri": RP_CB,
            "scope": "openid",
            "state": "s1",
            "nonce": "n1",
            "code_challenge": C,
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
    )
    query = redirect_query(response, RP_CB, statuses=(302, 303))
    assert query["state"] == "s1"
    assert query["iss"] == ISSUER
    token = await alice.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": RP_CB,
            "code_verifier": V,
        },
        headers=basic("conf", "s3cr3t"),
    )
    assert token.status == 200, await token.text()


async def test_codes_are_long_random_and_unique(alice: Client) -> None:
    """Item 1 (RFC 6749 10.10): codes carry >= 128 bits: 22+ base64url characters, never
    repeated across 20 authorizations."""
    codes = []
    for _ in range(20):
        response = await authorize(alice, authz_params("conf"))
        codes.append(redirect_query(response, RP_CB)["code"])
    alphabet = set(string.ascii_letters + string.digits + "-_")
    for code in codes:
        assert len(code) >= 22, code
        assert set(code) <= alphabet, code
    assert len(set(codes)) == len(codes)


async def test_metadata_advertises_iss_parameter(as_client: Client) -> None:
    """Item 1 (SHOULD): authorization_response_iss_parameter_supported is true."""
    response = await as_client.get("/.well-known/openid-configuration")
    assert (await response.json())["authorization_response_iss_parameter_supported"] is True


# --- item 2: response_type missing or unsupported ----------------------------------------------


async def test_missing_response_type(alice: Client, db: asyncpg.Connection) -> None:
    """Item 2(a): no response_type -> RQ(error=invalid_request, state): the client and its
    redirect URI are valid, so the error goes back to the client; nothing is minted."""
    before = await minted(db)
    response = await authorize(
        alice, {"client_id": "conf", "redirect_uri": RP_CB, "scope": "openid", "state": "s2"}
    )
    query = redirect_query(response, RP_CB)
    assert query["error"] == "invalid_request"
    assert query["state"] == "s2"
    assert await minted(db) == before
    assert "code" not in query
    assert await minted(db) == before


async def test_unsupported_response_type_error_in_query(alice: Client) -> None:
    """Item 2(b): response_type=foo -> RQ(error=unsupported_response_type&state=s2), in the
    query (an unknown response type has no fragment default)."""
    response = await authorize(
        alice,
        {
            "response_type": "foo",
            "client_id": "conf",
            "redirect_uri": RP_CB,
            "scope": "openid",
            "state": "s2",
        },
    )
    query = redirect_query(response, RP_CB)
    assert query["error"] == "unsupported_response_type"
    assert query["state"] == "s2"


# --- item 3: missing or unknown client_id ----------------------------------------------------


@pytest.mark.parametrize("client_id", [None, "nope"], ids=["missing", "unknown"])
async def test_missing_or_unknown_client_id_never_redirects(
    alice: Client, db: asyncpg.Connection, client_id: str | None
) -> None:
    """Item 3: no client_id, or client_id=nope -> PAGE400; rp.example.test gets nothing."""
    before = await minted(db)
    params = {"response_type": "code", "redirect_uri": RP_CB, "state": "s3"}
    if client_id:
        params["client_id"] = client_id
    await assert_page400(await authorize(alice, params), db, before)


# --- item 4: response type not allowed for the client ------------------------------------------


async def test_token_response_type_for_code_only_client_errors_in_fragment(alice: Client) -> None:
    """Item 4: response_type=token for conf -> RF(error=unauthorized_client&state=s4)."""
    response = await authorize(
        alice,
        {"response_type": "token", "client_id": "conf", "redirect_uri": RP_CB, "state": "s4"},
    )
    fragment = redirect_fragment(response, RP_CB)
    assert fragment["error"] == "unauthorized_client"
    assert fragment["state"] == "s4"
    assert "access_token" not in fragment


# --- item 5: parameter hygiene ----------------------------------------------------------------


async def test_repeated_response_type(alice: Client, db: asyncpg.Connection) -> None:
    """Item 5(a): response_type twice -> PAGE400: a repeated parameter makes the whole request
    untrustworthy, so nothing is redirected and nothing is minted."""
    before = await minted(db)
    response = await authorize(
        alice,
        [
            ("response_type", "code"),
            ("response_type", "code"),
            ("client_id", "conf"),
            ("redirect_uri", RP_CB),
            ("scope", "openid"),
            ("state", "s5a"),
        ],
    )
    await assert_page400(response, db, before)


async def test_repeated_client_id_is_page400(alice: Client, db: asyncpg.Connection) -> None:
    """Item 5(b): client_id=conf&client_id=conf2 -> PAGE400 (the redirect target is untrusted)."""
    before = await minted(db)
    response = await authorize(
        alice,
        [
            ("response_type", "code"),
            ("client_id", "conf"),
            ("client_id", "conf2"),
            ("redirect_uri", RP_CB),
            ("state", "s5b"),
        ],
    )
    await assert_page400(response, db, before)


async def test_repeated_redirect_uri_is_page400(alice: Client, db: asyncpg.Connection) -> None:
    """Item 5(b): a duplicated redirect_uri also makes the target untrustworthy -> PAGE400."""
    before = await minted(db)
    pairs = [*authz_params("conf").items(), ("redirect_uri", RP_CB)]
    await assert_page400(await authorize(alice, pairs), db, before)


async def test_unknown_and_empty_parameters_are_ignored(alice: Client) -> None:
    """Item 5(c): AUTHZ(conf, &foo=bar&prompt=&ui_locales=) -> a normal RQ(code)."""
    params = {**authz_params("conf", state="s5c"), "foo": "bar", "prompt": "", "ui_locales": ""}
    query = redirect_query(await authorize(alice, params), RP_CB)
    assert query["code"]
    assert query["state"] == "s5c"


# --- item 6: invalid_scope --------------------------------------------------------------------


async def test_scope_not_allowed_for_client(alice: Client, db: asyncpg.Connection) -> None:
    """Item 6 (policy: reject, not down-scope): scope=openid admin:all -> RQ(invalid_scope)."""
    before = await minted(db)
    response = await authorize(
        alice,
        {
            "response_type": "code",
            "client_id": "conf",
            "redirect_uri": RP_CB,
            "scope": "openid admin:all",
            "state": "s6",
            "code_challenge": C,
            "code_challenge_method": "S256",
        },
    )
    query = redirect_query(response, RP_CB)
    assert query["error"] == "invalid_scope"
    assert query["state"] == "s6"
    assert "code" not in query
    assert await minted(db) == before


# --- item 7: state round trip -------------------------------------------------------------------

LONG_STATE = ("AbC+/=xyz09-_~." * 40)[:509] + "+/="


async def test_long_state_round_trips_on_success(alice: Client) -> None:
    """Item 7: a 512-character state sent as %2B/%2F/%3D comes back byte-identical."""
    assert len(LONG_STATE) == 512
    params = authz_params("conf", state=LONG_STATE)
    response = await authorize_raw(alice, list(params.items()))
    query = redirect_query(response, RP_CB)
    assert query["code"]
    assert query["state"] == LONG_STATE


async def test_long_state_round_trips_on_error(alice: Client) -> None:
    """Item 7: the same state on item 6's failing request comes back byte-identical."""
    params = authz_params("conf", state=LONG_STATE, scope="openid admin:all")
    response = await authorize_raw(alice, list(params.items()))
    query = redirect_query(response, RP_CB)
    assert query["error"] == "invalid_scope"
    assert query["state"] == LONG_STATE


async def test_long_state_round_trips_in_fragment_success(alice: Client) -> None:
    """Items 7 and 10: the 512-character state comes back byte-identical in an implicit
    (fragment) success response."""
    params = {
        "response_type": "token",
        "client_id": "imp",
        "redirect_uri": IMP_CB,
        "scope": "profile",
        "state": LONG_STATE,
    }
    fragment = redirect_fragment(await authorize_raw(alice, list(params.items())), IMP_CB)
    assert fragment["access_token"]
    assert fragment["state"] == LONG_STATE


async def test_long_state_round_trips_in_fragment_error(alice: Client) -> None:
    """Items 7 and 4: the 512-character state comes back byte-identical in a fragment error
    (response_type=token for conf -> unauthorized_client)."""
    params = {
        "response_type": "token",
        "client_id": "conf",
        "redirect_uri": RP_CB,
        "state": LONG_STATE,
    }
    fragment = redirect_fragment(await authorize_raw(alice, list(params.items())), RP_CB)
    assert fragment["error"] == "unauthorized_client"
    assert fragment["state"] == LONG_STATE


# --- item 8: consent denied ----------------------------------------------------------------------


async def test_consent_deny_gives_access_denied(
    as_client: Client, db: asyncpg.Connection, no_cons_consent: None
) -> None:
    """Item 8: the consent page of ``cons`` answered with deny -> RQ(error=access_denied&state)
    after the form POST (303); no code and no stored consent."""
    login = await sign_in(as_client, authz_params("cons", state="s8"))
    html = await login.text()
    assert login.status == 200, html[:300]
    method, action, hidden = page_form(html)
    assert (method, action) == ("post", "/oauth2/consent")
    soup = BeautifulSoup(html, "html.parser")
    decisions = {b.get("value") for b in soup.find_all("button", attrs={"name": "decision"})}
    assert decisions == {"allow", "deny"}
    codes = await db.fetchval("SELECT count(*) FROM auth.code WHERE client_id = 'cons'")
    response = await as_client.post(
        "/oauth2/consent", data={**hidden, "decision": "deny"}, allow_redirects=False
    )
    query = redirect_query(response, CONS_CB, statuses=(303,))
    assert query["error"] == "access_denied"
    assert query["state"] == "s8"
    assert query["iss"] == ISSUER
    assert "code" not in query
    assert await db.fetchval("SELECT count(*) FROM auth.code WHERE client_id = 'cons'") == codes
    assert await db.fetchval("SELECT count(*) FROM auth.consent WHERE client_id = 'cons'") == 0


# --- item 9: prompt=none ------------------------------------------------------------------------

PROMPT_NONE = {
    "response_type": "code",
    "client_id": "conf",
    "redirect_uri": RP_CB,
    "scope": "openid",
    "state": "s9a",
    "nonce": "n9",
    "prompt": "none",
    "code_challenge": C,
    "code_challenge_method": "S256",
}


async def test_prompt_none_without_session_is_login_required(as_client: Client) -> None:
    """Item 9(a): no session + prompt=none -> RQ(error=login_required&state=s9a), no page."""
    response = await authorize(as_client, PROMPT_NONE)
    query = redirect_query(response, RP_CB)
    assert query["error"] == "login_required"
    assert query["state"] == "s9a"
    assert "code" not in query


async def test_prompt_none_with_session_returns_code_without_ui(alice: Client) -> None:
    """Item 9(b): signed in + prompt=none -> RQ(code) directly, no HTML."""
    response = await authorize(alice, PROMPT_NONE)
    query = redirect_query(response, RP_CB)
    assert query["code"]
    assert query["state"] == "s9a"
    assert "text/html" not in response.headers.get("Content-Type", "")


async def test_prompt_none_combined_with_login_is_invalid(alice: Client) -> None:
    """Item 9(c): prompt=none login -> RQ(error=invalid_request&state)."""
    response = await authorize(alice, {**PROMPT_NONE, "prompt": "none login", "state": "s9c"})
    query = redirect_query(response, RP_CB)
    assert query["error"] == "invalid_request"
    assert query["state"] == "s9c"


async def test_prompt_none_without_consent_is_consent_required(
    alice: Client, no_cons_consent: None
) -> None:
    """Item 9: signed in but no consent on file for ``cons`` + prompt=none -> consent_required
    (one of the errors the conformance suite accepts), never the consent page."""
    response = await authorize(alice, authz_params("cons", prompt="none", state="s9d"))
    query = redirect_query(response, CONS_CB)
    assert query["error"] in (
        "consent_required",
        "interaction_required",
        "login_required",
        "account_selection_required",
    )
    assert query["state"] == "s9d"


# --- item 10: implicit --------------------------------------------------------------------------


async def test_implicit_token_response(alice: Client) -> None:
    """Item 10: response_type=token for imp -> RF(access_token, token_type=Bearer, expires_in,
    state); no refresh_token anywhere and nothing in the query. The token is live (userinfo
    answers 403 insufficient_scope for scope=profile, not 401)."""
    response = await authorize(
        alice,
        {
            "response_type": "token",
            "client_id": "imp",
            "redirect_uri": IMP_CB,
            "scope": "profile",
            "state": "s10",
        },
    )
    fragment = redirect_fragment(response, IMP_CB)
    assert fragment["token_type"].lower() == "bearer"
    assert int(fragment["expires_in"]) > 0
    assert fragment["state"] == "s10"
    assert fragment["iss"] == ISSUER
    assert "refresh_token" not in response.headers["Location"]
    assert "code" not in fragment
    assert fragment.get("scope", "profile") == "profile"
    info = await alice.get(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {fragment['access_token']}"}
    )
    assert info.status == 403
    assert 'error="insufficient_scope"' in info.headers["WWW-Authenticate"]


# --- item 11: hybrid "code token" ---------------------------------------------------------------

HYBRID = {
    "response_type": "code token",
    "client_id": "imp",
    "redirect_uri": IMP_CB,
    "scope": "openid profile",
    "state": "s11",
    "nonce": "n11",
    # imp is public: PKCE is required for every response type with a code (product decision).
    "code_challenge": C,
    "code_challenge_method": "S256",
}


async def test_hybrid_code_token(alice: Client) -> None:
    """Item 11(a): code token -> RF(code, access_token, token_type=Bearer, state); redeeming the
    code with client_id=imp gives TOK200 and an id_token whose nonce is n11."""
    fragment = redirect_fragment(await authorize(alice, HYBRID), IMP_CB)
    assert fragment["code"]
    assert fragment["access_token"]
    assert fragment["token_type"].lower() == "bearer"
    assert fragment["state"] == "s11"
    token = await alice.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": fragment["code"],
            "redirect_uri": IMP_CB,
            "client_id": "imp",
            "code_verifier": V,
        },
    )
    body = await token.json()
    assert token.status == 200, body
    assert token.headers["Cache-Control"] == "no-store"
    assert token.headers["Pragma"] == "no-cache"
    assert body["token_type"].lower() == "bearer"
    assert isinstance(body["expires_in"], int)
    assert body["expires_in"] > 0
    claims = await verified_id_token(alice, body["id_token"], "imp")
    assert claims["nonce"] == "n11"


async def test_hybrid_with_response_mode_query_errors_in_fragment(alice: Client) -> None:
    """Item 11(b): code token + response_mode=query -> RF(error=invalid_request&state=s11)."""
    response = await authorize(alice, {**HYBRID, "response_mode": "query"})
    fragment = redirect_fragment(response, IMP_CB)
    assert fragment["error"] == "invalid_request"
    assert fragment["state"] == "s11"
    assert "code" not in fragment
    assert "access_token" not in fragment


async def test_hybrid_for_public_client_without_pkce_is_refused(alice: Client) -> None:
    """Items 11 and 59: code token for public imp without a code_challenge ->
    RF(error=invalid_request) mentioning code_challenge."""
    params = {k: v for k, v in HYBRID.items() if not k.startswith("code_challenge")}
    fragment = redirect_fragment(await authorize(alice, params), IMP_CB)
    assert fragment["error"] == "invalid_request"
    assert "code_challenge" in fragment.get("error_description", "")
    assert "access_token" not in fragment


# --- item 12: nonce, c_hash, at_hash -----------------------------------------------------------


def _imp(response_type: str, **extra: str) -> dict[str, str]:
    params = {
        "response_type": response_type,
        "client_id": "imp",
        "redirect_uri": IMP_CB,
        "scope": "openid",
        "state": "s12",
        **extra,
    }
    if "code" in response_type.split():
        params.update(code_challenge=C, code_challenge_method="S256")
    return params


@pytest.mark.parametrize("response_type", ["id_token token", "code id_token", "id_token"])
async def test_id_token_from_authorize_requires_nonce(alice: Client, response_type: str) -> None:
    """Item 12(a)(b): an id_token from /authorize without nonce -> RF(error=invalid_request)."""
    fragment = redirect_fragment(await authorize(alice, _imp(response_type)), IMP_CB)
    assert fragment["error"] == "invalid_request"
    assert fragment["state"] == "s12"
    assert "id_token" not in fragment
    assert "access_token" not in fragment


async def test_code_id_token_token_hashes(alice: Client) -> None:
    """Item 12(c): code id_token token with nonce=n12 -> the id_token (signature verified
    against JWKS) has nonce n12, c_hash = b64url(left half SHA-256(code)) and at_hash likewise
    over the access token."""
    response = await authorize(alice, _imp("code id_token token", nonce="n12"))
    fragment = redirect_fragment(response, IMP_CB)
    assert fragment["state"] == "s12"
    claims = await verified_id_token(alice, fragment["id_token"], "imp")
    assert jwt.get_unverified_header(fragment["id_token"])["alg"] == "RS256"
    assert claims["nonce"] == "n12"
    assert claims["c_hash"] == half_hash(fragment["code"])
    assert claims["at_hash"] == half_hash(fragment["access_token"])


async def test_code_token_without_nonce_succeeds(alice: Client) -> None:
    """Item 12(d): code token without nonce (no id_token in the response) -> success."""
    fragment = redirect_fragment(await authorize(alice, _imp("code token")), IMP_CB)
    assert fragment["code"]
    assert fragment["access_token"]
    assert "error" not in fragment


# --- item 13: front-channel tokens are opt-in ----------------------------------------------------


@pytest.mark.parametrize("response_type", ["token", "code token", "id_token token"])
async def test_front_channel_tokens_refused_for_pub(alice: Client, response_type: str) -> None:
    """Item 13: response types returning tokens for pub (no implicit grant) ->
    RF(error=unauthorized_client&state=s13)."""
    params = {
        "response_type": response_type,
        "client_id": "pub",
        "redirect_uri": APP_CB,
        "scope": "openid",
        "state": "s13",
        "nonce": "n13",
        "code_challenge": C,
        "code_challenge_method": "S256",
    }
    fragment = redirect_fragment(await authorize(alice, params), APP_CB)
    assert fragment["error"] == "unauthorized_client"
    assert fragment["state"] == "s13"
    assert "access_token" not in fragment


# --- item 14: framing, referrer, 303 --------------------------------------------------------------


def assert_page_hardening(response: aiohttp.ClientResponse, html: str) -> None:
    csp = response.headers.get("Content-Security-Policy", "")
    directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";") if d.strip()}
    frame_ancestors_none = directives.get("frame-ancestors") == "frame-ancestors 'none'"
    xfo_deny = response.headers.get("X-Frame-Options", "").upper() == "DENY"
    assert frame_ancestors_none or xfo_deny, dict(response.headers)
    # same-origin: no referrer to any other site, and the real Origin on the page's own forms
    # (docs/threat-model.md, "Form POSTs and Origin").
    assert response.headers.get("Referrer-Policy") == "same-origin"
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find("script") is None
    for tag in soup.find_all(["img", "link", "iframe", "object", "embed", "a"]):
        target = str(tag.get("src") or tag.get("href") or "")
        assert "://" not in target, target
        assert not target.startswith("//"), target


async def test_login_page_is_hardened(as_client: Client) -> None:
    """Item 14: the login page forbids framing and referrers and loads nothing third-party."""
    response = await authorize(as_client, authz_params("conf"))
    assert response.status == 200
    assert_page_hardening(response, await response.text())


async def test_consent_page_is_hardened(as_client: Client, no_cons_consent: None) -> None:
    """Item 14: the consent page forbids framing and referrers."""
    response = await sign_in(as_client, authz_params("cons"))
    html = await response.text()
    assert response.status == 200
    assert page_form(html)[1] == "/oauth2/consent"
    assert_page_hardening(response, html)


async def test_error_page_is_hardened(as_client: Client) -> None:
    """Item 14: an AS error page forbids framing and referrers."""
    response = await authorize(as_client, authz_params("conf", redirect_uri=f"{EVIL}/cb"))
    assert response.status == 400
    assert_page_hardening(response, await response.text())


async def test_credential_post_answers_303(as_client: Client) -> None:
    """Item 14: the response to the login POST is 303 (never 307/308), to the client."""
    login = await sign_in(as_client, authz_params("conf"))
    assert login.status == 303
    assert redirect_query(login, RP_CB, statuses=(303,))["code"]


# --- item 15: CSRF of the login and consent forms ------------------------------------------------


async def _consent_form(session: Any, base: Client, username: str) -> dict[str, str]:
    """In ``session`` (a browser), sign in for ``cons`` and return the consent form's fields."""
    page = await session.get(
        base.make_url("/oauth2/authorize"), params=authz_params("cons"), allow_redirects=False
    )
    assert page.status == 200
    _, _, hidden = page_form(await page.text())
    consent = await session.post(
        base.make_url("/oauth2/login"),
        data={**hidden, "username": username, "password": USERS[username][0]},
        allow_redirects=False,
    )
    html = await consent.text()
    assert consent.status == 200, html[:300]
    method, action, fields = page_form(html)
    assert (method, action) == ("post", "/oauth2/consent")
    return fields


async def _cons_codes(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM auth.code WHERE client_id = 'cons'"))


REFUSALS = {
    "forged": "could not be read",
    "foreign": "opened in another browser",
    "cross_origin": "sent from another web site",
}


async def assert_refused(response: aiohttp.ClientResponse, reason: str) -> None:
    """A refused form: 403, no redirect, and the refused page (HTML, never JSON) that says
    why in words."""
    html = await response.text()
    assert response.status == 403, html[:300]
    assert "Location" not in response.headers
    assert response.content_type == "text/html", html[:300]
    alert = BeautifulSoup(html, "html.parser").find(role="alert")
    assert alert is not None, html[:300]
    assert REFUSALS[reason] in alert.get_text(), alert.get_text()


async def test_consent_post_without_form_token(
    as_client: Client, db: asyncpg.Connection, no_cons_consent: None
) -> None:
    """Item 15(a): POST /consent decision=allow with the session cookie but no flow -> 403 page,
    no code, no consent stored."""
    await _consent_form(as_client.session, as_client, "bob")
    codes = await _cons_codes(db)
    response = await as_client.post(
        "/oauth2/consent", data={"decision": "allow"}, allow_redirects=False
    )
    await assert_refused(response, "forged")
    assert await _cons_codes(db) == codes
    assert await db.fetchval("SELECT count(*) FROM auth.consent WHERE client_id = 'cons'") == 0


async def test_consent_post_with_another_browsers_form(
    as_client: Client, db: asyncpg.Connection, no_cons_consent: None
) -> None:
    """Item 15(b): a consent form token from another browser's session -> 403 page, no code; the
    browser's own form still works (so the refusal is about the token)."""
    own = await _consent_form(as_client.session, as_client, "bob")
    async with other_browser(as_client) as other:
        foreign = await _consent_form(other, as_client, "bob")
    assert foreign["flow"] != own["flow"]
    codes = await _cons_codes(db)
    response = await as_client.post(
        "/oauth2/consent", data={**foreign, "decision": "allow"}, allow_redirects=False
    )
    await assert_refused(response, "foreign")
    assert await _cons_codes(db) == codes
    allowed = await as_client.post(
        "/oauth2/consent", data={**own, "decision": "allow"}, allow_redirects=False
    )
    assert redirect_query(allowed, CONS_CB, statuses=(303,))["code"]


async def test_consent_post_from_evil_origin(
    as_client: Client, db: asyncpg.Connection, no_cons_consent: None
) -> None:
    """Item 15(c): the browser's own valid consent form posted with Origin: https://evil.example
    -> 403 page and no code."""
    own = await _consent_form(as_client.session, as_client, "bob")
    codes = await _cons_codes(db)
    response = await as_client.post(
        "/oauth2/consent",
        data={**own, "decision": "allow"},
        headers={"Origin": EVIL},
        allow_redirects=False,
    )
    await assert_refused(response, "cross_origin")
    assert await _cons_codes(db) == codes
    assert await db.fetchval("SELECT count(*) FROM auth.consent WHERE client_id = 'cons'") == 0


async def test_login_post_without_flow(as_client: Client, db: asyncpg.Connection) -> None:
    """Item 15(a) for the login form: credentials without the flow field -> 403 page, no SID."""
    await login_page(as_client, authz_params("conf"))
    before = await minted(db)
    response = await as_client.post(
        "/oauth2/login",
        data={"username": "alice", "password": USERS["alice"][0]},
        allow_redirects=False,
    )
    await assert_refused(response, "forged")
    assert "SID" not in response.cookies
    assert await minted(db) == before


async def test_login_post_with_another_browsers_flow(
    as_client: Client, db: asyncpg.Connection
) -> None:
    """Item 15(b) for the login form: a flow sealed for another browser -> 403 page, no SID, no
    code (login CSRF)."""
    await login_page(as_client, authz_params("conf"))
    async with other_browser(as_client) as other:
        page = await other.get(
            as_client.make_url("/oauth2/authorize"),
            params=authz_params("conf"),
            allow_redirects=False,
        )
        _, _, foreign = page_form(await page.text())
    before = await minted(db)
    response = await password_login(as_client, foreign)
    await assert_refused(response, "foreign")
    assert "SID" not in response.cookies
    assert await minted(db) == before


async def test_login_post_from_evil_origin(as_client: Client, db: asyncpg.Connection) -> None:
    """Item 15(c) for the login form: Origin: https://evil.example -> 403 page, no SID, no code."""
    hidden = await login_page(as_client, authz_params("conf"))
    before = await minted(db)
    response = await password_login(as_client, hidden, headers={"Origin": EVIL})
    await assert_refused(response, "cross_origin")
    assert "SID" not in response.cookies
    assert await minted(db) == before


# --- item 16: no CORS on /authorize --------------------------------------------------------------


async def test_no_cors_on_authorize(alice: Client) -> None:
    """Item 16: neither a preflight nor GET/POST with Origin: https://app.example.test gets
    Access-Control-Allow-Origin or -Credentials."""
    origin = {"Origin": "https://app.example.test"}
    preflight = await alice.options(
        "/oauth2/authorize", headers={**origin, "Access-Control-Request-Method": "GET"}
    )
    get = await authorize(alice, authz_params("pub"), headers=origin)
    post = await alice.post(
        "/oauth2/authorize", data=authz_params("pub"), headers=origin, allow_redirects=False
    )
    assert get.status == 302
    assert post.status in (302, 303)
    for response in (preflight, get, post):
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Credentials" not in response.headers


# --- items 55, 59, 60, 61(a): PKCE at the authorization endpoint --------------------------------


async def test_pkce_s256_round_trip_for_public_client(alice: Client) -> None:
    """Item 55: AUTHZ(pub) with C/S256, then client_id=pub&code_verifier=V -> TOK200."""
    query = redirect_query(await authorize(alice, authz_params("pub")), APP_CB)
    token = await alice.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": APP_CB,
            "client_id": "pub",
            "code_verifier": V,
        },
    )
    body = await token.json()
    assert token.status == 200, body
    assert token.headers["Cache-Control"] == "no-store"
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] > 0
    assert body["access_token"]


PUB = {
    "response_type": "code",
    "client_id": "pub",
    "redirect_uri": APP_CB,
    "scope": "openid",
    "state": "s59",
    "nonce": "n59",
}


async def test_public_client_must_send_challenge(alice: Client, db: asyncpg.Connection) -> None:
    """Item 59: pub without code_challenge -> RQ(invalid_request&state=s59), description names
    code_challenge; no code."""
    before = await minted(db)
    query = redirect_query(await authorize(alice, PUB), APP_CB)
    assert query["error"] == "invalid_request"
    assert query["state"] == "s59"
    assert "code_challenge" in query.get("error_description", "")
    assert await minted(db) == before


@pytest.mark.parametrize(
    "pkce",
    [
        {"code_challenge": C, "code_challenge_method": "plain"},
        {"code_challenge": C},
        {"code_challenge": C, "code_challenge_method": "S512"},
        {"code_challenge_method": "S256"},
        {"code_challenge": C[:42], "code_challenge_method": "S256"},
        {"code_challenge": (C * 3)[:129], "code_challenge_method": "S256"},
        {"code_challenge": C[:42] + "=", "code_challenge_method": "S256"},
    ],
    ids=[
        "60a-plain",
        "60b-no-method",
        "60c-S512",
        "60d-no-challenge",
        "61a-42",
        "61a-129",
        "61a-eq",
    ],
)
async def test_bad_pkce_parameters(
    alice: Client, db: asyncpg.Connection, pkce: dict[str, str]
) -> None:
    """Items 60(a-d), 61(a): anything but a 43-char S256 challenge -> RQ(invalid_request&state)."""
    before = await minted(db)
    response = await authorize_raw(alice, [*{**PUB, "state": "s60"}.items(), *pkce.items()])
    query = redirect_query(response, APP_CB)
    assert query["error"] == "invalid_request"
    assert query["state"] == "s60"
    assert "code" not in query
    assert await minted(db) == before


# --- items 62-63: unregistered and look-alike redirect URIs ---------------------------------------

LOOK_ALIKES = [
    "https://evil.example/cb",
    "https://rp.example.test/cb/",
    "https://rp.example.test/CB",
    "HTTPS://rp.example.test/cb",
    "http://rp.example.test/cb",
    "https://rp.example.test:443/cb",
    "https://rp.example.test:8443/cb",
    "https://rp.example.test/cb?x=1",
    "https://rp.example.test/cb#f",
    "https://rp.example.test/cb/../cb",
    "https://rp.example.test/cb%2F..%2Fx",
    "https://rp.example.test/cb/../x",
    "https://rp.example.test/cb%00",
    "https://rp.example.test/cb\x00",
    "https://rp.example.test.evil.example/cb",
    "https://rp.example.test@evil.example/cb",
    "https://evil.example#@rp.example.test/cb",
    "//evil.example/cb",
    "https://xn--rp-exmple-xxx.test/cb",
]


@pytest.mark.parametrize("redirect_uri", LOOK_ALIKES, ids=[repr(u) for u in LOOK_ALIKES])
async def test_unregistered_redirect_uri_is_page400(
    alice: Client, db: asyncpg.Connection, redirect_uri: str
) -> None:
    """Items 62, 63: every redirect_uri other than the exact registered string -> PAGE400 (nothing
    redirected, nothing minted), for a signed-in user who would otherwise get a code."""
    before = await minted(db)
    params = authz_params("conf", redirect_uri=redirect_uri, state="s62")
    await assert_page400(await authorize_raw(alice, list(params.items())), db, before)


async def test_registered_redirect_uri_with_query(
    tmp_path: Path, database_url: str, users: dict[str, str], db: asyncpg.Connection
) -> None:
    """Item 63: a client registered with .../cb?tenant=a gets RQ with tenant=a kept; tenant=b
    is PAGE400."""
    registered = "https://rp.example.test/cb?tenant=a"
    clients = {
        **CLIENTS,
        "tenant": {
            "client_id": "tenant",
            "client_secret": "tenants3cr3t",
            "redirect_uris": [registered],
            "scopes": ["openid", "profile"],
            "grant_types": ["authorization_code"],
            "pkce": "optional",
        },
    }
    async with gateway(tmp_path / "conf", database_url, clients) as client:
        params = {
            "response_type": "code",
            "client_id": "tenant",
            "redirect_uri": registered,
            "scope": "openid",
            "state": "s63",
            "code_challenge": C,
            "code_challenge_method": "S256",
        }
        login = await password_login(client, await login_page(client, params))
        assert login.status == 303
        location = login.headers["Location"]
        assert location.startswith("https://rp.example.test/cb?tenant=a&"), location
        query, fragment = location_params(location)
        assert query["tenant"] == "a"
        assert query["code"]
        assert query["state"] == "s63"
        assert not fragment
        before = await minted(db)
        other = await authorize(
            client, {**params, "redirect_uri": "https://rp.example.test/cb?tenant=b"}
        )
        await assert_page400(other, db, before)


# --- item 64: omitted redirect_uri ----------------------------------------------------------------


async def test_omitted_redirect_uri_with_two_registered(
    alice: Client, db: asyncpg.Connection
) -> None:
    """Item 64(a): multi (two URIs) without redirect_uri -> PAGE400."""
    before = await minted(db)
    response = await authorize(
        alice, {"response_type": "code", "client_id": "multi", "scope": "profile", "state": "s64"}
    )
    await assert_page400(response, db, before)


async def test_omitted_redirect_uri_in_oidc_request(alice: Client, db: asyncpg.Connection) -> None:
    """Item 64(b): an OpenID request for conf (one URI) without redirect_uri -> PAGE400."""
    before = await minted(db)
    params = authz_params("conf", redirect_uri=None, scope="openid", state="s64")
    await assert_page400(await authorize(alice, params), db, before)


# --- item 65: validation order --------------------------------------------------------------------


async def test_redirect_uri_checked_before_other_errors(
    alice: Client, db: asyncpg.Connection
) -> None:
    """Item 65: unknown response_type + evil redirect_uri + bad scope -> PAGE400, not a redirect
    to evil.example with unsupported_response_type or invalid_scope."""
    before = await minted(db)
    response = await authorize(
        alice,
        {
            "response_type": "unknown",
            "client_id": "conf",
            "redirect_uri": f"{EVIL}/",
            "scope": "bad scope",
            "state": "s65",
        },
    )
    await assert_page400(response, db, before)


# --- item 66: no open redirect at logout ---------------------------------------------------------


def assert_not_to_evil(response: aiohttp.ClientResponse, html: str) -> None:
    location = response.headers.get("Location", "")
    assert "evil.example" not in location
    assert not location.lower().startswith("javascript:")
    if 300 <= response.status < 400:
        assert location.startswith("/"), location
        assert not location.startswith(("//", "/\\")), location
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find("meta", attrs={"http-equiv": re.compile("^refresh$", re.I)}) is None
    assert soup.find("script") is None
    for tag in soup.find_all(True):
        for attr in ("href", "src", "action", "formaction"):
            value = str(tag.get(attr) or "").lower()
            assert "evil.example" not in value, (tag, attr)
            assert "javascript:" not in value, (tag, attr)


async def test_logout_refuses_unregistered_post_logout_redirect(alice: Client) -> None:
    """Item 66: GET /oauth2/logout?post_logout_redirect_uri=https://evil.example (alone, with
    client_id and with a valid id_token_hint) never redirects there; the POST from an allowed
    origin does not either."""
    query = redirect_query(await authorize(alice, authz_params("conf")), RP_CB)
    tokens = await alice.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": RP_CB,
            "code_verifier": V,
        },
        headers=basic("conf", "s3cr3t"),
    )
    id_token = (await tokens.json())["id_token"]
    for extra in ({}, {"client_id": "conf"}, {"id_token_hint": id_token}):
        response = await alice.get(
            "/oauth2/logout",
            params={"post_logout_redirect_uri": EVIL, **extra},
            allow_redirects=False,
        )
        assert response.status == 400, (extra.keys(), response.status)
        assert_not_to_evil(response, await response.text())
    post = await alice.post(
        "/oauth2/logout",
        data={"post_logout_redirect_uri": EVIL, "client_id": "conf"},
        headers={"Origin": "https://app.example.test"},
        allow_redirects=False,
    )
    assert post.status == 400
    assert_not_to_evil(post, await post.text())


async def test_logout_redirects_only_to_registered_uri(alice: Client) -> None:
    """Item 66 (control): the registered post_logout_redirect_uri works through the confirmation
    form (303), and the session is over afterwards."""
    page = await alice.get(
        "/oauth2/logout",
        params={"post_logout_redirect_uri": "https://rp.example.test/bye", "client_id": "conf"},
        allow_redirects=False,
    )
    html = await page.text()
    assert page.status == 200
    method, action, hidden = page_form(html)
    assert (method, action) == ("post", "/oauth2/logout")
    done = await alice.post(action, data=hidden, allow_redirects=False)
    assert done.status == 303
    assert done.headers["Location"] == "https://rp.example.test/bye"
    again = await authorize(alice, {**PROMPT_NONE, "state": "after"})
    assert redirect_query(again, RP_CB)["error"] == "login_required"


@pytest.mark.parametrize(
    "target",
    ["https://evil.example", "//evil.example", "/\\evil.example", "javascript:alert(1)"],
)
async def test_login_next_is_no_open_redirect(alice: Client, target: str) -> None:
    """Item 66: GET /oauth2/login?next=... never sends the browser anywhere: the login form is
    POST only (405, no Location), so ``next`` is never followed."""
    response = await alice.get("/oauth2/login", params={"next": target}, allow_redirects=False)
    assert response.status == 405
    assert "Location" not in response.headers
    assert_not_to_evil(response, await response.text())


# --- item 67: header and HTML injection ----------------------------------------------------------


async def test_state_with_crlf_is_percent_encoded_in_location(alice: Client) -> None:
    """Item 67: state=a%0D%0ASet-Cookie%3A%20x%3D1 never splits a header; it comes back
    percent-encoded in Location and equal to the sent value after decoding."""
    state = "a\r\nSet-Cookie: x=1"
    response = await authorize_raw(alice, list(authz_params("conf", state=state).items()))
    assert "x" not in response.cookies
    for name, value in response.raw_headers:
        assert b"\r" not in value, (name, value)
        assert b"\n" not in value, (name, value)
        assert not (name.lower() == b"set-cookie" and value.startswith(b"x=")), value
    query = redirect_query(response, RP_CB)
    assert "state=a%0D%0ASet-Cookie%3A+x%3D1" in response.headers["Location"] or (
        "state=a%0D%0ASet-Cookie%3A%20x%3D1" in response.headers["Location"]
    )
    assert query["state"] == state


SCRIPT = "<script>alert(1)</script>"


async def test_error_page_escapes_reflected_input(
    as_client: Client, db: asyncpg.Connection
) -> None:
    """Item 67: an error page requested with <script> in client_id, redirect_uri and state shows
    no script element and no unescaped markup."""
    before = await minted(db)
    for params in (
        {"response_type": "code", "client_id": SCRIPT, "redirect_uri": RP_CB, "state": SCRIPT},
        {"response_type": "code", "client_id": "conf", "redirect_uri": SCRIPT, "state": SCRIPT},
        {"response_type": "code", "client_id": "conf", "redirect_uri": f"{EVIL}/{SCRIPT}"},
    ):
        response = await authorize(as_client, params)
        html = await assert_page400(response, db, before)
        assert SCRIPT not in html
        assert BeautifulSoup(html, "html.parser").find("script") is None


async def test_login_hint_is_escaped(as_client: Client) -> None:
    """Item 67: a login_hint with markup is shown as the username field's value, never as HTML."""
    hint = f'"><img src=x onerror=alert(1)>{SCRIPT}'
    response = await authorize(as_client, authz_params("conf", login_hint=hint))
    html = await response.text()
    assert response.status == 200
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find("script") is None
    assert soup.find("img") is None
    assert named_input(soup, "username")["value"] == hint
