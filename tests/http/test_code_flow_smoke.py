"""A first end-to-end check of the code flow through the built-in login form."""

from __future__ import annotations

from tests.http.conftest import V, authz_params, basic, location_params, sign_in
from tests.support import Client


async def test_code_flow_through_the_login_form(as_client: Client) -> None:
    login = await sign_in(as_client, authz_params("conf"))
    assert login.status == 303, await login.text()
    query, fragment = location_params(login.headers["Location"])
    assert login.headers["Location"].startswith("https://rp.example.test/cb?")
    assert query["state"] == "st-conf"
    assert query["iss"] == "https://as.example.test"
    assert not fragment
    token = await as_client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": "https://rp.example.test/cb",
            "code_verifier": V,
        },
        headers=basic("conf", "s3cr3t"),
    )
    body = await token.json()
    assert token.status == 200, body
    assert token.headers["Cache-Control"] == "no-store"
    assert {"access_token", "refresh_token", "id_token"} <= set(body)
    # SSO: a second authorization answers without any page.
    again = await as_client.get(
        "/oauth2/authorize", params=authz_params("conf", prompt="none"), allow_redirects=False
    )
    assert again.status == 302
    assert "code" in location_params(again.headers["Location"])[0]
