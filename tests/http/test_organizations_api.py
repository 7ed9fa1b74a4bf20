"""/admin/v1/organizations (issue 12 item 3) and the organization claim (item 8), through real
HTTP and a real database: who may do what (a service client with the management scope for
every organisation, a user only as an admin of that one), RFC 6750 errors for the token, JSON
errors with the right status for the rest, the audit log with its actor, and the claim in
access tokens, ID tokens and userinfo.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import jwt
import pytest
from aiohttp import ClientResponse

from gateway.grants import organizations as orgs
from gateway.grants.issue import secret_hash
from gateway.keys import CONFIG
from gateway.store import organizations as org_store
from tests.http.checklist import serving
from tests.http.conftest import ISSUER, RELAXED_LIMITS, basic
from tests.http.mail_support import eventually
from tests.http.proxy_support import Upstream
from tests.support import USERS, Client, write_conf

BASE = "/admin/v1/organizations"
MANAGE = "organizations.manage"
CLIENTS = {
    "svc": {
        "client_id": "svc",
        "client_secret": "svc-secret-0123456789",
        "scopes": [MANAGE, "orders.read"],
        "grant_types": ["client_credentials"],
    },
    "hub": {
        "client_id": "hub",
        "client_secret": "hub-secret-0123456789",
        "redirect_uris": ["https://hub.example.test/cb"],
        "scopes": ["openid", "profile", "email", "organization", MANAGE],
        "grant_types": ["password", "authorization_code", "refresh_token"],
        "initiate_login_uri": "https://hub.example.test/login",
    },
}


async def no_organisations(database_url: str) -> None:
    """The module's database is shared by its tests: each starts without organisations."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "DELETE FROM auth.invitation; DELETE FROM auth.membership; "
            "DELETE FROM auth.organization; DELETE FROM audit.event WHERE kind LIKE 'org.%'"
        )
    finally:
        await conn.close()


@pytest.fixture
async def api(tmp_path: Path, database_url: str, users: dict[str, str]) -> AsyncIterator[Client]:
    await no_organisations(database_url)
    conf = write_conf(
        tmp_path / "conf",
        gateway={"issuer": ISSUER, "limits": RELAXED_LIMITS},
        clients=CLIENTS,
    )
    async with serving(conf, database_url) as client:
        yield client


async def service_token(api: Client, scope: str = MANAGE) -> str:
    answer = await api.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": scope},
        headers=basic("svc", "svc-secret-0123456789"),
    )
    assert answer.status == 200, await answer.text()
    return str((await answer.json())["access_token"])


async def user_tokens(api: Client, user: str, scope: str) -> dict[str, Any]:
    answer = await api.post(
        "/oauth2/token",
        data={
            "grant_type": "password",
            "username": user,
            "password": USERS[user][0],
            "scope": scope,
        },
        headers=basic("hub", "hub-secret-0123456789"),
    )
    assert answer.status == 200, await answer.text()
    body: dict[str, Any] = await answer.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def error_of(response: ClientResponse, status: int, error: str) -> str:
    body = await response.json()
    assert response.status == status, body
    assert body["error"] == error, body
    return str(body.get("error_description", ""))


async def make_member(api: Client, database_url: str, alias: str, user: str, role: str) -> None:
    """Set-up through the real invitation path: an invitation, accepted with the account."""
    conn = await asyncpg.connect(database_url)
    try:
        made = await orgs.invite(
            conn, api.app[CONFIG].current, alias=alias, email=USERS[user][1], role=role,
            actor="test",
        )  # fmt: skip
        token = made.link.rsplit("token=", 1)[1]
        user_id = await conn.fetchval("SELECT id FROM auth.users WHERE username = $1", user)
        await org_store.invitation_accept(conn, secret_hash(token), user_id)
    finally:
        await conn.close()


async def create(api: Client, token: str, alias: str, name: str) -> ClientResponse:
    return await api.post(BASE, json={"alias": alias, "name": name}, headers=bearer(token))


