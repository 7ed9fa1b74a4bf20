"""The argon2id cost of user passwords is configuration (``passwords``): RFC 9106's second
recommended option by default, lower only when an operator says so, never below 8 MiB."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg

from tests.support import committed_sample, gateway_env, run_gateway, write_conf


def stored_hash(database_url: str, name: str) -> str:
    async def read() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            value: str = await conn.fetchval(
                "SELECT password_hash FROM auth.users WHERE username = $1", name
            )
        finally:
            await conn.close()
        return value

    return asyncio.run(read())


def add_user(conf: Path, database_url: str, name: str) -> None:
    env = gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(conf))
    result = run_gateway("user", "add", name, "--password-stdin", env=env, stdin="Pw-12345678\n")
    assert (result.returncode, result.stderr) == (0, "")


def test_the_default_cost_is_rfc_9106s(tmp_path: Path, database_url: str) -> None:
    add_user(committed_sample(tmp_path / "conf"), database_url, "default-cost")
    assert stored_hash(database_url, "default-cost").startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_a_configured_cost_is_used_for_new_hashes(tmp_path: Path, database_url: str) -> None:
    conf = write_conf(
        tmp_path / "conf",
        gateway={"passwords": {"time_cost": 2, "memory_cost": 16384, "parallelism": 2}},
    )
    add_user(conf, database_url, "tuned-cost")
    assert stored_hash(database_url, "tuned-cost").startswith("$argon2id$v=19$m=16384,t=2,p=2$")


def test_a_cost_below_the_floor_is_refused_clearly(tmp_path: Path) -> None:
    conf = write_conf(tmp_path / "conf")
    settings = json.loads(conf.read_text())
    settings["passwords"] = {"memory_cost": 1024}
    conf.write_text(json.dumps(settings))
    result = run_gateway("config", "check", "--config", str(conf), env=gateway_env())
    assert result.returncode == 2
    assert "passwords.memory_cost" in result.stderr
    assert "8192" in result.stderr
    assert "Traceback" not in result.stderr
