"""``gateway session ...`` and ``gateway audit`` as operators run them (issue 14 items 3, 4):
real processes, a real database, tables, JSON lines, one-line errors with exit codes (0 done,
1 the database said no, 2 bad usage)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from uuid import UUID

import asyncpg
import pytest

from tests.support import gateway_env, run_gateway

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


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


async def open_sessions(database_url: str, user_id: str, count: int) -> list[UUID]:
    """``count`` sessions of the user as the login page opens them (daemon.session_open)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "SELECT daemon.session_revoke(id, 'test') FROM auth.session WHERE revoked_at IS NULL"
        )
        await conn.execute("DELETE FROM audit.event")
        client_id = await conn.fetchval("SELECT client_id FROM oauth2.client LIMIT 1")
        if client_id is None:
            await conn.execute("SELECT * FROM daemon.client_sync('[{\"client_id\": \"web\", "
                               "\"app\": \"web\"}]')")  # fmt: skip
            client_id = "web"
        return [
            await conn.fetchval(
                "SELECT session_id FROM daemon.session_open($1, $2, 3600, '198.51.100.4', $3)",
                UUID(user_id),
                client_id,
                UA,
            )
            for _ in range(count)
        ]
    finally:
        await conn.close()


async def test_an_operator_lists_and_ends_sessions_and_reads_the_audit(
    env: dict[str, str], database_url: str, users: dict[str, str]
) -> None:
    first, second, third = await open_sessions(database_url, users["alice"], 3)
    table = ok(run_gateway("session", "list", "alice", env=env)).splitlines()
    assert table[0].split() == ["ID", "CLIENT", "DEVICE", "ADDRESS", "STARTED", "LAST", "USED",
                                "STATE"]  # fmt: skip
    assert len(table) == 4
    assert all("Firefox 133 on Linux" in line and "198.51.100.4" in line for line in table[1:])
    lines = ok(run_gateway("session", "list", "alice", "--json", env=env)).splitlines()
    listed = [json.loads(line) for line in lines]
    assert {s["id"] for s in listed} == {str(first), str(second), str(third)}
    assert {(s["device"], s["address"], s["state"]) for s in listed} == {
        ("Firefox 133 on Linux", "198.51.100.4", "live")
    }

    assert ok(run_gateway("session", "end", str(first), env=env)).strip() == (
        f"session {first} ended"
    )
    again = fails(run_gateway("session", "end", str(first), env=env), 1)
    assert again == f"error: there is no session {first} to end (unknown, or ended already)"
    # A session past its end but never revoked is ended, and the command says so (it once
    # ended it and answered "no live session", exit 1).
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE auth.session SET expires_at = now() - interval '1 minute' WHERE id = $1",
            second,
        )
    finally:
        await conn.close()
    assert ok(run_gateway("session", "end", str(second), env=env)).strip() == (
        f"session {second} ended"
    )
    ended = ok(run_gateway("session", "end", "--user", "alice", "--all", env=env))
    assert ended.strip() == "alice: 1 session ended"
    assert "has no live sessions" in ok(run_gateway("session", "list", "alice", env=env))
    over = ok(run_gateway("session", "list", "alice", "--all", "--json", env=env)).splitlines()
    assert {json.loads(line)["state"] for line in over} == {"ended"}

    ok(run_gateway("user", "lock", "alice", env=env))
    ok(run_gateway("user", "unlock", "alice", env=env))
    out = ok(run_gateway("audit", "--user", "alice", "--json", env=env)).splitlines()
    events = [json.loads(line) for line in out]
    assert [e["type"] for e in events] == ["login"] * 3 + ["session.revoke"] * 3 + [
        "user.lock",
        "user.unlock",
    ]
    assert events[0]["address"] == "198.51.100.4"
    assert events[0]["user_agent"] == UA
    assert events[0]["actor"] == f"user:{users['alice']}"
    assert {(e["actor"], e["detail"]["reason"]) for e in events[3:6]} == {
        ("cli", "ended by an operator")
    }
    assert {e["actor"] for e in events[6:]} == {"cli"}
    assert {e["user"] for e in events} == {"alice"}

    table = ok(run_gateway("audit", "--type", "user.lock,user.unlock", env=env)).splitlines()
    assert table[0].split() == ["TIME", "TYPE", "USER", "CLIENT", "ACTOR", "ADDRESS", "DEVICE",
                                "DETAIL"]  # fmt: skip
    assert [line.split()[2] for line in table[1:]] == ["user.lock", "user.unlock"]
    newest = ok(run_gateway("audit", "--limit", "1", "--json", "--since", "1h", env=env))
    assert json.loads(newest)["type"] == "user.unlock"
    assert ok(run_gateway("audit", "--since", "2999-01-01", env=env)).strip() == "no events"


async def test_a_signing_key_rotation_is_audited(
    env: dict[str, str], database_url: str, users: dict[str, str]
) -> None:
    ok(run_gateway("keys", "rotate", env=env))
    ok(run_gateway("keys", "rotate", env=env))
    out = ok(run_gateway("audit", "--type", "signing_key.add,signing_key.rotate", "--json",
                         env=env))  # fmt: skip
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-1]["type"] == "signing_key.rotate"
    assert events[-1]["detail"]["replaces"] == events[-2]["detail"]["kid"]
    assert "private" not in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["session", "list", "nobody"], 1, "there is no user 'nobody'", id="no-user"),
        pytest.param(["session", "end", "not-a-uuid"], 2, "is not a session id", id="bad-id"),
        pytest.param(["session", "end"], 2, "name a session id", id="nothing"),
        pytest.param(["session", "end", "--all"], 2, "--all goes with --user", id="all-alone"),
        pytest.param(["audit", "--since", "yesterday"], 2, "is neither a date", id="bad-since"),
        pytest.param(["audit", "--type", "DROP TABLE"], 2, "not a list of event types",
                     id="bad-type"),
        pytest.param(["audit", "--limit", "0"], 2, "--limit must be 1 to 100000", id="limit"),
        pytest.param(["audit", "--user", "nobody"], 1, "there is no user 'nobody'",
                     id="audit-no-user"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_an_exit_code(
    env: dict[str, str], users: dict[str, str], args: list[str], code: int, message: str
) -> None:
    assert message in fails(run_gateway(*args, env=env), code)