# --- the token (RFC 6750) -------------------------------------------------------------------


async def test_no_token_a_bad_one_or_one_without_the_scope(api: Client) -> None:
    missing = await api.get(BASE)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    bad = await api.get(BASE, headers=bearer("not-a-token"))
    assert bad.status == 401
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    narrow = await api.get(BASE, headers=bearer(await service_token(api, "orders.read")))
    assert narrow.status == 403
    assert (await narrow.json())["error"] == "insufficient_scope"


# --- a service client -----------------------------------------------------------------------


async def test_a_service_client_creates_lists_and_reads_organisations(api: Client) -> None:
    token = await service_token(api)
    made = await api.post(
        BASE,
        json={"alias": "acme", "name": "Acme Ltd", "domains": ["Acme.Example"]},
        headers=bearer(token),
    )
    body = await made.json()
    assert made.status == 201, body
    assert made.headers["Location"] == f"{BASE}/acme"
    assert body["alias"] == "acme"
    assert body["domains"] == ["acme.example"]
    again = await create(api, token, "acme", "Another")
    assert "exists" in await error_of(again, 409, "conflict")
    listed = await (await api.get(BASE, headers=bearer(token))).json()
    assert [o["alias"] for o in listed["organizations"]] == ["acme"]
    one = await api.get(f"{BASE}/acme", headers=bearer(token))
    assert (await one.json())["name"] == "Acme Ltd"
    await error_of(await api.get(f"{BASE}/nope", headers=bearer(token)), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param({"alias": "Acme Ltd", "name": "x"}, 422, id="alias-with-space"),
        pytest.param({"alias": "-acme", "name": "x"}, 422, id="alias-hyphen-first"),
        pytest.param({"alias": "acme", "name": ""}, 422, id="empty-name"),
        pytest.param({"alias": "acme", "name": "a\u0000b"}, 422, id="control-char-name"),
        pytest.param({"alias": 7, "name": "x"}, 422, id="alias-not-a-string"),
        pytest.param({"alias": "acme", "name": "x", "domains": ["not a domain"]}, 422, id="domain"),
        pytest.param(["acme"], 400, id="not-an-object"),
    ],
)
async def test_bad_organisations_are_refused_with_the_reason(
    api: Client, body: Any, status: int
) -> None:
    answer = await api.post(BASE, json=body, headers=bearer(await service_token(api)))
    assert answer.status == status, await answer.text()
    assert (await answer.json())["error_description"]


async def test_a_body_that_is_not_json_is_a_400(api: Client) -> None:
    answer = await api.post(
        BASE,
        data="alias=acme",
        headers={**bearer(await service_token(api)), "Content-Type": "text/plain"},
    )
    await error_of(answer, 400, "invalid_request")
    broken = await api.post(
        BASE,
        data="{not json",
        headers={**bearer(await service_token(api)), "Content-Type": "application/json"},
    )
    await error_of(broken, 400, "invalid_request")


