"""``gateway mail outbox`` and ``gateway mail retry`` as an operator runs them: their tables, JSON,
messages and exit codes, on rows the store functions put in each state (no sender runs here;
delivery itself is tests/http/test_mail.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest

from gateway.store import mail as store
from tests.support import gateway_env, run_gateway, write_conf


@pytest.fixture
async def env(tmp_path: Path, database_url: str, db: asyncpg.Connection) -> dict[str, str]:
    await db.execute("DELETE FROM mail.outbox")
    conf = write_conf(tmp_path / "conf")
    return gateway_env(GATEWAY_DATABASE_URL=database_url, GATEWAY_CONFIG=str(conf))


async def gateway(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_gateway, "mail", *args, env=env)


async def one_of_each(db: asyncpg.Connection) -> dict[str, UUID]:
    """A sent, a failed, a waiting (deferred) and a fresh message."""
    ids = {}
    for name in ("sent", "failed", "waiting", "fresh"):
        ids[name] = await store.mail_enqueue(
            db, uuid4(), "recovery", f"{name}@example.test", "m1.sealed"
        )
    claimed = {c.id: c for c in await store.mail_claim(db, limit=3, lease=60)}
    assert set(claimed) == {ids["sent"], ids["failed"], ids["waiting"]}
    await store.mail_sent(db, ids["sent"], claimed[ids["sent"]].claim)
    await store.mail_failed(
        db,
        ids["failed"],
        claimed[ids["failed"]].claim,
        "RCPT TO: 550 5.1.1 No such user",
        permanent=True,
        give_up=86400,
    )
    await store.mail_failed(
        db,
        ids["waiting"],
        claimed[ids["waiting"]].claim,
        "no answer within 10 s",
        permanent=False,
        give_up=86400,
    )
    return ids


async def test_outbox_lists_what_is_waiting_or_failed(
    env: dict[str, str], db: asyncpg.Connection
) -> None:
    ids = await one_of_each(db)
    table = await gateway(env, "outbox")
    assert (table.returncode, table.stderr) == (0, "")
    header, *lines = table.stdout.splitlines()
    assert header.split() == [
        "ID", "KIND", "RECIPIENT", "STATE", "ATTEMPTS", "LAST", "ERROR", "NEXT", "ATTEMPT",
        "CREATED",
    ]  # fmt: skip
    shown = {line.split()[0]: line for line in lines}
    assert set(shown) == {str(ids["failed"]), str(ids["waiting"]), str(ids["fresh"])}
    assert "RCPT TO: 550 5.1.1 No such user" in shown[str(ids["failed"])]
    assert "failed@example.test" in shown[str(ids["failed"])]
    assert "no answer within 10 s" in shown[str(ids["waiting"])]

    listed = json.loads((await gateway(env, "outbox", "--all", "--json")).stdout)
    by_id = {entry["id"]: entry for entry in listed}
    assert set(by_id) == {str(i) for i in ids.values()}
    assert by_id[str(ids["sent"])]["state"] == "sent"
    assert by_id[str(ids["sent"])]["sent_at"] is not None
    waiting = by_id[str(ids["waiting"])]
    assert (waiting["state"], waiting["attempts"]) == ("queued", 1)
    assert waiting["next_attempt_at"] is not None
    assert by_id[str(ids["failed"])]["next_attempt_at"] is None
    assert "content" not in json.dumps(listed)


async def test_an_empty_outbox_says_so(env: dict[str, str]) -> None:
    table = await gateway(env, "outbox")
    assert (table.returncode, table.stdout.strip()) == (0, "no messages waiting or failed")
    assert json.loads((await gateway(env, "outbox", "--json")).stdout) == []


async def test_retry_requeues_one_message_or_every_failed_one(
    env: dict[str, str], db: asyncpg.Connection
) -> None:
    ids = await one_of_each(db)
    every = await gateway(env, "retry", "--failed")
    assert (every.returncode, every.stdout.strip()) == (0, "1 failed message queued again")
    assert await db.fetchval("SELECT state FROM mail.outbox WHERE id = $1", ids["failed"]) == (
        "queued"
    )
    one = await gateway(env, "retry", str(ids["waiting"]))
    assert one.returncode == 0
    assert (
        one.stdout.strip() == f"message {ids['waiting']} queued again; it goes out within seconds"
    )
    row = await db.fetchrow("SELECT * FROM mail.outbox WHERE id = $1", ids["waiting"])
    assert row is not None
    assert (row["state"], row["attempts"]) == ("queued", 0)
    assert row["next_attempt_at"] <= await db.fetchval("SELECT now()")
    none = await gateway(env, "retry", "--failed")
    assert (none.returncode, none.stdout.strip()) == (0, "no failed messages")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("retry", "sent"), 1, "was sent or is being sent right now: nothing to retry"),
        (
            ("retry", str(UUID(int=7))),
            1,
            "there is no message 00000000-0000-0000-0000-000000000007",
        ),
        (("retry", "not-a-uuid"), 2, "'not-a-uuid' is not a message id"),
        (("retry",), 2, "one of the arguments ID --failed is required"),
        (("retry", str(UUID(int=7)), "--failed"), 2, "not allowed with argument"),
        (("outbox", "--limit", "0"), 2, "--limit must be at least 1"),
    ],
)
async def test_mail_commands_refuse_clearly(
    env: dict[str, str], db: asyncpg.Connection, args: tuple[str, ...], code: int, message: str
) -> None:
    ids = await one_of_each(db)
    args = tuple(str(ids["sent"]) if a == "sent" else a for a in args)
    result = await gateway(env, *args)
    assert result.returncode == code, result
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
