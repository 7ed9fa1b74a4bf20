"""``gateway org ...`` as operators run it (issue 12 item 2): real processes, a real database,
clear messages and exit codes (0 done, 1 the database said no, 2 bad usage)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support import gateway_env, run_gateway


@pytest.fixture
def env(database_url: str, conf_path: Path) -> dict[str, str]:
    return gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(conf_path))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def fails(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one readable line, never a traceback
    assert lines[0].startswith("error: ")
    return lines[0]


def test_an_operator_adds_invites_shows_and_revokes(env: dict[str, str]) -> None:
    added = ok(run_gateway("org", "add", "acme", "--name", "Acme Ltd", "--domain", "Acme.Example",
                           env=env))  # fmt: skip
    assert added.strip() == "organisation acme added (Acme Ltd)"
    invited = ok(run_gateway("org", "invite", "acme", "Dana@Example.COM", "--role", "admin",
                             "--client", "spa", env=env))  # fmt: skip
    lines = dict(line.split(": ", 1) for line in invited.splitlines()[1:])
    assert invited.splitlines()[0] == "invited Dana@example.com to acme as admin"
    link = urlsplit(lines["link"])
    assert link.path == "/oauth2/invitation"
    assert len(parse_qs(link.query)["token"][0]) == 43

    listed = ok(run_gateway("org", "list", env=env)).splitlines()
    assert listed[0].split() == ["ALIAS", "NAME", "MEMBERS", "PENDING", "INVITATIONS", "DOMAINS"]
    assert listed[1].split() == ["acme", "Acme", "Ltd", "0", "1", "acme.example"]
    shown = json.loads(ok(run_gateway("org", "show", "acme", "--json", env=env)))
    assert shown["members"] == []
    assert [(i["email"], i["role"]) for i in shown["invitations"]] == [
        ("Dana@example.com", "admin")
    ]
    text = ok(run_gateway("org", "show", "acme", env=env))
    assert "pending invitations (1):" in text
    assert "Dana@example.com" in text

    again = ok(run_gateway("org", "invite", "acme", "dana@example.com", env=env))
    assert "(the earlier invitation of this email no longer works)" in again
    revoked = ok(run_gateway("org", "revoke-invite", "acme", "dana@example.com", env=env))
    assert "no longer works" in revoked
    twice = fails(run_gateway("org", "revoke-invite", "acme", "dana@example.com", env=env), 1)
    assert twice == "error: there is no pending invitation of dana@example.com to 'acme'"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["org", "add", "Acme Ltd", "--name", "x"], 2, "must be 2 to 63 lower-case",
                     id="alias-with-space"),
        pytest.param(["org", "add", "acme", "--name", "x", "--domain", "not a domain"], 2,
                     "is not a domain name", id="bad-domain"),
        pytest.param(["org", "invite", "acme", "not-an-email"], 2, "is not an email address",
                     id="bad-email"),
        pytest.param(["org", "invite", "acme", "x@example.com", "--role", "owner"], 2,
                     "invalid choice", id="bad-role"),
        pytest.param(["org", "invite", "acme", "x@example.com", "--client", "nope"], 2,
                     "there is no client 'nope'", id="unknown-client"),
        pytest.param(["org", "invite", "nope", "x@example.com"], 1,
                     "there is no organisation 'nope' (see: gateway org list)", id="unknown-org"),
        pytest.param(["org", "show", "nope"], 1, "there is no organisation 'nope'",
                     id="show-unknown"),
        pytest.param(["org", "remove-member", "acme", "nobody"], 1,
                     "'nobody' is not a member of 'acme'", id="not-a-member"),
        pytest.param(["org", "add", "acme", "--name", "Again"], 1,
                     "an organisation with the alias 'acme' exists already", id="duplicate"),
    ],
)  # fmt: skip
def test_mistakes_get_one_clear_line(
    env: dict[str, str], args: list[str], code: int, message: str
) -> None:
    run_gateway("org", "add", "acme", "--name", "Acme Ltd", env=env)  # may exist already
    line = fails(run_gateway(*args, env=env), code)
    assert message in line


def test_inviting_a_member_says_so(env: dict[str, str], database_url: str) -> None:
    run_gateway("org", "add", "beta", "--name", "Beta", env=env)
    ok(run_gateway("user", "add", "erin", "--email", "erin@example.com", "--password-stdin",
                   env=env, stdin="Erin-Passw0rd"))  # fmt: skip
    invited = ok(run_gateway("org", "invite", "beta", "erin@example.com", env=env))
    token = parse_qs(urlsplit(invited.splitlines()[-1].split(": ", 1)[1]).query)["token"][0]

    import asyncio

    import asyncpg

    from gateway.grants.issue import secret_hash as token_hash

    async def accept() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            user = await conn.fetchval("SELECT id FROM auth.users WHERE username = 'erin'")
            await conn.execute("SELECT daemon.invitation_accept($1, $2)", token_hash(token), user)
        finally:
            await conn.close()

    asyncio.run(accept())
    line = fails(run_gateway("org", "invite", "beta", "erin@example.com", env=env), 1)
    assert line == "error: erin@example.com is a member of 'beta' already"
    shown = ok(run_gateway("org", "show", "beta", env=env))
    assert "members (1):" in shown
    removed = ok(run_gateway("org", "remove-member", "beta", "erin", env=env))
    assert removed.strip() == "erin is no longer a member of beta"
