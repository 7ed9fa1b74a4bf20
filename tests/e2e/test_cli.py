"""The command line as users run it: real processes, a real database, readable errors."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
from pathlib import Path

import asyncpg
import pytest

from gateway.server import describe_listen_error
from tests.support import committed_sample, gateway_env, run_gateway, write_conf


@pytest.fixture
def env(database_url: str, conf_path: Path) -> dict[str, str]:
    return gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(conf_path))


def test_config_check_accepts_the_sample(tmp_path: Path) -> None:
    sample = committed_sample(tmp_path / "conf")
    result = run_gateway("config", "check", "--config", str(sample), env=gateway_env())
    assert result.returncode == 0, result.stderr
    assert "OK (4 clients" in result.stdout


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


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``error: ...`` line a failed command prints (no traceback, nothing else)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("how", "source"),
    [("env", "from GATEWAY_CONFIG"), ("flag", "given with --config"), ("default", "default")],
)
def test_missing_config_names_the_path_tried(tmp_path: Path, how: str, source: str) -> None:
    """The configuration comes from --config, else GATEWAY_CONFIG, else ./conf/gateway.json of
    the working directory; when it is missing, one line names the absolute path tried, where
    that path came from, and what to do."""
    missing = tmp_path / "x.json"
    env = gateway_env(GATEWAY_CONFIG=str(missing)) if how == "env" else gateway_env()
    args = ["--config", str(missing)] if how == "flag" else []
    result = run_gateway("config", "check", *args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    line = one_line_error(result)
    tried = missing if how != "default" else tmp_path / "conf" / "gateway.json"
    assert f"no configuration file at {tried} " in line
    assert source in line
    assert "--config PATH or GATEWAY_CONFIG" in line


def test_commands_work_from_any_directory(tmp_path: Path) -> None:
    """With --config (or GATEWAY_CONFIG) a command run from another directory finds the
    configuration and the files it names relative to it."""
    conf = write_conf(tmp_path / "site" / "conf")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    by_flag = run_gateway("client", "list", "--config", str(conf), env=gateway_env(), cwd=elsewhere)
    assert by_flag.returncode == 0, by_flag.stderr
    assert "spa" in by_flag.stdout
    by_env = run_gateway(
        "config", "check", env=gateway_env(GATEWAY_CONFIG=str(conf)), cwd=elsewhere
    )
    assert by_env.returncode == 0, by_env.stderr


@pytest.mark.parametrize(
    ("port", "message"),
    [
        ("80800", "argument --port: 80800 is not a port number (0 to 65535)"),
        ("-1", "argument --port: -1 is not a port number (0 to 65535)"),
        ("http", "argument --port: 'http' is not a port number"),
    ],
)
def test_serve_refuses_a_port_out_of_range_in_one_line(
    tmp_path: Path, port: str, message: str
) -> None:
    """--port is checked like listen.port: 80800 used to wrap around to 15264 silently."""
    conf = write_conf(tmp_path / "conf")
    result = run_gateway("serve", "--port", port, "--config", str(conf), env=gateway_env())
    assert result.returncode == 2
    assert one_line_error(result) == f"error: {message} (see: gateway serve --help)"


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    """A port in use: one line naming the address and what to do, exit 1, and the database is
    never touched (the unreachable URL below would fail differently)."""
    conf = write_conf(tmp_path / "conf")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = gateway_env(GATEWAY_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
        result = run_gateway("serve", "--port", str(port), "--config", str(conf), env=env)
    assert result.returncode == 1
    assert one_line_error(result) == (
        f"error: cannot listen on 127.0.0.1:{port}: another program uses the port; stop it or "
        "choose another with --port"
    )


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.EACCES, "permission denied (ports below 1024 need privileges)"),
        (errno.EADDRNOTAVAIL, "this machine has no such address; choose another with --host"),
    ],
)
def test_listen_errors_say_what_to_do(code: int, advice: str) -> None:
    """The other bind failures (root, which runs these tests, may bind any port, so this one is
    checked on the message alone)."""
    message = describe_listen_error("127.0.0.1", 80, OSError(code, os.strerror(code)))
    assert message.startswith("cannot listen on 127.0.0.1:80: ")
    assert advice in message


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


def test_origins_commands_explain_and_edit(tmp_path: Path) -> None:
    """Issue 4 item 8: gateway origins list|add|remove|check edit the files safely and explain."""
    conf = write_conf(tmp_path / "conf")
    env = gateway_env(GATEWAY_CONFIG=str(conf))
    clients_file = tmp_path / "conf" / "oauth2" / "default.json"

    check = run_gateway("origins", "check", "https://app.example.com", env=env)
    assert check.returncode == 1
    assert check.stdout.strip() == (
        "https://app.example.com is not allowed: no client lists it in javascript_origins "
        "and no route adds it"
    )
    added = run_gateway("origins", "add", "https://app.example.com", "--client", "web", env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith(f"added https://app.example.com to client web ({clients_file})")
    check = run_gateway("origins", "check", "https://app.example.com", env=env)
    assert check.returncode == 0
    assert check.stdout.strip() == (
        f"https://app.example.com is allowed by client web ({clients_file})"
    )
    listing = run_gateway("origins", "list", env=env)
    assert any(
        line.split()[:3] == ["https://app.example.com", "client", "web"]
        for line in listing.stdout.splitlines()
    )
    removed = run_gateway(
        "origins", "remove", "https://app.example.com", "--client", "web", env=env
    )
    assert removed.returncode == 0, removed.stderr
    assert "https://app.example.com" not in clients_file.read_text()
    assert run_gateway("config", "check", env=env).returncode == 0


def test_origins_add_then_remove_leaves_the_file_byte_identical(tmp_path: Path) -> None:
    """Issue 8 item 4: the sample's client file, with its layout and ``"//"`` comments, comes
    back byte for byte after an add and a remove, and the add changed nothing but one list;
    for an app without a list, the add writes one new line in the file's own indentation."""
    conf = committed_sample(tmp_path / "conf")
    env = gateway_env(GATEWAY_CONFIG=str(conf))
    clients_file = tmp_path / "conf" / "oauth2" / "default.json"
    original = clients_file.read_text()
    assert '"//"' in original

    def origins(*args: str) -> None:
        result = run_gateway("origins", *args, env=env)
        assert result.returncode == 0, result.stderr

    origins("add", "https://app.example.com", "--client", "spa")
    grown = clients_file.read_text().splitlines()
    changed = [(a, b) for a, b in zip(original.splitlines(), grown, strict=True) if a != b]
    assert changed == [
        (
            '    "javascript_origins": ["http://localhost:8080", "http://localhost:3000"],',
            '    "javascript_origins": ["http://localhost:8080", "http://localhost:3000", '
            '"https://app.example.com"],',
        )
    ]
    origins("remove", "https://app.example.com", "--client", "spa")
    assert clients_file.read_text() == original

    origins("add", "https://app.example.com", "--client", "service")
    assert clients_file.read_text() == original.replace(
        '    "grant_types": ["client_credentials", "refresh_token"]\n',
        '    "grant_types": ["client_credentials", "refresh_token"],\n'
        '    "javascript_origins": ["https://app.example.com"]\n',
    )