async def test_invitations_through_the_api_are_audited_and_never_show_the_link(
    api: Client, database_url: str
) -> None:
    token = await service_token(api)
    assert (await create(api, token, "acme", "Acme Ltd")).status == 201
    invited = await api.post(
        f"{BASE}/acme/invitations",
        json={"email": "Dana@Example.COM", "role": "admin", "client_id": "hub"},
        headers=bearer(token),
    )
    body = await invited.json()
    assert invited.status == 201, body
    assert body["email"] == "Dana@example.com"  # the domain is normalised
    assert body["role"] == "admin"
    assert "link" not in body
    assert "token" not in str(body)
    pending = await (await api.get(f"{BASE}/acme/invitations", headers=bearer(token))).json()
    assert [(i["email"], i["state"]) for i in pending["invitations"]] == [
        ("Dana@example.com", "pending")
    ]
    conn = await asyncpg.connect(database_url)
    try:
        events = await conn.fetch(
            "SELECT kind, client_id, detail->>'actor' AS actor FROM audit.event "
            "WHERE kind LIKE 'org.%' ORDER BY id"
        )
    finally:
        await conn.close()
    assert [(e["kind"], e["actor"]) for e in events] == [
        ("org.add", "client:svc"),
        ("org.invite", "client:svc"),
    ]

    gone = await api.delete(f"{BASE}/acme/invitations/dana@example.com", headers=bearer(token))
    assert gone.status == 204
    again = await api.delete(f"{BASE}/acme/invitations/dana@example.com", headers=bearer(token))
    await error_of(again, 404, "not_found")


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        pytest.param({"email": "not an email"}, 422, "invalid_value", id="bad-email"),
        pytest.param({"email": "a@b"}, 422, "invalid_value", id="no-domain-dot"),
        pytest.param({"email": "x@example.com\r\nBcc: y@e.com"}, 422, "invalid_value", id="crlf"),
        pytest.param({"email": "x@example.com", "role": "owner"}, 422, "invalid_value", id="role"),
        pytest.param({"email": "x@example.com", "client_id": "nope"}, 422, "invalid_value",
                     id="unknown-client"),
        pytest.param({"role": "member"}, 422, "invalid_value", id="no-email"),
    ],
)  # fmt: skip
async def test_bad_invitations_are_refused(
    api: Client, body: dict[str, Any], status: int, error: str
) -> None:
    token = await service_token(api)
    assert (await create(api, token, "acme", "Acme Ltd")).status == 201
    answer = await api.post(f"{BASE}/acme/invitations", json=body, headers=bearer(token))
    await error_of(answer, status, error)


async def test_inviting_a_member_or_to_an_unknown_organisation(
    api: Client, database_url: str
) -> None:
    token = await service_token(api)
    assert (await create(api, token, "acme", "Acme Ltd")).status == 201
    await make_member(api, database_url, "acme", "bob", "member")
    member = await api.post(
        f"{BASE}/acme/invitations", json={"email": USERS["bob"][1]}, headers=bearer(token)
    )
    assert "member" in await error_of(member, 409, "conflict")
    unknown = await api.post(
        f"{BASE}/nope/invitations", json={"email": "x@example.com"}, headers=bearer(token)
    )
    await error_of(unknown, 404, "not_found")


# --- a user who is an admin of one organisation -----------------------------------------------


async def test_an_organisation_admin_manages_that_one_only(
    api: Client, database_url: str, users: dict[str, str]
) -> None:
    service = await service_token(api)
    for alias in ("acme", "globex"):
        assert (await create(api, service, alias, alias.title())).status == 201
    await make_member(api, database_url, "acme", "alice", "admin")
    await make_member(api, database_url, "acme", "bob", "member")
    await make_member(api, database_url, "globex", "bob", "admin")
    alice = bearer((await user_tokens(api, "alice", f"openid {MANAGE}"))["access_token"])

    listed = await (await api.get(BASE, headers=alice)).json()
    assert [o["alias"] for o in listed["organizations"]] == ["acme"]
    members = await (await api.get(f"{BASE}/acme/members", headers=alice)).json()
    assert {m["username"]: m["role"] for m in members["members"]} == {
        "alice": "admin",
        "bob": "member",
    }
    await error_of(await api.get(f"{BASE}/globex", headers=alice), 403, "insufficient_scope")
    await error_of(await api.get(f"{BASE}/nope", headers=alice), 403, "insufficient_scope")
    await error_of(await create(api, alice["Authorization"][7:], "mine", "Mine"), 403,
                   "insufficient_scope")  # fmt: skip

    invited = await api.post(
        f"{BASE}/acme/invitations", json={"email": "erin@example.com"}, headers=alice
    )
    body = await invited.json()
    assert invited.status == 201, body
    assert body["client_id"] == "hub"  # back to the application that invited
    removed = await api.delete(f"{BASE}/acme/members/{users['bob']}", headers=alice)
    assert removed.status == 204
    after = await (await api.get(f"{BASE}/acme/members", headers=alice)).json()
    assert [m["username"] for m in after["members"]] == ["alice"]
    not_id = await api.delete(f"{BASE}/acme/members/bob", headers=alice)
    await error_of(not_id, 422, "invalid_value")

    # bob is a member of acme, an admin of globex: nothing of acme for him any more.
    bob = bearer((await user_tokens(api, "bob", MANAGE))["access_token"])
    await error_of(await api.get(f"{BASE}/acme/members", headers=bob), 403, "insufficient_scope")
    assert (await api.get(f"{BASE}/globex/members", headers=bob)).status == 200


