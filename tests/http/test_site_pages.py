"""A site's OAuth pages (``conf/sites/<name>.json`` ``oauth2``), chosen by the request's host.

The identifier-first step (``oauth2.identifier`` = ``/oauth2/identifier``): the name first, then
the password step with the name read-only; it never tells whether an account exists
(SECURITY-CHECKLIST item 140: same status, headers, body and work for an existing, a locked and
an unknown name); the password step keeps its throttling and its one message (items 137-140).
``/oauth2/callback``: to the site's callback page with the query, or the built-in page. An
authorization request the gateway cannot return to its client goes to the site's error page with
``code``, ``error`` and ``error_description`` (the reference's query), never to a URL from the
request (items 63-66). A host without a site, or a site without those keys, gets the built-in
pages.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import asyncpg
import pytest
from bs4 import BeautifulSoup, Tag

from tests.http.checklist import serving
from tests.http.conftest import CLIENTS, ISSUER, RELAXED_LIMITS, authz_params, location_params
from tests.support import USERS, Client, named_input, write_conf

BRAND = "brand.example.test"  # a site with every page set
PLAIN = "plain.example.test"  # a site without oauth2 pages
OWN = "own.example.test"  # a site with sign-in pages of its own
OWN_SIGNIN = "https://own.example.test/signin/?skin=dark"
ERROR_PAGE = "https://brand.example.test/app/error"
CALLBACK_PAGE = "https://brand.example.test/app/callback?from=gateway"
SITES: dict[str, dict[str, Any]] = {
    "brand": {
        "hosts": [BRAND],
        "oauth2": {
            "identifier": "/oauth2/identifier",
            "callback": CALLBACK_PAGE,
            "error": ERROR_PAGE,
        },
    },
    "plain": {"hosts": [PLAIN]},
    "own": {
        "hosts": [OWN],
        "oauth2": {"identifier": OWN_SIGNIN, "secret": "/signin/secret"},
    },
}
# A request waits for a locked table far longer than the lock test waits for an answer, so a
# lookup cannot hide behind the request's own database deadline.
PATIENT = {"pool_min": 1, "pool_max": 10, "command_timeout": 100, "request_timeout": 100}
ON_BRAND = {"Host": BRAND}
ON_PLAIN = {"Host": PLAIN}


@pytest.fixture
async def client(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Client]:
    conf = write_conf(
        tmp_path / "conf",
        gateway={"issuer": ISSUER, "limits": RELAXED_LIMITS, "database": PATIENT},
        clients=CLIENTS,
        sites=SITES,
    )
    async with serving(conf, database_url) as served:
        yield served


def soup_of(text: str) -> BeautifulSoup:
    return BeautifulSoup(text, "html.parser")


def only_form(soup: BeautifulSoup, action: str) -> Tag:
    forms = [f for f in soup.find_all("form") if f.get("action") == action]
    assert len(forms) == 1, soup.prettify()[:800]
    form = forms[0]
    assert isinstance(form, Tag)
    return form


def hidden(form: Tag) -> dict[str, str]:
    return {
        str(i["name"]): str(i.get("value", ""))
        for i in form.find_all("input", attrs={"type": "hidden"})
    }


def local(location: str) -> str:
    """A ``Location`` on the gateway as a path with its query."""
    parts = urlsplit(location)
    assert parts.netloc in ("", BRAND), location
    return parts.path + ("?" + parts.query if parts.query else "")


async def open_identifier(client: Client, **extra: str) -> BeautifulSoup:
    """The authorization request on the brand site: redirected to the identifier step."""
    start = await client.get(
        "/oauth2/authorize",
        params=authz_params("conf", **extra),
        headers=ON_BRAND,
        allow_redirects=False,
    )
    assert start.status == 302, await start.text()
    location = start.headers["Location"]
    assert location.startswith("/oauth2/identifier?"), location
    page = await client.get(local(location), headers=ON_BRAND, allow_redirects=False)
    assert page.status == 200, await page.text()
    return soup_of(await page.text())


async def post_identifier(client: Client, soup: BeautifulSoup, name: str) -> aiohttp.ClientResponse:
    form = only_form(soup, "/oauth2/identifier")
    return await client.post(
        "/oauth2/identifier",
        data={**hidden(form), "username": name},
        headers=ON_BRAND,
        allow_redirects=False,
    )


async def post_password(
    client: Client, soup: BeautifulSoup, password: str, username: str | None = None
) -> aiohttp.ClientResponse:
    form = only_form(soup, "/oauth2/login")
    data = {**hidden(form), "password": password}
    if username is not None:
        data["username"] = username
    return await client.post("/oauth2/login", data=data, headers=ON_BRAND, allow_redirects=False)


# --- the identifier step ------------------------------------------------------------------------


async def test_the_sites_host_gets_the_identifier_step_and_others_the_login_form(
    client: Client,
) -> None:
    """Host-based selection: the brand host is sent to the identifier step with the request in
    the query (as the reference sends it to a site's page); a site without pages and a host
    without a site get today's single login form."""
    soup = await open_identifier(client)
    form = only_form(soup, "/oauth2/identifier")
    assert form.get("method") == "post"
    assert named_input(form, "username").get("value") == ""
    assert form.find("input", attrs={"name": "password"}) is None
    assert set(hidden(form)) == {"flow"}
    for headers in (ON_PLAIN, {"Host": "unknown.example.test"}):
        page = await client.get(
            "/oauth2/authorize",
            params=authz_params("conf"),
            headers=headers,
            allow_redirects=False,
        )
        assert page.status == 200, await page.text()
        login = only_form(soup_of(await page.text()), "/oauth2/login")
        assert login.find("input", attrs={"name": "password"}) is not None


async def test_a_site_with_its_own_pages_gets_the_request(client: Client) -> None:
    """A site's own sign-in page (``identifier``) and password page (``secret``, for
    ``prompt=secret``) get the authorization request added to their own query."""
    for prompt, page in ((None, OWN_SIGNIN), ("secret", "/signin/secret")):
        params = authz_params("conf", prompt=prompt)
        sent = await client.get(
            "/oauth2/authorize", params=params, headers={"Host": OWN}, allow_redirects=False
        )
        assert sent.status == 302, await sent.text()
        location = sent.headers["Location"]
        assert location.startswith(page + ("&" if "?" in page else "?")), location
        query = dict(parse_qsl(urlsplit(location).query))
        assert query == {**dict(parse_qsl(urlsplit(page).query)), **params}


async def test_identifier_then_password_signs_in(client: Client) -> None:
    """The password step shows the name read-only with a "Not you?" link; the sealed name is the
    one checked (an edited field changes nothing); a wrong password shows the usual message on
    the same step; the right one returns a code to the client."""
    step = await post_identifier(client, await open_identifier(client), "  alice ")
    assert step.status == 200
    soup = soup_of(await step.text())
    form = only_form(soup, "/oauth2/login")
    name = named_input(form, "username")
    assert name.get("value") == "alice"
    assert name.has_attr("readonly")
    assert form.find("input", attrs={"name": "password"}) is not None
    back = soup.find("a", id="not-you")
    assert isinstance(back, Tag)
    href = urlsplit(str(back["href"]))
    assert href.path == "/oauth2/identifier"
    assert dict(parse_qsl(href.query)) == authz_params("conf")

    wrong = await post_password(client, soup, "wrong-password")
    assert wrong.status == 401
    again = soup_of(await wrong.text())
    alert = again.find(role="alert")
    assert alert is not None
    assert alert.get_text(strip=True) == "The user name or password is wrong."
    assert named_input(only_form(again, "/oauth2/login"), "username").has_attr("readonly")
    assert again.find("a", id="not-you") is not None

    # bob's name in the read-only field is not read: alice's sealed name and password sign in.
    done = await post_password(client, again, USERS["alice"][0], username="bob")
    assert done.status == 303, await done.text()
    query, _ = location_params(done.headers["Location"])
    assert done.headers["Location"].startswith("https://rp.example.test/cb?")
    assert query["state"] == "st-conf"
    assert query["code"]


async def test_not_you_goes_back_to_an_empty_identifier_step(client: Client) -> None:
    """The login_hint prefills the identifier step; "Not you?" starts it again without it."""
    soup = await open_identifier(client, login_hint="alice")
    assert named_input(only_form(soup, "/oauth2/identifier"), "username").get("value") == "alice"
    step = soup_of(await (await post_identifier(client, soup, "alice")).text())
    back = step.find("a", id="not-you")
    assert isinstance(back, Tag)
    assert "login_hint" not in str(back["href"])
    page = await client.get(str(back["href"]), headers=ON_BRAND, allow_redirects=False)
    assert page.status == 200
    form = only_form(soup_of(await page.text()), "/oauth2/identifier")
    assert named_input(form, "username").get("value") == ""


async def test_an_empty_identifier_asks_again(client: Client) -> None:
    answer = await post_identifier(client, await open_identifier(client), "   ")
    assert answer.status == 400
    soup = soup_of(await answer.text())
    only_form(soup, "/oauth2/identifier")
    alert = soup.find(role="alert")
    assert alert is not None
    assert alert.get_text(strip=True) == "Enter your user name or email."


async def test_the_reference_value_field_is_accepted(client: Client) -> None:
    form = only_form(await open_identifier(client), "/oauth2/identifier")
    answer = await client.post(
        "/oauth2/identifier",
        data={**hidden(form), "value": "bob"},
        headers=ON_BRAND,
        allow_redirects=False,
    )
    assert answer.status == 200
    name = named_input(only_form(soup_of(await answer.text()), "/oauth2/login"), "username")
    assert name.get("value") == "bob"


async def test_prompt_secret_shows_the_password_page(client: Client) -> None:
    """``prompt=secret`` (the reference's password page): the built-in login form directly."""
    page = await client.get(
        "/oauth2/authorize",
        params=authz_params("conf", prompt="secret"),
        headers=ON_BRAND,
        allow_redirects=False,
    )
    assert page.status == 200, await page.text()
    form = only_form(soup_of(await page.text()), "/oauth2/login")
    assert not named_input(form, "username").has_attr("readonly")


async def test_an_identifier_post_without_this_browsers_flow_is_refused_alike(
    client: Client,
) -> None:
    """No API form to probe names with: without a sealed flow (a Bearer call as the reference
    has), every value gets the same refusal."""
    answers = set()
    for name in ("alice", "mallory"):
        answer = await client.post(
            "/oauth2/identifier",
            data={"value": name},
            headers={**ON_BRAND, "Authorization": "Bearer x"},
            allow_redirects=False,
        )
        answers.add((answer.status, await answer.text()))
    assert len(answers) == 1
    assert next(iter(answers))[0] == 403


# --- no account enumeration (item 140) ----------------------------------------------------------

_SEALED = re.compile(r'(name="flow" value=")[^"]+(")')
_SEALED_QUERY = re.compile(r"(flow=)[A-Za-z0-9_.%-]+")


def normalised(body: str, name: str) -> str:
    """A page without its per-request seal and the echoed name."""
    body = _SEALED.sub(r"\1SEALED\2", body)
    body = _SEALED_QUERY.sub(r"\1SEALED", body)
    return body.replace(f'value="{name}"', 'value="NAME"')


async def answer_shape(answer: aiohttp.ClientResponse, name: str) -> tuple[Any, ...]:
    return (
        answer.status,
        tuple(sorted(answer.headers.keys())),
        tuple(sorted(c.split("=", 1)[0] for c in answer.headers.getall("Set-Cookie", []))),
        answer.headers.get("Location"),
        normalised(await answer.text(), name),
    )


async def test_the_identifier_step_looks_the_same_for_every_name(client: Client) -> None:
    """Item 140: alice (exists), carol (locked) and mallory (unknown) get the same status, the
    same header names and cookies, no redirect and the same body apart from the echoed name and
    the seal, at the identifier step and at a wrong password after it."""
    steps, failures = set(), set()
    for name in ("alice", "carol", "mallory"):
        step = await post_identifier(client, await open_identifier(client), name)
        body = await step.text()
        steps.add(await answer_shape(step, name))
        wrong = await post_password(client, soup_of(body), "wrong-password")
        failures.add(await answer_shape(wrong, name))
    assert len(steps) == 1, steps
    assert len(failures) == 1, failures
    assert next(iter(steps))[0] == 200
    assert next(iter(failures))[0] == 401


async def test_the_identifier_step_looks_nothing_up(client: Client, db: asyncpg.Connection) -> None:
    """Item 140, timing: the identifier POST does no database work at all, so it takes the same
    time for every name. While a transaction holds every table of the auth and oauth2 schemas
    locked (ACCESS EXCLUSIVE: even a read would wait), the POST still answers for all three
    names; the password step behind it does wait. (A bound of 20 s per answer: coarse, never a
    timing comparison.)"""
    forms = [await open_identifier(client) for _ in range(4)]
    tables = await db.fetch(
        "SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables"
        " WHERE schemaname IN ('auth', 'oauth2')"
    )
    assert len(tables) > 5
    transaction = db.transaction()
    await transaction.start()
    try:
        await db.execute(
            "LOCK TABLE " + ", ".join(t["name"] for t in tables) + " IN ACCESS EXCLUSIVE MODE"
        )
        for soup, name in zip(forms, ("alice", "carol", "mallory"), strict=False):
            step = await asyncio.wait_for(post_identifier(client, soup, name), timeout=20)
            assert step.status == 200
        # The control: a step that reads accounts cannot answer while the tables are locked.
        password_step = soup_of(await (await post_identifier(client, forms[3], "alice")).text())
        blocked = asyncio.ensure_future(post_password(client, password_step, USERS["alice"][0]))
        done, _ = await asyncio.wait({blocked}, timeout=1.5)
        assert not done
    finally:
        await transaction.rollback()
    assert (await asyncio.wait_for(blocked, timeout=30)).status == 303


# --- the error page ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"client_id": "nobody"}, "invalid_client"),
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
        ({"client_id": None}, "invalid_request"),
    ],
)
async def test_an_untrusted_request_goes_to_the_sites_error_page(
    client: Client, params: dict[str, str | None], error: str
) -> None:
    """Items 63-66: the request names an unknown client or an unregistered redirect URI, so
    the gateway cannot answer the client; the brand site's error page gets the reference's
    query (``code``, ``error``, ``error_description``); nothing from the request picks the
    target. The plain site shows the built-in page."""
    merged = {**authz_params("conf"), **params}
    request = {k: v for k, v in merged.items() if v is not None}
    sent = await client.get(
        "/oauth2/authorize", params=request, headers=ON_BRAND, allow_redirects=False
    )
    assert sent.status == 303, await sent.text()
    location = sent.headers["Location"]
    assert location.startswith(ERROR_PAGE + "?")
    assert "evil" not in location
    query = dict(parse_qsl(urlsplit(location).query))
    assert set(query) == {"code", "error", "error_description"}
    assert query["code"] == "400"
    assert query["error"] == error
    assert sent.headers["Cache-Control"] == "no-store"

    shown = await client.get(
        "/oauth2/authorize", params=request, headers=ON_PLAIN, allow_redirects=False
    )
    assert shown.status == 400
    assert shown.content_type == "text/html"
    assert error in await shown.text()


