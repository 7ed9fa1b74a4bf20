"""``response_mode`` as the relying party asked (OAuth 2.0 Multiple Response Type Encoding
Practices sections 2.1 and 5; discovery advertises query and fragment): a code requested with
``response_mode=fragment`` comes back in the fragment, and so does an error after that point;
``max_age`` in other scripts' digits is an error for the client, never a 500 (items 11b, 128)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.http.conftest import authz_params, sign_in
from tests.support import Client


async def test_a_code_goes_in_the_fragment_when_asked(as_client: Client) -> None:
    login = await sign_in(as_client, authz_params("conf", response_mode="fragment"))
    assert login.status == 303, await login.text()
    parts = urlsplit(login.headers["Location"])
    assert parts.query == ""
    fragment = parse_qs(parts.fragment)
    assert fragment["state"] == ["st-conf"]
    assert len(fragment["code"][0]) >= 32


async def test_an_error_goes_in_the_fragment_when_asked(as_client: Client) -> None:
    response = await as_client.get(
        "/oauth2/authorize",
        params=authz_params("conf", response_mode="fragment", prompt="bogus"),
        allow_redirects=False,
    )
    assert response.status == 302
    parts = urlsplit(response.headers["Location"])
    assert parts.query == ""
    assert parse_qs(parts.fragment)["error"] == ["invalid_request"]


async def test_max_age_in_other_digits_is_invalid_request(as_client: Client) -> None:
    for value in ("\u00b2", "\u0661\u0662"):  # superscript two; Arabic-Indic twelve
        response = await as_client.get(
            "/oauth2/authorize",
            params=authz_params("conf", max_age=value),
            allow_redirects=False,
        )
        assert response.status == 302, await response.text()
        query = parse_qs(urlsplit(response.headers["Location"]).query)
        assert query["error"] == ["invalid_request"]
        assert query["error_description"] == ["max_age must be a number of seconds"]