async def test_a_user_token_without_the_scope_manages_nothing(
    api: Client, database_url: str
) -> None:
    assert (await create(api, await service_token(api), "acme", "Acme")).status == 201
    await make_member(api, database_url, "acme", "alice", "admin")
    plain = bearer((await user_tokens(api, "alice", "openid profile"))["access_token"])
    await error_of(await api.get(f"{BASE}/acme/members", headers=plain), 403, "insufficient_scope")


# --- the organization claim (item 8) ----------------------------------------------------------


async def test_the_organization_scope_puts_the_aliases_in_every_token(
    api: Client, database_url: str
) -> None:
    service = await service_token(api)
    for alias in ("globex", "acme"):
        assert (await create(api, service, alias, alias.title())).status == 201
        await make_member(api, database_url, alias, "alice", "member")
    body = await user_tokens(api, "alice", "openid profile organization")
    access = jwt.decode(body["access_token"], options={"verify_signature": False})
    identity = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert access["organization"] == ["acme", "globex"]
    assert identity["organization"] == ["acme", "globex"]
    info = await api.get("/oauth2/userinfo", headers=bearer(body["access_token"]))
    assert (await info.json())["organization"] == ["acme", "globex"]
    # A refresh reads them again, in its own statement: a new membership is in the new token.
    offline = await api.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": "alice", "password": USERS["alice"][0],
              "scope": "openid organization", "access_type": "offline"},
        headers=basic("hub", "hub-secret-0123456789"),
    )  # fmt: skip
    assert offline.status == 200, await offline.text()
    assert (await create(api, service, "initech", "Initech")).status == 201
    await make_member(api, database_url, "initech", "alice", "member")
    refreshed = await api.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": (await offline.json())["refresh_token"],
        },
        headers=basic("hub", "hub-secret-0123456789"),
    )
    assert refreshed.status == 200, await refreshed.text()
    renewed = jwt.decode(
        (await refreshed.json())["access_token"], options={"verify_signature": False}
    )
    assert renewed["organization"] == ["acme", "globex", "initech"]

    without = await user_tokens(api, "alice", "openid profile")
    assert "organization" not in jwt.decode(
        without["access_token"], options={"verify_signature": False}
    )
    none_yet = await user_tokens(api, "bob", "openid organization")
    claims = jwt.decode(none_yet["access_token"], options={"verify_signature": False})
    assert claims["organization"] == []
    discovery = await (await api.get("/.well-known/openid-configuration")).json()
    assert "organization" in discovery["scopes_supported"]
    assert "organization" in discovery["claims_supported"]


# --- the invitation email (item 6) --------------------------------------------------------------


