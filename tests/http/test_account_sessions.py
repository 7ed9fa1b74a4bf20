"""``/oauth2/account/sessions`` over HTTP: the refusals a browser test does not reach.
SECURITY-CHECKLIST item 15 (CSRF: a form from another origin or without its sealed token is
refused) and the owner check (another person's session id ends nothing)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from tests.http.conftest import authz_params, hidden_flow, sign_in
from tests.support import Client

PAGE = "/oauth2/account/sessions"


async def live(database_url: str, session_id: UUID) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return bool(await conn.fetchval(
            "SELECT revoked_at IS NULL FROM auth.session WHERE id = $1", session_id
        ))  # fmt: skip
    finally:
        await conn.close()


async def bob_session(database_url: str, users: dict[str, str]) -> UUID:
    conn = await asyncpg.connect(database_url)
    try:
        found: UUID = await conn.fetchval(
            "SELECT session_id FROM daemon.session_open($1, 'conf', 3600, '192.0.2.9', 'curl/8')",
            UUID(users["bob"]),
        )
        return found
    finally:
        await conn.close()


async def test_signed_out_forged_cross_origin_and_foreign_session_are_refused(
    as_client: Client, database_url: str, users: dict[str, str]
) -> None:
    signed_out = await as_client.get(PAGE)
    assert signed_out.status == 401
    assert "You are not signed in" in await signed_out.text()

    assert (await sign_in(as_client, authz_params("conf"), "alice")).status == 303
    page = await as_client.get(PAGE)
    assert page.status == 200
    assert page.headers["X-Frame-Options"] == "DENY"
    flow = hidden_flow(await page.text())
    bob = await bob_session(database_url, users)

    no_token = await as_client.post(PAGE, data={"action": "end_all"}, allow_redirects=False)
    assert no_token.status == 403
    evil = await as_client.post(
        PAGE, data={"flow": flow, "action": "end_all"},
        headers={"Origin": "https://evil.example"}, allow_redirects=False,
    )  # fmt: skip
    assert evil.status == 403
    foreign = await as_client.post(
        PAGE, data={"flow": flow, "action": "end", "session": str(bob)}, allow_redirects=False
    )
    assert foreign.status == 404
    assert await live(database_url, bob)
    bad = await as_client.post(
        PAGE, data={"flow": flow, "action": "end", "session": "x"}, allow_redirects=False
    )
    assert bad.status == 400
    # Still signed in after the refusals; "end all" ends only alice's sessions, bob's stays.
    done = await as_client.post(PAGE, data={"flow": flow, "action": "end_all"})
    assert done.status == 200
    assert await live(database_url, bob)
    assert (await as_client.get(PAGE)).status == 401
