"""The command line as users run it: real processes, a real database, readable errors."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tests.support import SAMPLE_CONF, gateway_env, run_gateway, write_conf


@pytest.fixture
def env(database_url: str, conf_path: Path) -> dict[str, str]:
    return gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(conf_path))


def test_config_check_accepts_the_sample() -> None:
    result = run_gateway(
        "config", "check", "--config", str(SAMPLE_CONF / "gateway.json"), env=gateway_env()
    )
    assert result.returncode == 0, result.stderr
    assert "OK (3 clients" in result.stdout


def test_config_check_reports_every_error_and_exits_2(tmp_path: Path) -> None:
    path = write_conf(
        tmp_path,
        gateway={"tokens": {"access_ttl": 0}, "cookies": {"samesite": "Sometimes"}},
        clients={"web": {"client_id": "web", "redirect_uris": ["https://x.example/cb#f"]}},
    )
    result = run_gateway("config", "check", "--config", str(path), env=gateway_env())
    assert result.returncode == 2
    assert result.stdout == ""
    assert "error: the configuration is invalid:" in result.stderr
    assert "tokens.access_ttl: Input should be greater than or equal to 1" in result.stderr
    assert "cookies.samesite: Input should be 'None', 'Lax' or 'Strict'" in result.stderr
    assert "web.redirect_uris[0]: must not contain a fragment" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    result = run_gateway(
        "config", "check", env=gateway_env(GATEWAY_CONFIG=str(tmp_path / "x.json"))
    )
    assert result.returncode == 2
    assert f"{tmp_path / 'x.json'}: file not found" in result.stderr


def test_bad_json_reports_line_and_column(tmp_path: Path) -> None:
    path = write_conf(tmp_path)
    path.write_text('{\n  "listen": { "port": 8080 }\n  "routes": []\n}\n')
    result = run_gateway("config", "check", "--config", str(path), env=gateway_env())
    assert result.returncode == 2
    assert "invalid JSON at line 3, column 3: Expecting ',' delimiter" in result.stderr


def test_client_list_shows_configured_clients(env: dict[str, str]) -> None:
    result = run_gateway("client", "list", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["CLIENT_ID", "APP", "TYPE", "GRANT", "TYPES", "ORIGINS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["web"][2] == "confidential"
    assert rows["spa"][2] == "public"
    assert rows["service"][3] == "client_credentials,refresh_token"
    assert "change-me" not in result.stdout


def test_user_add_prints_nothing_and_stores_the_user(
    env: dict[str, str], database_url: str
) -> None:
    result = run_gateway(
        "user",
        "add",
        "alice",
        "--email",
        "alice@example.test",
        "--name",
        "Alice",
        "--password-stdin",
        env=env,
        stdin="Correct-Horse-9\n",
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

    async def check() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow("SELECT * FROM auth.users WHERE username = 'alice'")
        finally:
            await conn.close()
        assert row is not None
        assert row["email"] == "alice@example.test"
        assert row["name"] == "Alice"
        from gateway.passwords import Passwords

        assert Passwords().verify(row["password_hash"], "Correct-Horse-9")

    import asyncio

    asyncio.run(check())


def test_user_add_twice_fails_clearly(env: dict[str, str]) -> None:
    first = run_gateway("user", "add", "bob", "--password-stdin", env=env, stdin="B0b-Passw0rd!")
    assert first.returncode == 0, first.stderr
    second = run_gateway("user", "add", "BOB", "--password-stdin", env=env, stdin="other")
    assert second.returncode == 1
    assert second.stderr.strip() == "error: user 'BOB' already exists (or the email is taken)"


@pytest.mark.parametrize("stdin", ["", "\n"])
def test_user_add_refuses_an_empty_password(env: dict[str, str], stdin: str) -> None:
    result = run_gateway("user", "add", "carol", "--password-stdin", env=env, stdin=stdin)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: the password is empty"


def test_user_add_needs_password_stdin(env: dict[str, str]) -> None:
    result = run_gateway("user", "add", "dave", env=env)
    assert result.returncode == 2
    assert "--password-stdin" in result.stderr


def test_unreachable_database_is_a_clear_error(conf_path: Path) -> None:
    env = gateway_env(
        GATEWAY_DATABASE_URL="postgresql://gw:topsecret@127.0.0.1:1/gateway",
        GATEWAY_CONFIG=str(conf_path),
    )
    for args in (("migrate",), ("user", "add", "erin", "--password-stdin")):
        result = run_gateway(*args, env=env, stdin="pw")
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip() == (
            "error: cannot connect to the database at "
            "postgresql://gw:***@127.0.0.1:1/gateway: connection refused"
        )
        assert "topsecret" not in result.stderr


def test_migrate_twice_changes_nothing_the_second_time(
    empty_database_url: str, conf_path: Path
) -> None:
    env = gateway_env(GATEWAY_DATABASE_URL=empty_database_url, GATEWAY_CONFIG=str(conf_path))
    first = run_gateway("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied 0001_schema")
    second = run_gateway("migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "database is up to date"