@pytest.mark.parametrize(
    ("origin", "client", "message"),
    [
        ("http://app.example.com", "web", "http origins are allowed only for localhost"),
        ("https://app.example.com/", "web", "must be an origin only"),
        ("https://app.example.com", "nobody", "no client 'nobody'"),
    ],
)
def test_origins_add_refuses_bad_input_and_leaves_the_file(
    tmp_path: Path, origin: str, client: str, message: str
) -> None:
    conf = write_conf(tmp_path / "conf")
    clients_file = tmp_path / "conf" / "oauth2" / "default.json"
    before = clients_file.read_text()
    result = run_gateway(
        "origins", "add", origin, "--client", client, env=gateway_env(GATEWAY_CONFIG=str(conf))
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert clients_file.read_text() == before


def test_origins_check_points_at_near_misses(tmp_path: Path) -> None:
    conf = write_conf(tmp_path / "conf")
    result = run_gateway(
        "origins", "check", "http://localhost:9999", env=gateway_env(GATEWAY_CONFIG=str(conf))
    )
    assert result.returncode == 1
    assert "listed with another scheme or port: http://localhost:3000, http://localhost:8080" in (
        result.stdout
    )


def test_client_check_names_the_clients(env: dict[str, str]) -> None:
    result = run_gateway("client", "check", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4 clients OK (web, service, spa, bff)"