async def test_errors_for_the_client_still_go_to_the_client(client: Client) -> None:
    """A trusted redirect URI gets its error as before: the site's error page is only for
    requests that cannot be answered there."""
    sent = await client.get(
        "/oauth2/authorize",
        params=authz_params("conf", response_type="unknown"),
        headers=ON_BRAND,
        allow_redirects=False,
    )
    assert sent.status == 302
    assert sent.headers["Location"].startswith("https://rp.example.test/cb?")


# --- /oauth2/callback -------------------------------------------------------------------------


async def test_callback_goes_to_the_sites_callback_page_with_the_query(client: Client) -> None:
    """The reference's ``callback``: the query as it came (the code encoded as in its example,
    and its error example), appended to the page's own query; only the configured page."""
    for query in (
        "code=b%2F8Npjb%2BB4&state=c2FmZXR",
        "code=403&error=access_denied&error_description=Access%20denied.",
        "next=https%3A%2F%2Fevil.example%2F",
    ):
        sent = await client.get(
            "/oauth2/callback?" + query, headers=ON_BRAND, allow_redirects=False
        )
        assert sent.status == 302
        location = sent.headers["Location"]
        assert location.startswith(CALLBACK_PAGE + "&")
        assert dict(parse_qsl(urlsplit(location).query)) == {
            "from": "gateway",
            **dict(parse_qsl(query)),
        }
    bare = await client.get("/oauth2/callback", headers=ON_BRAND, allow_redirects=False)
    assert bare.headers["Location"] == CALLBACK_PAGE


async def test_callback_without_a_site_page_shows_the_parameters(client: Client) -> None:
    page = await client.get(
        "/oauth2/callback",
        params={"code": "abc/def", "state": "<script>x</script>"},
        headers=ON_PLAIN,
        allow_redirects=False,
    )
    assert page.status == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    text = await page.text()
    assert "<script>" not in text
    rows = soup_of(text).find_all("tr")
    assert [tuple(c.get_text() for c in r.find_all(["th", "td"])) for r in rows] == [
        ("code", "abc/def"),
        ("state", "<script>x</script>"),
    ]
    empty = await client.get("/oauth2/callback", headers=ON_PLAIN)
    assert "fragment" in await empty.text()