async def test_an_invitation_queues_its_email_in_the_same_transaction(
    api: Client, database_url: str, tmp_path: Path
) -> None:
    """The email goes out with the invitation (here as the newcomer's .eml file), in the
    language asked for, never readable in the outbox; a refused invitation queues nothing."""
    token = await service_token(api)
    assert (await create(api, token, "acme", "Acme Ltd")).status == 201
    conn = await asyncpg.connect(database_url)
    try:
        before = await conn.fetchval("SELECT count(*) FROM mail.outbox")
        invited = await api.post(
            f"{BASE}/acme/invitations",
            json={"email": "dana@example.com", "lang": "ru"},
            headers=bearer(token),
        )
        body = await invited.json()
        assert invited.status == 201, body
        eml = tmp_path / "mail" / f"{body['mail_id']}.eml"
        await eventually(eml.exists, "the invitation email as a file")
        message = message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert message["To"] == "dana@example.com"
        assert message["Subject"] == "Приглашение в «Acme Ltd»"
        text = message.get_body(preferencelist=("plain",))
        assert text is not None
        assert f"{ISSUER}/oauth2/invitation?token=" in text.get_content()
        row = await conn.fetchrow(
            "SELECT kind, recipient, content_sealed FROM mail.outbox WHERE id = $1",
            UUID(body["mail_id"]),
        )
        assert row is not None
        assert (row["kind"], row["recipient"]) == ("invitation", "dana@example.com")
        assert "/oauth2/invitation" not in str(row["content_sealed"])

        await make_member(api, database_url, "acme", "bob", "member")
        refused = await api.post(
            f"{BASE}/acme/invitations", json={"email": USERS["bob"][1]}, headers=bearer(token)
        )
        assert refused.status == 409
        unknown_lang = await api.post(
            f"{BASE}/acme/invitations",
            json={"email": "x@example.com", "lang": "xx"},
            headers=bearer(token),
        )
        assert unknown_lang.status == 422
        assert await conn.fetchval("SELECT count(*) FROM mail.outbox") == before + 1
    finally:
        await conn.close()


async def test_the_token_handler_passes_the_organisations_to_a_legacy_api(
    tmp_path: Path, database_url: str, users: dict[str, str]
) -> None:
    """Item 8: a route's identity_headers carry the organization claim upstream."""
    await no_organisations(database_url)
    upstream = Upstream()
    await upstream.start()
    try:
        conf = write_conf(
            tmp_path / "proxy-conf",
            gateway={
                "issuer": ISSUER,
                "limits": RELAXED_LIMITS,
                "routes": [
                    {
                        "prefix": "/api/",
                        "upstream": upstream.root,
                        "identity_headers": {"X-Organizations": "organization"},
                    }
                ],
            },
            clients=CLIENTS,
        )
        async with serving(conf, database_url) as client:
            service = await service_token(client)
            for alias in ("acme", "globex"):
                made = await create(client, service, alias, alias.title())
                assert made.status == 201
                await make_member(client, database_url, alias, "alice", "member")
            body = await user_tokens(client, "alice", "openid organization")
            answer = await client.get("/api/orders", headers=bearer(body["access_token"]))
            assert answer.status == 200, await answer.text()
            assert upstream.requests[-1].header("X-Organizations") == "acme globex"
    finally:
        await upstream.close()


async def test_removing_a_member_by_id_removes_that_member(
    api: Client, database_url: str, users: dict[str, str]
) -> None:
    """Another account named like the member's id cannot stand in for the member."""
    token = await service_token(api)
    assert (await create(api, token, "acme", "Acme")).status == 201
    await make_member(api, database_url, "acme", "bob", "member")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "SELECT daemon.user_add($1, (SELECT password_hash FROM auth.users "
            "WHERE username = 'alice'), 'look-alike@example.com', 'Look-alike')",
            users["bob"],
        )
    finally:
        await conn.close()
    removed = await api.delete(f"{BASE}/acme/members/{users['bob']}", headers=bearer(token))
    assert removed.status == 204
    left = await (await api.get(f"{BASE}/acme/members", headers=bearer(token))).json()
    assert left["members"] == []


async def test_invitations_of_one_email_at_once_replace_each_other(api: Client) -> None:
    token = await service_token(api)
    assert (await create(api, token, "acme", "Acme")).status == 201
    answers = await asyncio.gather(
        *(
            api.post(
                f"{BASE}/acme/invitations",
                json={"email": "race@example.com"},
                headers=bearer(token),
            )
            for _ in range(8)
        )
    )
    assert sorted(a.status for a in answers) == [201] * 8
    pending = await (await api.get(f"{BASE}/acme/invitations", headers=bearer(token))).json()
    assert len(pending["invitations"]) == 1
